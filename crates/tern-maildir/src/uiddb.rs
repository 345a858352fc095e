//! `courierimapuiddb`: the UID list Courier-IMAP keeps in every folder.
//!
//! Format (version 1, which Dovecot v1 also wrote):
//! ```text
//! 1 <uidvalidity> <nextuid>
//! <uid> <file name without the :2,info suffix>
//! ```
//! When a folder has no `courierimapuiddb` but Dovecot's `dovecot-uidlist`
//! (version 1 or 3), its UIDs are taken over so Dovecot sites keep them too.
//! The file is rewritten atomically (write, fsync, rename) under the folder's
//! dot-lock; a damaged file is set aside and the folder gets a new
//! UIDVALIDITY, which makes clients resynchronise rather than see wrong mail.

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{MaildirError, Result};
use crate::flags::split_name;
use crate::unique::write_atomic;

/// File name of Courier's UID list.
pub const FILE_NAME: &str = "courierimapuiddb";
/// File name of Dovecot's UID list, read when Courier's is missing.
pub const DOVECOT_FILE_NAME: &str = "dovecot-uidlist";

/// The contents of a UID list.
#[derive(Debug, Clone, Default)]
pub struct UidDb {
    /// The folder's UIDVALIDITY.
    pub uidvalidity: u32,
    /// The next UID to assign. Invariant: greater than every UID in `uids`.
    pub next_uid: u32,
    /// Base file name to UID.
    pub uids: HashMap<Arc<str>, u32>,
    /// How the file this list was read from (or last written to) lies on
    /// disk; `None` when it cannot be extended in place (see
    /// [`UidDb::commit`]).
    pub layout: Option<Layout>,
}

/// Two lists are equal when they say the same; where each came from on
/// disk is not part of what they say.
impl PartialEq for UidDb {
    fn eq(&self, other: &UidDb) -> bool {
        self.uidvalidity == other.uidvalidity
            && self.next_uid == other.next_uid
            && self.uids == other.uids
    }
}

impl Eq for UidDb {}

/// Where a list's file is and how it is laid out: what lets new entries be
/// added as lines at its end, with the header's next UID rewritten in
/// place, instead of the whole list written again on every APPEND (a line
/// per message: 6 MB at 100,000 messages).
///
/// Courier-IMAP reads the next UID from the header only (it never looks at
/// the lines' UIDs for it), so the header must say the new next UID before
/// any line holds it: [`UidDb::commit`] writes and syncs the header first.
/// tern writes the header's next UID as ten digits (Courier reads leading
/// zeros as decimal), so it never changes length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The file's inode number when this process last read or wrote it
    /// (with `len` and `mtime`: a file that differs in any of them was
    /// written by someone else since).
    pub ino: u64,
    /// Its size then.
    pub len: u64,
    /// Its modification time then (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Bytes of the header line, its line end included.
    pub header_len: usize,
    /// Digits of the header's next-UID field.
    pub next_width: usize,
    /// Lines after the header (each an entry, or a line naming a message
    /// that is gone).
    pub lines: usize,
}

/// Digits of the next UID in the header tern writes: the most a `u32`
/// takes, so that the header can always be rewritten in place.
const NEXT_WIDTH: usize = 10;

/// Lines naming messages that are gone which an in-place append leaves in
/// the file, at most: this many, or a quarter of the entries, whichever is
/// more. Past it the list is written again whole, without them.
const DEAD_LINES_AT_LEAST: usize = 64;

/// The identity of a file as [`Layout`] keeps it: inode, size, mtime.
type Identity = (u64, u64, (i64, i64));

/// The identity of an open file.
fn identity(m: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    (m.ino(), m.len(), (m.mtime(), m.mtime_nsec()))
}

/// Why a UID list could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseOutcome {
    /// Parsed.
    Ok(UidDb),
    /// The file is not in a format we know, or damaged at `line`.
    Corrupt {
        /// 1-based line number of the first bad line.
        line: usize,
    },
}

impl UidDb {
    /// A fresh list with this UIDVALIDITY (see [`crate::uidvalidity`]).
    pub fn with_validity(uidvalidity: u32) -> UidDb {
        UidDb {
            uidvalidity: uidvalidity.max(1),
            next_uid: 1,
            uids: HashMap::default(),
            layout: None,
        }
    }

    /// Parses a `courierimapuiddb` (or a version-1 `dovecot-uidlist`).
    ///
    /// A last line without its line end may be one being appended by
    /// another tern process this very moment ([`UidDb::commit`]): it is
    /// ignored when it does not read as an entry (the message it names
    /// then looks unnumbered, and numbering reads the list again under the
    /// lock), and the list is then not extended in place.
    pub fn parse_courier(text: &str) -> ParseOutcome {
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return ParseOutcome::Corrupt { line: 1 };
        };
        let h: Vec<&str> = header.split_ascii_whitespace().collect();
        let (uidvalidity, header_next, next_width) = match h.as_slice() {
            // RFC 3501 §2.3.1.1: a UIDVALIDITY is never 0.
            ["1", v, n] => match (v.parse::<u32>(), n.parse::<u32>()) {
                (Ok(v), Ok(u)) if v != 0 => (v, u, n.len()),
                _ => return ParseOutcome::Corrupt { line: 1 },
            },
            _ => return ParseOutcome::Corrupt { line: 1 },
        };
        let mut next_uid = header_next;
        let terminated = text.ends_with('\n');
        let mut entry_lines = 0usize;
        let mut uids = HashMap::default();
        // Two files under one UID would hide one of them: damage.
        let mut given: rustc_hash::FxHashSet<u32> = Default::default();
        let mut lines = lines.enumerate().peekable();
        while let Some((i, line)) = lines.next() {
            let unfinished = !terminated && lines.peek().is_none();
            entry_lines += 1;
            if line.is_empty() {
                continue;
            }
            let parsed = line
                .split_once(' ')
                .and_then(|(uid, name)| Some((uid.parse::<u32>().ok()?, name)));
            let Some((uid, name)) = parsed else {
                if unfinished {
                    break;
                }
                return ParseOutcome::Corrupt { line: i + 2 };
            };
            if uid == 0 {
                return ParseOutcome::Corrupt { line: i + 2 };
            }
            next_uid = next_uid.max(uid.saturating_add(1));
            // No file name holds a line end or is empty: such a line names
            // no message (its UID still counts toward the next one).
            let (base, _) = split_name(name.trim_end_matches('\r'));
            if base.is_empty() || base.contains(['\r', '\n']) {
                continue;
            }
            if !given.insert(uid) {
                return ParseOutcome::Corrupt { line: i + 2 };
            }
            uids.insert(Arc::from(base), uid);
        }
        // The header as tern would write it again must have the same length
        // for it to be rewritten in place.
        let header_len = header.len() + 1;
        let same_form = format!("1 {uidvalidity} {header_next:0next_width$}") == header;
        let layout = (terminated && same_form && !header.ends_with('\r')).then_some(Layout {
            ino: 0,
            len: text.len() as u64,
            mtime: (0, 0),
            header_len,
            next_width,
            lines: entry_lines,
        });
        ParseOutcome::Ok(UidDb {
            uidvalidity,
            next_uid: next_uid.max(1),
            uids,
            layout,
        })
    }

    /// Parses a `dovecot-uidlist` of version 1 or 3.
    pub fn parse_dovecot(text: &str) -> ParseOutcome {
        if text.starts_with("1 ") {
            return Self::parse_courier(text);
        }
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return ParseOutcome::Corrupt { line: 1 };
        };
        let mut fields = header.split_ascii_whitespace();
        if fields.next() != Some("3") {
            return ParseOutcome::Corrupt { line: 1 };
        }
        let mut uidvalidity = None;
        let mut next_uid = 1u32;
        for f in fields {
            if let Some(v) = f.strip_prefix('V') {
                uidvalidity = v.parse::<u32>().ok();
            } else if let Some(n) = f.strip_prefix('N') {
                next_uid = n.parse().unwrap_or(1);
            }
        }
        let Some(uidvalidity) = uidvalidity.filter(|v| *v != 0) else {
            return ParseOutcome::Corrupt { line: 1 };
        };
        let mut uids = HashMap::default();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            // `<uid> [<key><value> ...] :<filename>`
            let Some((head, name)) = line.split_once(" :") else {
                return ParseOutcome::Corrupt { line: i + 2 };
            };
            let Some(Ok(uid)) = head.split_ascii_whitespace().next().map(str::parse::<u32>) else {
                return ParseOutcome::Corrupt { line: i + 2 };
            };
            next_uid = next_uid.max(uid.saturating_add(1));
            // No file name holds a line end or is empty: such a line names
            // no message (its UID still counts toward the next one).
            let (base, _) = split_name(name.trim_end_matches('\r'));
            if base.is_empty() || base.contains(['\r', '\n']) {
                continue;
            }
            uids.insert(Arc::from(base), uid);
        }
        ParseOutcome::Ok(UidDb {
            uidvalidity,
            next_uid,
            uids,
            layout: None,
        })
    }

    /// The header line with the next UID in `width` digits at least.
    fn header(&self, width: usize) -> String {
        format!("1 {} {:0width$}\n", self.uidvalidity, self.next_uid)
    }

    /// Serialises in Courier's format, entries in UID order; the header's
    /// next UID in ten digits ([`Layout`]).
    pub fn to_courier(&self) -> String {
        let mut entries: Vec<(&u32, &Arc<str>)> = self.uids.iter().map(|(k, v)| (v, k)).collect();
        entries.sort_unstable();
        let mut out = self.header(NEXT_WIDTH);
        out.reserve(entries.len() * 48);
        for (uid, name) in entries {
            push_entry(&mut out, *uid, name);
        }
        out
    }

    /// Reads the UID list of the folder at `dir`: Courier's file, else
    /// Dovecot's, else `None`. A damaged Courier file is renamed aside
    /// (`courierimapuiddb.corrupt`) and `None` returned.
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn load(dir: &Path) -> Result<Option<UidDb>> {
        let path = dir.join(FILE_NAME);
        match read_with_identity(&path).and_then(|(b, id)| {
            String::from_utf8(b)
                .map(|t| (t, id))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }) {
            Ok((text, (ino, len, mtime))) => match Self::parse_courier(&text) {
                ParseOutcome::Ok(mut db) => {
                    // What was read is what the file held when it was
                    // opened only when the sizes agree (a writer may have
                    // appended in between): else it is not extended in place.
                    db.layout =
                        db.layout
                            .filter(|l| l.len == len)
                            .map(|l| Layout { ino, mtime, ..l });
                    return Ok(Some(db));
                }
                ParseOutcome::Corrupt { line } => {
                    tracing::warn!(path = %path.display(), line, "courierimapuiddb is damaged; setting it aside and starting a new UIDVALIDITY");
                    let _ = std::fs::rename(&path, dir.join("courierimapuiddb.corrupt"));
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(path = %path.display(), "courierimapuiddb is not text; setting it aside");
                let _ = std::fs::rename(&path, dir.join("courierimapuiddb.corrupt"));
                return Ok(None);
            }
            Err(e) => return Err(MaildirError::io("read", path, e)),
        }
        let dpath = dir.join(DOVECOT_FILE_NAME);
        match crate::unique::read_nofollow(&dpath).and_then(|b| {
            String::from_utf8(b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }) {
            Ok(text) => match Self::parse_dovecot(&text) {
                ParseOutcome::Ok(db) => Ok(Some(db)),
                ParseOutcome::Corrupt { line } => {
                    tracing::warn!(path = %dpath.display(), line, "dovecot-uidlist not understood; ignoring it");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) => Ok(None),
        }
    }

    /// The UIDVALIDITY a list set aside as damaged (`courierimapuiddb.corrupt`)
    /// stated, if it states one: the list that replaces it must have a
    /// larger one (RFC 3501 §2.3.1.1), whatever the clock says.
    pub fn validity_set_aside(dir: &Path) -> Option<u32> {
        // Only the header line is wanted, whatever the file's size.
        let data =
            crate::unique::read_head_nofollow(&dir.join("courierimapuiddb.corrupt"), 256).ok()?;
        let header = data.split(|&b| b == b'\n').next()?;
        let header = std::str::from_utf8(header).ok()?;
        header.split_ascii_whitespace().nth(1)?.parse().ok()
    }

    /// Writes the list to `dir/courierimapuiddb` whole, atomically and
    /// durably, without the lines of messages that are gone; records its
    /// layout for the appends that follow. Call it under the folder's lock.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn store(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let text = self.to_courier();
        self.layout = None;
        write_atomic(&path, text.as_bytes())?;
        // The file just renamed into place, under the lock: ours.
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            let (ino, len, mtime) = identity(&m);
            if len == text.len() as u64 {
                self.layout = Some(Layout {
                    ino,
                    len,
                    mtime,
                    header_len: self.header(NEXT_WIDTH).len(),
                    next_width: NEXT_WIDTH,
                    lines: text.bytes().filter(|&b| b == b'\n').count() - 1,
                });
            }
        }
        Ok(())
    }

    /// Whether the file at `dir` is still the one this list was read from
    /// or last written to (nobody wrote it since): then this list may be
    /// used and extended instead of reading the file again.
    pub fn is_on_disk(&self, dir: &Path) -> bool {
        self.layout.is_some_and(|l| {
            std::fs::symlink_metadata(dir.join(FILE_NAME))
                .is_ok_and(|m| identity(&m) == (l.ino, l.len, l.mtime))
        })
    }

    /// Makes the list durable after `added` (UID and base name) were put
    /// in it: appended as lines, with the header's next UID rewritten in
    /// place first, when the file is still the one this list came from and
    /// holds few enough lines of messages that are gone; otherwise written
    /// whole ([`UidDb::store`]). Call it under the folder's lock, with a
    /// list read under that lock or checked with [`UidDb::is_on_disk`].
    ///
    /// # Errors
    /// Any I/O error; an append cut short is cut off the file again.
    pub fn commit(&mut self, dir: &Path, added: &[(u32, Arc<str>)]) -> Result<()> {
        if let Some(l) = self.layout {
            let mut added = added.to_vec();
            added.sort_unstable();
            let mut text = String::with_capacity(added.len() * 48);
            let written = added
                .iter()
                .filter(|(uid, base)| push_entry(&mut text, *uid, base))
                .count();
            let lines = l.lines + written;
            let dead = lines.saturating_sub(self.uids.len());
            let header = self.header(l.next_width);
            if header.len() == l.header_len && dead <= DEAD_LINES_AT_LEAST.max(self.uids.len() / 4)
            {
                if let Some(layout) = append_in_place(&dir.join(FILE_NAME), &l, &header, &text)? {
                    self.layout = Some(Layout { lines, ..layout });
                    return Ok(());
                }
                // Someone wrote the file since it was checked, lock or no
                // lock: the UIDs given from this list may be given there
                // already. Nothing is written; the messages are numbered
                // by the next scan.
                tracing::warn!(dir = %dir.display(), "courierimapuiddb changed under the folder's lock; not writing it");
                return Err(MaildirError::NotAllowed("the UID list changed meanwhile"));
            }
        }
        self.store(dir)
    }
}

/// Adds the line of one entry; false (nothing added) for a name that
/// would inject a line or name nothing: listing skips such files, and this
/// is the last guard.
fn push_entry(out: &mut String, uid: u32, name: &str) -> bool {
    use std::fmt::Write as _;
    if name.is_empty() || name.contains(['\n', '\r']) {
        return false;
    }
    let _ = writeln!(out, "{uid} {name}");
    true
}

/// A file's bytes and its identity ([`Layout`]), read through one open.
fn read_with_identity(path: &Path) -> std::io::Result<(Vec<u8>, Identity)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let id = identity(&f.metadata()?);
    let mut buf = Vec::with_capacity(usize::try_from(id.1).unwrap_or(0).min(64 << 20));
    f.read_to_end(&mut buf)?;
    Ok((buf, id))
}

/// Rewrites the header of the list at `path` in place and syncs it, then
/// appends `lines` and syncs again: Courier numbers from the header alone,
/// so no line may ever hold a UID the header does not yet count past.
/// `None` when the file is not the one `l` describes.
fn append_in_place(path: &Path, l: &Layout, header: &str, lines: &str) -> Result<Option<Layout>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let io = |e| MaildirError::io("append to", path, e);
    let f = match std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let m = f.metadata().map_err(io)?;
    if identity(&m) != (l.ino, l.len, l.mtime) || !m.is_file() {
        return Ok(None);
    }
    f.write_all_at(header.as_bytes(), 0).map_err(io)?;
    f.sync_data().map_err(io)?;
    if let Err(e) = f
        .write_all_at(lines.as_bytes(), l.len)
        .and_then(|()| f.sync_data())
    {
        // A line cut short (the disk is full) is not left for a reader.
        let _ = f.set_len(l.len);
        return Err(io(e));
    }
    let (ino, len, mtime) = identity(&f.metadata().map_err(io)?);
    Ok(Some(Layout {
        ino,
        len,
        mtime,
        ..*l
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn courier_roundtrip() {
        let text = "1 1700000000 4\n1 a.M1P1.h,S=3\n3 b.M2P2.h\n";
        let ParseOutcome::Ok(db) = UidDb::parse_courier(text) else {
            panic!()
        };
        assert_eq!(db.uidvalidity, 1700000000);
        assert_eq!(db.next_uid, 4);
        assert_eq!(db.uids.get("b.M2P2.h"), Some(&3));
        // tern writes the next UID in ten digits (Courier reads it so too).
        assert_eq!(
            db.to_courier(),
            "1 1700000000 0000000004\n1 a.M1P1.h,S=3\n3 b.M2P2.h\n"
        );
        assert_eq!(UidDb::parse_courier(&db.to_courier()), ParseOutcome::Ok(db));
    }

    #[test]
    fn nextuid_never_below_a_used_uid() {
        let ParseOutcome::Ok(db) = UidDb::parse_courier("1 5 2\n7 x\n") else {
            panic!()
        };
        assert_eq!(db.next_uid, 8);
    }

    #[test]
    fn dovecot_v3() {
        let text = "3 V1234 N10 G0123abcd\n5 :a.M1P1.h:2,S\n9 W120 S100 :b.M2.h\n";
        let ParseOutcome::Ok(db) = UidDb::parse_dovecot(text) else {
            panic!()
        };
        assert_eq!(db.uidvalidity, 1234);
        assert_eq!(db.next_uid, 10);
        assert_eq!(db.uids.get("a.M1P1.h"), Some(&5));
        assert_eq!(db.uids.get("b.M2.h"), Some(&9));
    }

    #[test]
    fn corrupt_is_reported() {
        assert_eq!(
            UidDb::parse_courier("2 x y\n"),
            ParseOutcome::Corrupt { line: 1 }
        );
        assert_eq!(
            UidDb::parse_courier("1 1 1\nfoo\n"),
            ParseOutcome::Corrupt { line: 2 }
        );
    }

    fn ino(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn a_new_entry_is_appended_with_the_header_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut db = UidDb::with_validity(1234);
        for i in 1..=3 {
            db.uids.insert(Arc::from(format!("m{i}").as_str()), i);
        }
        db.next_uid = 4;
        db.store(dir.path()).unwrap();
        let first = ino(&path);
        assert!(db.is_on_disk(dir.path()));
        db.uids.insert(Arc::from("m4"), 4);
        db.next_uid = 5;
        db.commit(dir.path(), &[(4, Arc::from("m4"))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "1 1234 0000000005\n1 m1\n2 m2\n3 m3\n4 m4\n");
        assert_eq!(ino(&path), first, "extended in place, not replaced");
        assert!(db.is_on_disk(dir.path()));
        // What it reads back is what it says, and can be extended again.
        let again = UidDb::load(dir.path()).unwrap().unwrap();
        assert_eq!(again, db);
        assert!(again.is_on_disk(dir.path()));
    }

    #[test]
    fn lines_of_gone_messages_are_bounded_then_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut db = UidDb::with_validity(7);
        db.uids.insert(Arc::from("kept"), 1);
        db.next_uid = 2;
        db.store(dir.path()).unwrap();
        // APPEND then EXPUNGE, again and again: each line stays until the
        // file holds more than DEAD_LINES_AT_LEAST of them.
        let mut most = 0;
        for i in 0..200u32 {
            let base: Arc<str> = Arc::from(format!("n{i}").as_str());
            let uid = db.next_uid;
            db.uids.insert(base.clone(), uid);
            db.next_uid += 1;
            db.commit(dir.path(), &[(uid, base.clone())]).unwrap();
            db.uids.remove(&base);
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            most = most.max(lines);
        }
        assert!(most <= DEAD_LINES_AT_LEAST + 3, "{most} lines");
        assert!(most > 3, "lines were appended, not rewritten each time");
        let back = UidDb::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.next_uid, 202);
        assert_eq!(back.uids.get("kept"), Some(&1));
    }

    #[test]
    fn a_list_someone_else_wrote_is_read_again_and_courier_headers_are_kept_when_they_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // As Courier-IMAP writes it: the next UID in as few digits as it takes.
        std::fs::write(&path, "1 99 9\n8 a\n").unwrap();
        let mut db = UidDb::load(dir.path()).unwrap().unwrap();
        assert!(db.is_on_disk(dir.path()));
        db.uids.insert(Arc::from("b"), 9);
        db.next_uid = 10;
        // "10" does not fit where "9" was: written whole.
        db.commit(dir.path(), &[(9, Arc::from("b"))]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1 99 0000000010\n8 a\n9 b\n"
        );
        // Courier rewrites it (a new file under the same name).
        std::fs::write(dir.path().join("x"), "1 99 11\n8 a\n9 b\n10 c\n").unwrap();
        std::fs::rename(dir.path().join("x"), &path).unwrap();
        assert!(!db.is_on_disk(dir.path()), "the list in memory is stale");
        // A commit from a stale list writes nothing (UID 10 is c's there).
        db.uids.insert(Arc::from("d"), 10);
        db.next_uid = 11;
        assert!(db.commit(dir.path(), &[(10, Arc::from("d"))]).is_err());
        let back = UidDb::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.uids.get("c"), Some(&10));
        assert_eq!(back.uids.get("d"), None);
    }

    #[test]
    fn a_last_line_being_appended_is_not_damage() {
        // Another tern process is between its two writes.
        for text in ["1 5 0000000005\n3 a\n4", "1 5 0000000005\n3 a\n"] {
            let ParseOutcome::Ok(db) = UidDb::parse_courier(text) else {
                panic!("{text:?} read as damage")
            };
            assert_eq!(db.uids.get("a"), Some(&3));
        }
        let ParseOutcome::Ok(db) = UidDb::parse_courier("1 5 0000000005\n3 a\n4 b.M") else {
            panic!()
        };
        assert!(db.layout.is_none(), "not extended after a line cut short");
        // Within the file, a line that is no entry is still damage.
        assert_eq!(
            UidDb::parse_courier("1 5 5\n4\n3 a\n"),
            ParseOutcome::Corrupt { line: 2 }
        );
    }

    #[test]
    fn two_files_under_one_uid_and_a_zero_uidvalidity_are_damage() {
        // One of the two would be hidden from every client.
        assert_eq!(
            UidDb::parse_courier("1 1700000000 9\n3 a.M1.h\n3 b.M2.h\n"),
            ParseOutcome::Corrupt { line: 3 }
        );
        assert_eq!(
            UidDb::parse_courier("1 0 9\n3 a.M1.h\n"),
            ParseOutcome::Corrupt { line: 1 }
        );
        assert_eq!(
            UidDb::parse_dovecot("3 V0 N9\n3 :a.M1.h\n"),
            ParseOutcome::Corrupt { line: 1 }
        );
    }

    #[test]
    fn a_damaged_list_is_replaced_by_one_of_a_larger_uidvalidity() {
        // Set aside, and the new list's UIDVALIDITY is above the damaged
        // one's even when that one lies in the future.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join(".Sent");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(f.join(sub)).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(f.join("cur/1.M1.h:2,"), b"x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(f.join("cur/2.M2.h:2,"), b"y").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(f.join(FILE_NAME), "1 4000000000 3\n1 1.M1.h\n1 2.M2.h\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let folder = crate::Folder::new(f.clone());
        let view = folder
            .refresh(crate::folder::MoveNew::No)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(view.uidvalidity > 4_000_000_000, "{}", view.uidvalidity);
        assert_eq!(view.messages.len(), 2, "both messages are shown");
        assert!(f.join("courierimapuiddb.corrupt").exists());
    }
}
