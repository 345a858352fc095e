//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): arbitrary
//! bytes through the framer and the command parser. They must never panic
//! and check the framer's invariants; `tests/fuzz_corpus.rs` replays the
//! saved corpora and random inputs through them in every test run.

use crate::framer::{Event, Framer, FramerLimits};

/// The framer fed `data` in pieces (the first byte picks the piece size
/// and the second how literals are treated), with small limits so that
/// every limit is reached. Panics when an invariant breaks: a command over
/// the limit, a command not ending in CRLF, a chunk longer than its literal.
pub fn framer(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(2));
    let piece = usize::from(head.first().copied().unwrap_or(7) % 32) + 1;
    let policy = head.get(1).copied().unwrap_or(0) % 3;
    let limits = FramerLimits {
        max_line: 80,
        max_command: 300,
        max_discard: 500,
    };
    let mut f = Framer::new(limits);
    let mut pieces = rest.chunks(piece);
    let mut streaming = 0u64;
    loop {
        match f.next_event() {
            Event::NeedInput => match pieces.next() {
                Some(p) => f.feed(p),
                None => return,
            },
            Event::Literal { info, prefix } => {
                assert!(prefix.len() <= limits.max_command);
                match policy {
                    0 => {
                        let _ = f.inline();
                    }
                    1 => {
                        f.stream();
                        streaming = info.len;
                    }
                    _ => f.refuse(),
                }
            }
            Event::Chunk(c) => {
                assert!(c.len() as u64 <= streaming, "chunk beyond its literal");
                streaming -= c.len() as u64;
            }
            Event::Command(c) => {
                assert!(c.len() <= limits.max_command + 1, "command over the limit");
                assert!(c.ends_with(b"\r\n"));
                let _ = crate::command::parse(&c);
            }
            Event::TooLong { .. } => {}
            Event::Fatal => return,
        }
    }
}

/// The command parser and the grammar tern adds around it.
pub fn command(data: &[u8]) {
    let _ = crate::command::parse(data);
    let _ = crate::esearch::split_return(data);
    let _ = crate::binary_sections::rewrite(data);
    let _ = crate::lexer::saved_set_argument(data);
    if let Ok(mut p) = crate::parsed::parse(data, 500) {
        if let Some(c) = p.criteria.as_mut() {
            c.resolve_saved(None);
            assert!(!c.uses_saved(), "a `$` left after resolving");
        }
    }
    let (pattern, name) = data.split_at(data.len() / 2);
    let _ = crate::command::list_match(pattern, name, b'.');
    criteria(data);
}

/// The criteria parser against imap-codec's: where both read a SEARCH,
/// they must agree on what matches, for a few ways of deciding its keys.
/// Panics when they disagree.
fn criteria(data: &[u8]) {
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::imap_types::search::SearchKey;
    let Ok(Some((_, ours))) = crate::criteria::split_command(data, 500) else {
        return;
    };
    let Ok(cmd) = crate::command::parse(data) else {
        return;
    };
    let CommandBody::Search { criteria, .. } = cmd.body else {
        return;
    };
    // A key's truth: a hash of its text and the round.
    let truth = |k: &SearchKey<'_>, round: u64| -> bool {
        let mut h = round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in format!("{k:?}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h >> 63 == 1
    };
    // The codec's tree is at most nine deep: a recursive walk is bounded.
    fn reference(k: &SearchKey<'_>, leaf: &dyn Fn(&SearchKey<'_>) -> bool) -> bool {
        match k {
            SearchKey::And(ks) => ks.as_ref().iter().all(|k| reference(k, leaf)),
            SearchKey::Or(a, b) => reference(a, leaf) || reference(b, leaf),
            SearchKey::Not(k) => !reference(k, leaf),
            k => leaf(k),
        }
    }
    let mut scratch = Vec::new();
    for round in 0..4 {
        let theirs = criteria
            .as_ref()
            .iter()
            .all(|k| reference(k, &|k| truth(k, round)));
        let mine = ours.eval(&mut scratch, |k| truth(k, round));
        assert_eq!(mine, theirs, "criteria disagree with imap-codec");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_criteria_seed_reaches_both_parsers() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/seeds/command/search-criteria"
        ))
        .unwrap_or_default();
        assert!(matches!(
            crate::criteria::split_command(&seed, 500),
            Ok(Some(_))
        ));
        assert!(crate::command::parse(&seed).is_ok());
        super::criteria(&seed);
    }
}

/// What a driver of the command engine saw: each step with its bytes (the
/// chunks of one streamed message joined), and the output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EngineTrace {
    /// One entry per step that matters.
    pub steps: Vec<String>,
    /// What the engine wrote.
    pub out: Vec<u8>,
}

/// Drives the command engine ([`crate::engine`]) over `pieces` as the
/// server does: every APPEND message streamed (or refused, when
/// `refuse_appends`), every command prepared; starting in `phase`, moved on
/// as the commands would (LOGIN logs in, SELECT selects, CLOSE closes,
/// LOGOUT ends), with a saved result of the messages 1 and 2.
pub fn drive_engine(
    pieces: &[&[u8]],
    mut phase: crate::engine::Phase,
    refuse_appends: bool,
) -> EngineTrace {
    use crate::engine::{prepare, Phase, Prepared, Reader, SavedResult, Step};
    use crate::ids::{Seq, Uid};
    use imap_codec::imap_types::command::CommandBody as C;
    struct Two;
    impl SavedResult for Two {
        fn saved_uids(&self) -> Vec<u32> {
            vec![1, 2]
        }
        fn seq_of(&self, uid: Uid) -> Option<Seq> {
            Seq::from_index(uid.0.checked_sub(1)? as usize)
        }
    }
    let mut r = Reader::new(FramerLimits {
        max_line: 1000,
        max_command: 2000,
        max_discard: 100_000,
    });
    let mut t = EngineTrace::default();
    let mut next = pieces.iter();
    let mut message = Vec::new();
    loop {
        match r.next(phase, &mut t.out) {
            Step::NeedInput => match next.next() {
                Some(p) => r.feed(p),
                None => return t,
            },
            Step::Flush => {}
            Step::AppendMessage { tag, mailbox, .. } => {
                assert_ne!(phase, Phase::NotAuthenticated, "a message before login");
                t.steps.push(format!("append-message {tag:?} {mailbox:?}"));
                if refuse_appends {
                    let no = crate::response::Reply::no(None, "cannot");
                    r.refuse(tag.as_deref(), &no, &mut t.out);
                } else {
                    r.stream(&mut t.out);
                }
            }
            Step::Chunk(bytes) => message.extend_from_slice(&bytes),
            Step::Command(bytes) => {
                if !message.is_empty() {
                    t.steps
                        .push(format!("message {}", String::from_utf8_lossy(&message)));
                    message.clear();
                }
                let saved = (phase == Phase::Selected).then_some(&Two as &dyn SavedResult);
                match prepare(&bytes, phase, 100, saved, &mut t.out) {
                    Prepared::Run(ready) => {
                        assert!(
                            phase.allows(&ready.body).is_ok(),
                            "ran what the state refuses"
                        );
                        t.steps.push(format!("run {}", ready.tag));
                        phase = match (&ready.body, phase) {
                            (C::Login { .. } | C::Authenticate { .. }, _) => Phase::Authenticated,
                            (C::Select { .. } | C::Examine { .. }, _) => Phase::Selected,
                            (C::Close | C::Unselect, _) => Phase::Authenticated,
                            (C::Logout, _) => Phase::Logout,
                            (_, p) => p,
                        };
                        if phase == Phase::Logout {
                            return t;
                        }
                    }
                    Prepared::Acl { tag, command } => {
                        assert!(
                            matches!(phase, Phase::Authenticated | Phase::Selected),
                            "ran an ACL command the state refuses"
                        );
                        t.steps.push(format!("acl {tag} {}", command.name()));
                    }
                    Prepared::Answered { unparsable } => {
                        t.steps.push(format!("answered unparsable={unparsable}"))
                    }
                }
            }
            Step::Answered => {
                message.clear();
                t.steps.push("dropped".into());
            }
            Step::Close => {
                t.steps.push("close".into());
                return t;
            }
        }
    }
}

/// The command engine over arbitrary bytes: the first byte picks the
/// starting state, whether APPENDs are refused and where the input is
/// cut; fed whole and fed in pieces it takes the same steps and writes
/// the same bytes, and every line it writes ends with CRLF.
pub fn engine(data: &[u8]) {
    use crate::engine::Phase;
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let phase = match first % 3 {
        0 => Phase::NotAuthenticated,
        1 => Phase::Authenticated,
        _ => Phase::Selected,
    };
    let refuse = first & 0x80 != 0;
    let whole = drive_engine(&[input], phase, refuse);
    let cut = usize::from(first >> 2 & 0x1f) + 1;
    let pieces: Vec<&[u8]> = input.chunks(cut).collect();
    assert_eq!(
        drive_engine(&pieces, phase, refuse),
        whole,
        "cut in pieces of {cut}"
    );
    assert!(
        whole.out.is_empty() || whole.out.ends_with(b"\r\n"),
        "an unterminated line"
    );
    for line in whole.out.split(|&b| b == b'\n') {
        assert!(!line.contains(&b'\r') || line.ends_with(b"\r"), "a bare CR");
    }
}
