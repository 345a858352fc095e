//! POP3 UIDLs and sizes in Courier's `courierpop3dsizelist`, so that POP3
//! clients download nothing twice when a site moves from Courier to tern
//! (or back).
//!
//! ```text
//! /3 <next uid> <uidvalidity>
//! <file name> <size with CRLF> <uid>:<uidvalidity>:<utf8 0|1>
//! ```
//! Version 2 lacks the `:<utf8>` field. Messages are matched by the unique
//! part of the name (before `:2,`), so flag changes do not change a UIDL.
//! A message's UIDL is `UID<uid>-<uidvalidity>` (`UID<uid>` when the
//! uidvalidity is 0). A list without the `/N` header is Courier's oldest
//! form (`<file name> <size>`): its messages keep the UIDL derived from the
//! file name, which tern keeps writing as `0:0:0` entries that Courier's
//! pop3d shows the same way.
//!
//! A Maildir that Dovecot served may carry Dovecot's POP3 UIDLs in the
//! `P` field of `dovecot-uidlist`; those win, so Dovecot's POP3 users also
//! download nothing twice.

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{MaildirError, Result};
use crate::flags::split_name;
use crate::folder::{FolderView, MessageEntry};
use crate::lock::DotLock;
use crate::uidl_format::UidlFormat;
use crate::unique::{read_nofollow, write_atomic};

/// Courier's POP3 list in the Maildir root.
pub const POP3_LIST: &str = "courierpop3dsizelist";

/// The dot-lock tern takes while it rewrites the list.
pub const POP3_LIST_LOCK: &str = "courierpop3dsizelist.lock";

/// The version tern writes.
const VERSION: u32 = 3;

/// One message of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Entry {
    /// File name as last seen (with its flags).
    pub file_name: String,
    /// Size with CRLF line ends.
    pub size: u64,
    /// UID; 0 for a UIDL derived from the file name.
    pub uid: u64,
    /// UIDVALIDITY of the UID.
    pub uidv: u64,
    /// The message has 8-bit headers.
    pub utf8: bool,
}

impl Pop3Entry {
    /// The UIDL Courier's pop3d shows for this entry.
    pub fn uidl(&self) -> String {
        if self.uid != 0 {
            return if self.uidv != 0 {
                format!("UID{}-{}", self.uid, self.uidv)
            } else {
                format!("UID{}", self.uid)
            };
        }
        name_uidl(split_name(&self.file_name).0)
    }
}

/// Courier's version-0 UIDL: the base name with unsafe bytes as `+XX`.
pub fn name_uidl(base: &str) -> String {
    let mut out = String::with_capacity(base.len());
    for b in base.bytes() {
        if !(0x21..=0x7e).contains(&b) || matches!(b, b'\'' | b'"' | b'+') {
            out.push_str(&format!("+{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The parsed list.
#[derive(Debug, Clone, Default)]
pub struct Pop3List {
    /// Version read (0 for the headerless form).
    pub version: u32,
    /// The UID the next new message gets.
    pub next_uid: u64,
    /// UIDVALIDITY given to new messages.
    pub uidv: u64,
    /// Entries by base name.
    pub entries: HashMap<String, Pop3Entry>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

impl Pop3List {
    /// An empty list for a Maildir POP3 never saw.
    pub fn new_now() -> Pop3List {
        Pop3List {
            version: VERSION,
            next_uid: 1,
            uidv: now_secs(),
            entries: HashMap::default(),
        }
    }

    /// Parses a list; `None` when it is of a version Courier would ignore
    /// too (POP3 then starts a new list, as Courier does).
    pub fn parse(text: &str) -> Option<Pop3List> {
        let mut lines = text.split('\n');
        let mut list = Pop3List::new_now();
        let headerless = !text.starts_with('/');
        if headerless {
            list.version = 0;
        } else {
            let header = lines.next()?;
            let mut f = header[1..].split_ascii_whitespace();
            list.version = f.next()?.parse().ok()?;
            if !(2..=3).contains(&list.version) {
                return None;
            }
            list.next_uid = f.next()?.parse().ok()?;
            if let Some(v) = f.next().and_then(|v| v.parse().ok()) {
                list.uidv = v;
            }
        }
        for line in lines {
            // `<name> <size> [<uid>:<uidv>[:<utf8>]]`; names have no spaces.
            let mut f = line.split(' ');
            let (Some(name), Some(size)) = (f.next(), f.next()) else {
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            let (uid, uidv, utf8) = match f.next() {
                Some(ids) => {
                    let mut p = ids.split(':');
                    let uid = p.next().and_then(|v| v.parse().ok());
                    let uidv = p.next().and_then(|v| v.parse().ok());
                    let utf8 = p.next().is_some_and(|v| v == "1");
                    match (uid, uidv) {
                        (Some(u), Some(v)) => (u, v, utf8),
                        _ => continue,
                    }
                }
                // Only the headerless form has no UID field.
                None if headerless => (0, 0, false),
                None => continue,
            };
            if name.is_empty() {
                continue;
            }
            let base = split_name(name).0.to_owned();
            list.entries.insert(
                base,
                Pop3Entry {
                    file_name: name.to_owned(),
                    size,
                    uid,
                    uidv,
                    utf8,
                },
            );
        }
        Some(list)
    }

    /// Serialises as version 3, entries in the order given.
    pub fn to_text<'a>(&self, order: impl Iterator<Item = &'a Pop3Entry>) -> String {
        let mut out = format!("/{VERSION} {} {}\n", self.next_uid, self.uidv);
        for e in order {
            out.push_str(&format!(
                "{} {} {}:{}:{}\n",
                e.file_name,
                e.size,
                e.uid,
                e.uidv,
                u8::from(e.utf8)
            ));
        }
        out
    }
}

/// Dovecot's POP3 UIDLs (`P` fields) from a `dovecot-uidlist`, by base name.
pub fn dovecot_uidls(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::default();
    if !text.starts_with("3 ") {
        return out;
    }
    for line in text.lines().skip(1) {
        let Some((head, name)) = line.split_once(" :") else {
            continue;
        };
        if let Some(p) = head
            .split_ascii_whitespace()
            .skip(1)
            .find_map(|f| f.strip_prefix('P'))
        {
            if !p.is_empty() {
                out.insert(split_name(name).0.to_owned(), p.to_owned());
            }
        }
    }
    out
}

/// One message as POP3 presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Message {
    /// The message as the folder knows it.
    pub entry: MessageEntry,
    /// Its UIDL.
    pub uidl: String,
    /// Its size with CRLF line ends.
    pub size: u64,
}

/// Where UIDLs come from besides `courierpop3dsizelist`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UidlSource<'a> {
    /// A template (`pop3.uidl_format`) computing UIDLs from the IMAP UID
    /// and UIDVALIDITY, as Dovecot does; `None` for Courier's UIDLs.
    pub format: Option<&'a UidlFormat>,
    /// The folder's UIDVALIDITY, for the template.
    pub uidvalidity: u32,
}

/// Gives every message of `messages` (the Maildir's INBOX, in order) its
/// UIDL and size, from `courierpop3dsizelist` where it knows the message,
/// else a new UID; saves the list when it changed. A UIDL Dovecot saved in
/// `dovecot-uidlist` wins, then the template of `source`, then the list's.
/// `size_of` counts a message the list does not know; `None` means it is
/// gone and is left out.
///
/// # Errors
/// I/O errors reading or writing the list, or the lock timing out.
pub fn assign(
    root: &Path,
    messages: &[MessageEntry],
    source: UidlSource<'_>,
    size_of: impl Fn(&MessageEntry) -> Result<Option<u64>> + Sync,
) -> Result<Vec<Pop3Message>> {
    let _lock = DotLock::acquire(&root.join(POP3_LIST_LOCK))?;
    let path = root.join(POP3_LIST);
    let old = match read_nofollow(&path) {
        Ok(bytes) => Pop3List::parse(&String::from_utf8_lossy(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(MaildirError::io("read", path, e)),
    };
    let dovecot = match read_nofollow(&root.join("dovecot-uidlist")) {
        Ok(bytes) => dovecot_uidls(&String::from_utf8_lossy(&bytes)),
        Err(_) => HashMap::default(),
    };
    let mut changed = old.as_ref().is_none_or(|l| l.version != VERSION);
    let mut list = old.unwrap_or_else(Pop3List::new_now);
    // Messages the list does not know are counted (read) in parallel: on
    // a first POP3 login to a large Maildir that is nearly all the work.
    let unknown: Vec<&MessageEntry> = messages
        .iter()
        .filter(|m| !list.entries.contains_key(&*m.base))
        .collect();
    let mut sizes = sizes_in_parallel(&unknown, &size_of)?.into_iter();
    let mut kept: Vec<Pop3Entry> = Vec::with_capacity(messages.len());
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let entry = match list.entries.remove(&*m.base) {
            Some(mut e) => {
                if e.file_name != *m.file_name {
                    e.file_name = m.file_name.to_string();
                    changed = true;
                }
                e
            }
            None => {
                let Some(size) = sizes.next().flatten() else {
                    continue;
                };
                changed = true;
                let e = Pop3Entry {
                    file_name: m.file_name.to_string(),
                    size,
                    uid: list.next_uid,
                    uidv: list.uidv,
                    utf8: false,
                };
                list.next_uid += 1;
                e
            }
        };
        let uidl = match (dovecot.get(&*m.base), source.format) {
            (Some(saved), _) => saved.clone(),
            (None, Some(f)) => f.render(m.uid, source.uidvalidity, &m.base),
            (None, None) => entry.uidl(),
        };
        out.push(Pop3Message {
            entry: m.clone(),
            uidl,
            size: entry.size,
        });
        kept.push(entry);
    }
    // Entries of messages that are gone are dropped.
    changed |= !list.entries.is_empty();
    if changed {
        write_atomic(&path, list.to_text(kept.iter()).as_bytes())?;
    }
    Ok(out)
}

/// `size_of` of every entry, in order, spread over the machine's cores.
fn sizes_in_parallel(
    entries: &[&MessageEntry],
    size_of: &(impl Fn(&MessageEntry) -> Result<Option<u64>> + Sync),
) -> Result<Vec<Option<u64>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads <= 1 || entries.len() < 256 {
        return entries.iter().map(|m| size_of(m)).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|m| size_of(m)).collect::<Result<Vec<_>>>())
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part?),
                Err(_) => {
                    return Err(MaildirError::io(
                        "count",
                        "message sizes",
                        std::io::Error::other("size thread panicked"),
                    ))
                }
            }
        }
        Ok(out)
    })
}

/// What a POP3 login computed, kept for the next login: while neither the
/// folder view nor the lists on disk changed, the next login reuses it
/// instead of parsing a list of 100,000 lines again.
#[derive(Debug, Default)]
pub struct Pop3Cache {
    last: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    view: Arc<FolderView>,
    stamps: [Option<(SystemTime, u64, u64)>; 2],
    messages: Arc<Vec<Pop3Message>>,
}

fn file_stamps(root: &Path) -> [Option<(SystemTime, u64, u64)>; 2] {
    use std::os::unix::fs::MetadataExt;
    [POP3_LIST, "dovecot-uidlist"].map(|n| {
        std::fs::symlink_metadata(root.join(n))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
    })
}

impl Pop3Cache {
    /// [`assign`] for `view`, or the previous answer when nothing changed.
    ///
    /// # Errors
    /// As [`assign`].
    pub fn assign(
        &self,
        root: &Path,
        view: &Arc<FolderView>,
        format: Option<&UidlFormat>,
        size_of: impl Fn(&MessageEntry) -> Result<Option<u64>> + Sync,
    ) -> Result<Arc<Vec<Pop3Message>>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let before = file_stamps(root);
        if let Some(c) = last.as_ref() {
            if Arc::ptr_eq(&c.view, view) && c.stamps == before {
                return Ok(c.messages.clone());
            }
        }
        let source = UidlSource {
            format,
            uidvalidity: view.uidvalidity,
        };
        let messages = Arc::new(assign(root, &view.messages, source, size_of)?);
        *last = Some(Cached {
            view: view.clone(),
            stamps: file_stamps(root),
            messages: messages.clone(),
        });
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::Flags;
    use std::sync::Arc;

    fn entry(uid: u32, name: &str) -> MessageEntry {
        MessageEntry {
            uid,
            base: Arc::from(split_name(name).0),
            file_name: Arc::from(name),
            in_new: false,
            flags: Flags::default(),
            keywords: Default::default(),
        }
    }

    #[test]
    fn version_3_and_2_parse() {
        let l = Pop3List::parse("/3 5 1700000000\n1.a.h:2,S 120 3:1700000000:0\n").unwrap();
        assert_eq!((l.next_uid, l.uidv), (5, 1_700_000_000));
        assert_eq!(l.entries["1.a.h"].uidl(), "UID3-1700000000");
        let l = Pop3List::parse("/2 9 77\n2.b.h 10 4:77\n").unwrap();
        assert_eq!(l.entries["2.b.h"].uidl(), "UID4-77");
        assert!(Pop3List::parse("/9 1 1\n").is_none());
    }

    #[test]
    fn headerless_lists_keep_name_uidls() {
        let l = Pop3List::parse("1.a+b'c.h:2,S 12\n").unwrap();
        assert_eq!(l.version, 0);
        assert_eq!(l.entries["1.a+b'c.h"].uidl(), "1.a+2Bb+27c.h");
        let text = l.to_text(l.entries.values());
        let again = Pop3List::parse(&text).unwrap();
        assert_eq!(again.entries["1.a+b'c.h"].uidl(), "1.a+2Bb+27c.h");
    }

    #[test]
    fn assign_keeps_known_uidls_and_numbers_new_ones() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::write(
            root.join(POP3_LIST),
            "/3 8 500\n1.a.h:2, 10 6:500:0\n9.gone.h 5 7:500:0\n",
        )
        .unwrap();
        let msgs = [entry(1, "1.a.h:2,S"), entry(2, "2.b.h,W=33:2,")];
        let got = assign(root, &msgs, UidlSource::default(), |_| Ok(Some(33))).unwrap();
        assert_eq!(got[0].uidl, "UID6-500");
        assert_eq!(got[0].size, 10);
        assert_eq!(got[1].uidl, "UID8-500");
        assert_eq!(got[1].size, 33);
        let text = std::fs::read_to_string(root.join(POP3_LIST)).unwrap();
        assert_eq!(
            text,
            "/3 9 500\n1.a.h:2,S 10 6:500:0\n2.b.h,W=33:2, 33 8:500:0\n"
        );
        // The same again: nothing new, the file stays as it is.
        let again = assign(root, &msgs, UidlSource::default(), |_| {
            panic!("sizes are known")
        })
        .unwrap();
        assert_eq!(again, got);
    }

    #[test]
    fn many_new_messages_are_sized_in_order_and_cached() {
        let t = tempfile::tempdir().unwrap();
        let msgs: Vec<MessageEntry> = (1..=1000)
            .map(|i| entry(i, &format!("{i}.m.h,W={}", i * 3)))
            .collect();
        let view = Arc::new(FolderView {
            uidvalidity: 1,
            next_uid: 1001,
            messages: msgs,
            generation: 0,
            digest: Default::default(),
        });
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let size = |e: &MessageEntry| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(crate::flags::name_field(&e.base, 'W'))
        };
        let cache = Pop3Cache::default();
        let a = cache.assign(t.path(), &view, None, size).unwrap();
        assert_eq!(a.len(), 1000);
        for (i, m) in a.iter().enumerate() {
            assert_eq!(m.size, (i as u64 + 1) * 3);
            assert_eq!(
                m.uidl,
                format!("UID{}-{}", i + 1, a[0].uidl.split('-').nth(1).unwrap())
            );
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1000);
        // Nothing changed: the same answer, nothing counted or parsed.
        let b = cache
            .assign(t.path(), &view, None, |_| panic!("cached"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another program rewrote the list: it is read again.
        let text = std::fs::read_to_string(t.path().join(POP3_LIST)).unwrap();
        std::fs::write(t.path().join(POP3_LIST), text.replace(" 1:", " 77:")).unwrap();
        let c = cache
            .assign(t.path(), &view, None, |_| panic!("sizes are in the list"))
            .unwrap();
        assert!(c[0].uidl.starts_with("UID77-"), "{}", c[0].uidl);
    }

    #[test]
    fn dovecot_uidls_win() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("dovecot-uidlist"),
            "3 V1 N3 G0\n1 W10 P0000abcd :1.a.h:2,S\n2 :2.b.h\n",
        )
        .unwrap();
        let msgs = [entry(1, "1.a.h:2,S"), entry(2, "2.b.h")];
        let got = assign(t.path(), &msgs, UidlSource::default(), |_| Ok(Some(1))).unwrap();
        assert_eq!(got[0].uidl, "0000abcd");
        assert!(got[1].uidl.starts_with("UID2-"));
        // With Dovecot's template, messages without a saved UIDL get the
        // one Dovecot computed; a saved one still wins.
        let format = UidlFormat::parse("%08Xu%08Xv").unwrap();
        let source = UidlSource {
            format: Some(&format),
            uidvalidity: 0x6b09_67d9,
        };
        let got = assign(t.path(), &msgs, source, |_| Ok(Some(1))).unwrap();
        assert_eq!(got[0].uidl, "0000abcd");
        assert_eq!(got[1].uidl, "000000026b0967d9");
    }
}
