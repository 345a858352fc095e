//! The synchronisation step on its own, and a model of a client that
//! applies what it is told while others append, change flags and expunge.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tern_maildir::{Flag, Flags, MessageEntry};

use super::*;

fn flags_of(seen: bool, flagged: bool) -> Flags {
    let mut f = Flags::empty();
    f.set(Flag::Seen, seen);
    f.set(Flag::Flagged, flagged);
    f
}

fn entry(uid: u32, flags: Flags, keywords: &[&str]) -> MessageEntry {
    let base: Arc<str> = Arc::from(format!("{uid}.M1P1.test"));
    MessageEntry {
        uid,
        file_name: base.clone(),
        base,
        in_new: false,
        flags,
        keywords: keywords
            .iter()
            .map(|k| Arc::from(*k))
            .collect::<Vec<_>>()
            .into(),
    }
}

fn view(entries: Vec<MessageEntry>) -> FolderView {
    FolderView {
        uidvalidity: 1,
        next_uid: entries.last().map(|e| e.uid + 1).unwrap_or(1),
        messages: entries,
        generation: 0,
        digest: Default::default(),
    }
}

fn known_of(v: &FolderView) -> Vec<Known> {
    v.messages
        .iter()
        .map(|m| Known {
            uid: m.uid,
            flags: m.flags.clone(),
            keywords: m.keywords.clone(),
        })
        .collect()
}

#[test]
fn expunge_exists_recent_and_flags_in_order() {
    let before = view((1..=4).map(|u| entry(u, Flags::empty(), &[])).collect());
    // 2 and 3 expunged, 4 flagged, 5 and 6 new (6 \Recent), a new keyword.
    let after = view(vec![
        entry(1, Flags::empty(), &[]),
        entry(4, flags_of(false, true), &[]),
        entry(5, Flags::empty(), &["$Junk"]),
        entry(6, Flags::empty(), &[]),
    ]);
    let recent: HashSet<u32> = [6].into_iter().collect();
    let mut kw = BTreeSet::new();
    let s = synchronize(
        known_of(&before),
        &after,
        Expunges::Allowed,
        &recent,
        &mut kw,
        Access::ReadWrite,
    );
    assert_eq!(
        s.responses,
        "* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n\
         * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk \\*)] Flags permitted\r\n\
         * 4 EXISTS\r\n* 1 RECENT\r\n* 2 FETCH (UID 4 FLAGS (\\Flagged))\r\n"
    );
    assert!(s.in_step);
    assert_eq!(
        s.known.iter().map(|k| k.uid).collect::<Vec<_>>(),
        [1, 4, 5, 6]
    );
}

#[test]
fn expunges_held_back_during_fetch_by_number() {
    let before = view((1..=3).map(|u| entry(u, Flags::empty(), &[])).collect());
    let after = view(vec![
        entry(1, Flags::empty(), &[]),
        entry(3, Flags::empty(), &[]),
    ]);
    let mut kw = BTreeSet::new();
    let s = synchronize(
        known_of(&before),
        &after,
        Expunges::HeldBack,
        &HashSet::default(),
        &mut kw,
        Access::ReadOnly,
    );
    assert_eq!(s.responses, "");
    assert!(!s.in_step);
    assert_eq!(s.known.len(), 3, "message 2 keeps its number");
    let s = synchronize(
        s.known,
        &after,
        Expunges::Allowed,
        &HashSet::default(),
        &mut kw,
        Access::ReadOnly,
    );
    assert_eq!(s.responses, "* 2 EXPUNGE\r\n");
    assert!(s.in_step);
}

#[test]
fn read_only_gets_no_permanentflags() {
    let after = view(vec![entry(1, Flags::empty(), &["work"])]);
    let mut kw = BTreeSet::new();
    let s = synchronize(
        Vec::new(),
        &after,
        Expunges::Allowed,
        &HashSet::default(),
        &mut kw,
        Access::ReadOnly,
    );
    assert!(s.responses.contains("* FLAGS ("), "{}", s.responses);
    assert!(!s.responses.contains("PERMANENTFLAGS"), "{}", s.responses);
}

/// What others do to the folder between two commands of the session.
#[derive(Debug, Clone)]
enum Op {
    Append {
        seen: bool,
    },
    SetFlags {
        at: usize,
        seen: bool,
        flagged: bool,
    },
    Expunge {
        at: usize,
    },
    /// The session's next command is a FETCH/STORE/SEARCH by number.
    HoldBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(|seen| Op::Append { seen }),
        (any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(at, seen, flagged)| Op::SetFlags { at, seen, flagged }),
        any::<usize>().prop_map(|at| Op::Expunge { at }),
        Just(Op::HoldBack),
    ]
}

/// A client that knows messages by position and learns only from the
/// responses: EXPUNGE removes, EXISTS adds unknown ones, FETCH sets flags.
#[derive(Debug, Default)]
struct Client {
    msgs: Vec<Option<(u32, String)>>,
}

impl Client {
    fn apply(&mut self, responses: &str) {
        for line in responses.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["*", n, "EXPUNGE"] => {
                    let n: usize = n.parse().unwrap();
                    assert!(
                        n >= 1 && n <= self.msgs.len(),
                        "EXPUNGE {n} of {}",
                        self.msgs.len()
                    );
                    self.msgs.remove(n - 1);
                }
                ["*", n, "EXISTS"] => {
                    let n: usize = n.parse().unwrap();
                    assert!(n >= self.msgs.len(), "EXISTS may not shrink the mailbox");
                    self.msgs.resize(n, None);
                }
                ["*", n, "FETCH", "(UID", uid, ..] => {
                    let n: usize = n.parse().unwrap();
                    let flags = line.split("FLAGS (").nth(1).unwrap().trim_end_matches("))");
                    self.msgs[n - 1] = Some((uid.parse().unwrap(), flags.to_owned()));
                }
                _ => {}
            }
        }
    }
}

proptest! {
    /// Whatever others do, a session that announces what it may ends with
    /// a picture equal to the folder, and a client that applied only the
    /// responses has as many messages, with the flags it was told.
    #[test]
    fn every_session_ends_equal_to_the_folder(ops in proptest::collection::vec(op(), 0..40)) {
        let mut folder: BTreeMap<u32, Flags> = (1..=3).map(|u| (u, Flags::empty())).collect();
        let mut next_uid = 4;
        let current = |folder: &BTreeMap<u32, Flags>| {
            view(folder.iter().map(|(u, f)| entry(*u, f.clone(), &[])).collect())
        };
        let start = current(&folder);
        let mut known = known_of(&start);
        let mut client = Client {
            msgs: start.messages.iter().map(|m| Some((m.uid, String::new()))).collect(),
        };
        let mut kw = BTreeSet::new();
        let recent = HashSet::default();
        let mut hold = false;
        for op in ops {
            match op {
                Op::Append { seen } => {
                    folder.insert(next_uid, flags_of(seen, false));
                    next_uid += 1;
                }
                Op::SetFlags { at, seen, flagged } if !folder.is_empty() => {
                    let uid = *folder.keys().nth(at % folder.len()).unwrap();
                    folder.insert(uid, flags_of(seen, flagged));
                }
                Op::Expunge { at } if !folder.is_empty() => {
                    let uid = *folder.keys().nth(at % folder.len()).unwrap();
                    folder.remove(&uid);
                }
                Op::HoldBack => hold = true,
                _ => {}
            }
            let v = current(&folder);
            let mode = if hold { Expunges::HeldBack } else { Expunges::Allowed };
            hold = false;
            let s = synchronize(known, &v, mode, &recent, &mut kw, Access::ReadWrite);
            if mode == Expunges::HeldBack {
                prop_assert!(!s.responses.contains("EXPUNGE"));
            }
            client.apply(&s.responses);
            prop_assert_eq!(client.msgs.len(), s.known.len());
            known = s.known;
        }
        // A last command that allows EXPUNGE brings everyone in step.
        let v = current(&folder);
        let s = synchronize(known, &v, Expunges::Allowed, &recent, &mut kw, Access::ReadWrite);
        client.apply(&s.responses);
        prop_assert!(s.in_step);
        let uids: Vec<u32> = s.known.iter().map(|k| k.uid).collect();
        prop_assert_eq!(uids, folder.keys().copied().collect::<Vec<_>>());
        prop_assert_eq!(client.msgs.len(), folder.len());
        for (k, m) in s.known.iter().zip(&client.msgs) {
            prop_assert_eq!(&k.flags, &folder[&k.uid]);
            if let Some((uid, _)) = m {
                prop_assert_eq!(*uid, k.uid, "the client's message at this number is the same one");
            }
        }
    }
}

/// What the folder's change log would name between two views: UIDs in one
/// only or with other flags or keywords.
fn touched_between(a: &FolderView, b: &FolderView) -> Vec<u32> {
    let mut all: BTreeMap<u32, (Option<&MessageEntry>, Option<&MessageEntry>)> = BTreeMap::new();
    for m in &a.messages {
        all.entry(m.uid).or_default().0 = Some(m);
    }
    for m in &b.messages {
        all.entry(m.uid).or_default().1 = Some(m);
    }
    all.into_iter()
        .filter(|(_, (x, y))| match (x, y) {
            (Some(x), Some(y)) => x.flags != y.flags || x.keywords != y.keywords,
            _ => true,
        })
        .map(|(u, _)| u)
        .collect()
}

/// Others' changes, several between two commands of the session.
#[derive(Debug, Clone)]
enum Change {
    Append {
        seen: bool,
        keyword: Option<u8>,
    },
    /// Another program numbers a message late, below UIDs the session knows.
    AppendBelow,
    SetFlags {
        at: usize,
        seen: bool,
        keyword: Option<u8>,
    },
    Expunge {
        at: usize,
    },
}

fn change() -> impl Strategy<Value = Change> {
    let keyword = proptest::option::of(0u8..4);
    prop_oneof![
        (any::<bool>(), keyword.clone())
            .prop_map(|(seen, keyword)| Change::Append { seen, keyword }),
        Just(Change::AppendBelow),
        (any::<usize>(), any::<bool>(), keyword).prop_map(|(at, seen, keyword)| Change::SetFlags {
            at,
            seen,
            keyword
        }),
        any::<usize>().prop_map(|at| Change::Expunge { at }),
    ]
}

proptest! {
    /// A session that catches up from the change log answers, at every
    /// command, exactly what one that compares the whole folder answers,
    /// and holds the same picture: same EXPUNGE, FLAGS, EXISTS, RECENT and
    /// FETCH lines in the same order, also when the log names more UIDs
    /// than changed, with new keywords, \Recent messages, late numbering
    /// and held-back expunges.
    #[test]
    fn catching_up_from_the_log_answers_as_comparing_everything(
        steps in proptest::collection::vec(
            (proptest::collection::vec(change(), 0..5), any::<bool>(), proptest::collection::vec(0u32..40, 0..3)),
            0..30,
        )
    ) {
        type Folder = BTreeMap<u32, (Flags, Option<u8>)>;
        let mut folder: Folder = (10..=14).map(|u| (u, (Flags::empty(), None))).collect();
        let mut next_uid = 15;
        let mut below = 1;
        let names = ["$Junk", "work", "NonJunk", "$Label1"];
        let current = |folder: &Folder| {
            view(folder.iter().map(|(u, (f, k))| {
                let kws: Vec<&str> = k.iter().map(|k| names[*k as usize]).collect();
                entry(*u, f.clone(), &kws)
            }).collect())
        };
        let start = current(&folder);
        let mut full = known_of(&start);
        let mut by_log = full.clone();
        let mut synced = start;
        let mut in_step = true;
        let (mut kw_full, mut kw_log) = (BTreeSet::new(), BTreeSet::new());
        let mut recent: HashSet<u32> = HashSet::default();
        for (changes, hold, extra) in steps {
            for c in changes {
                match c {
                    Change::Append { seen, keyword } => {
                        folder.insert(next_uid, (flags_of(seen, false), keyword));
                        if !seen {
                            recent.insert(next_uid);
                        }
                        next_uid += 1;
                    }
                    Change::AppendBelow if below < 10 => {
                        folder.insert(below, (Flags::empty(), None));
                        below += 1;
                    }
                    Change::SetFlags { at, seen, keyword } if !folder.is_empty() => {
                        let uid = *folder.keys().nth(at % folder.len()).unwrap();
                        folder.insert(uid, (flags_of(seen, true), keyword));
                    }
                    Change::Expunge { at } if !folder.is_empty() => {
                        let uid = *folder.keys().nth(at % folder.len()).unwrap();
                        folder.remove(&uid);
                    }
                    _ => {}
                }
            }
            let v = current(&folder);
            let mode = if hold { Expunges::HeldBack } else { Expunges::Allowed };
            let a = synchronize(full, &v, mode, &recent, &mut kw_full, Access::ReadWrite);
            let b = if in_step {
                let mut touched = touched_between(&synced, &v);
                touched.extend(extra);
                touched.sort_unstable();
                touched.dedup();
                synchronize_changes(by_log, &v, &touched, mode, &recent, &mut kw_log, Access::ReadWrite)
                    .unwrap_or_else(|old| synchronize(old, &v, mode, &recent, &mut kw_log, Access::ReadWrite))
            } else {
                synchronize(by_log, &v, mode, &recent, &mut kw_log, Access::ReadWrite)
            };
            prop_assert_eq!(&a.responses, &b.responses);
            prop_assert_eq!(a.in_step, b.in_step);
            prop_assert_eq!(&kw_full, &kw_log);
            let (ka, kb) = (&a.known, &b.known);
            prop_assert_eq!(ka.len(), kb.len());
            for (x, y) in ka.iter().zip(kb) {
                prop_assert_eq!(x.uid, y.uid);
                prop_assert_eq!(&x.flags, &y.flags);
                prop_assert_eq!(&x.keywords, &y.keywords);
            }
            in_step = b.in_step;
            if in_step {
                synced = v;
            }
            full = a.known;
            by_log = b.known;
        }
    }
}
