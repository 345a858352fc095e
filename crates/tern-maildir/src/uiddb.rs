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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidDb {
    /// The folder's UIDVALIDITY.
    pub uidvalidity: u32,
    /// The next UID to assign. Invariant: greater than every UID in `uids`.
    pub next_uid: u32,
    /// Base file name to UID.
    pub uids: HashMap<Arc<str>, u32>,
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
        }
    }

    /// Parses a `courierimapuiddb` (or a version-1 `dovecot-uidlist`).
    pub fn parse_courier(text: &str) -> ParseOutcome {
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return ParseOutcome::Corrupt { line: 1 };
        };
        let h: Vec<&str> = header.split_ascii_whitespace().collect();
        let (uidvalidity, mut next_uid) = match h.as_slice() {
            // RFC 3501 §2.3.1.1: a UIDVALIDITY is never 0.
            ["1", v, n] => match (v.parse::<u32>(), n.parse::<u32>()) {
                (Ok(v), Ok(n)) if v != 0 => (v, n),
                _ => return ParseOutcome::Corrupt { line: 1 },
            },
            _ => return ParseOutcome::Corrupt { line: 1 },
        };
        let mut uids = HashMap::default();
        // Two files under one UID would hide one of them: damage.
        let mut given: rustc_hash::FxHashSet<u32> = Default::default();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some((uid, name)) = line.split_once(' ') else {
                return ParseOutcome::Corrupt { line: i + 2 };
            };
            let Ok(uid) = uid.parse::<u32>() else {
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
        ParseOutcome::Ok(UidDb {
            uidvalidity,
            next_uid: next_uid.max(1),
            uids,
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
        })
    }

    /// Serialises in Courier's format, entries in UID order.
    pub fn to_courier(&self) -> String {
        let mut entries: Vec<(&u32, &Arc<str>)> = self.uids.iter().map(|(k, v)| (v, k)).collect();
        entries.sort_unstable();
        let mut out = format!("1 {} {}\n", self.uidvalidity, self.next_uid);
        out.reserve(entries.len() * 48);
        for (uid, name) in entries {
            // A name that would inject a line is never written (listing
            // skips such files; this is the last guard).
            if name.is_empty() || name.contains(['\n', '\r']) {
                continue;
            }
            out.push_str(&uid.to_string());
            out.push(' ');
            out.push_str(name);
            out.push('\n');
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
        match crate::unique::read_nofollow(&path).and_then(|b| {
            String::from_utf8(b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }) {
            Ok(text) => match Self::parse_courier(&text) {
                ParseOutcome::Ok(db) => return Ok(Some(db)),
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

    /// Writes the list to `dir/courierimapuiddb` atomically.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn store(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(FILE_NAME), self.to_courier().as_bytes())
    }
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
        assert_eq!(db.to_courier(), text);
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
