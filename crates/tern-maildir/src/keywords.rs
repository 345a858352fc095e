//! Keywords as Courier-IMAP keeps them: `courierimapkeywords/:list`.
//!
//! The file lists every keyword name, one a line, then an empty line, then
//! one line per message that has keywords: `<base file name>:<n> <n> ...`,
//! where each `n` indexes the name list. The file is rewritten atomically.
//!
//! Courier-IMAP also records a change to one message as an update file
//! `courierimapkeywords/<base file name>` (or `.<n>.<base file name>` for a
//! message it is appending) holding that message's keywords, one a line,
//! until it folds the updates into `:list`. Updates override `:list` (the
//! newest file wins); when tern rewrites `:list` it folds them in and removes
//! the update files it read, so that Courier does not apply them again over
//! a later change.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{MaildirError, Result};
use crate::unique::write_atomic;

/// Directory that holds the keyword list.
pub const DIR_NAME: &str = "courierimapkeywords";
/// The list file inside [`DIR_NAME`].
pub const LIST_NAME: &str = ":list";

/// The keywords of one message, sorted.
pub type KeywordSet = Arc<[Arc<str>]>;

/// Keywords of every message of a folder, by base file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordDb {
    /// Base file name to its keywords.
    pub by_base: HashMap<Arc<str>, KeywordSet>,
    /// Courier update files folded into `by_base`, removed by [`KeywordDb::store`].
    pub updates: Vec<String>,
}

/// Whether `name` can be an IMAP keyword: an atom (RFC 3501 §9,
/// `flag-keyword`) that is not a system flag.
pub(crate) fn is_keyword(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('\\')
        && name
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

impl KeywordDb {
    /// Parses the `:list` format.
    pub fn parse(text: &str) -> KeywordDb {
        // A name that is no IMAP atom (a control byte, a space, a
        // parenthesis...) keeps its place in the numbering but is never
        // shown: it would break the FLAGS responses it went into.
        let mut names: Vec<Option<Arc<str>>> = Vec::new();
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            names.push(is_keyword(line).then(|| Arc::from(line)));
        }
        let mut by_base = HashMap::default();
        for line in lines {
            let Some((base, idx)) = line.rsplit_once(':') else {
                continue;
            };
            let set: BTreeSet<Arc<str>> = idx
                .split_ascii_whitespace()
                .filter_map(|n| n.parse::<usize>().ok())
                .filter_map(|n| names.get(n).cloned().flatten())
                .collect();
            if !set.is_empty() {
                by_base.insert(Arc::from(base), set.into_iter().collect::<Vec<_>>().into());
            }
        }
        KeywordDb {
            by_base,
            updates: Vec::new(),
        }
    }

    /// Serialises to the `:list` format.
    pub fn serialise(&self) -> String {
        let names: BTreeSet<&Arc<str>> = self.by_base.values().flat_map(|s| s.iter()).collect();
        let index: HashMap<&str, usize> =
            names.iter().enumerate().map(|(i, n)| (&***n, i)).collect();
        let mut out = String::new();
        for n in &names {
            out.push_str(n);
            out.push('\n');
        }
        out.push('\n');
        let mut bases: Vec<&Arc<str>> = self.by_base.keys().collect();
        bases.sort_unstable();
        for b in bases {
            let set = &self.by_base[b];
            if set.is_empty() {
                continue;
            }
            out.push_str(b);
            out.push(':');
            let idx: Vec<String> = set
                .iter()
                .filter_map(|k| index.get(&**k))
                .map(|i| i.to_string())
                .collect();
            out.push_str(&idx.join(" "));
            out.push('\n');
        }
        out
    }

    /// Reads the keyword list of the folder at `dir` (empty when missing).
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn load(dir: &Path) -> Result<KeywordDb> {
        let kdir = dir.join(DIR_NAME);
        if is_link(&kdir) {
            tracing::warn!(dir = %kdir.display(), "ignoring a keyword directory that is a symbolic link");
            return Ok(KeywordDb::default());
        }
        let path = kdir.join(LIST_NAME);
        let mut db = match crate::unique::read_nofollow(&path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeywordDb::default(),
            Err(e) => return Err(MaildirError::io("read", path, e)),
        };
        let Ok(rd) = std::fs::read_dir(&kdir) else {
            return Ok(db);
        };
        // base -> (mtime, file name) of the newest update file
        let mut latest: HashMap<String, (std::time::SystemTime, String)> = HashMap::default();
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name == LIST_NAME {
                continue;
            }
            let base = match name.strip_prefix('.') {
                Some(rest) => match rest.split_once('.') {
                    Some((n, base)) if n.parse::<u64>().is_ok() => base.to_owned(),
                    _ => continue, // a temporary file of ours or Courier's
                },
                None => name.clone(),
            };
            let mtime = ent
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            db.updates.push(name.clone());
            if latest.get(&base).is_none_or(|(t, _)| mtime >= *t) {
                latest.insert(base, (mtime, name));
            }
        }
        for (base, (_, file)) in latest {
            let Ok(text) = crate::unique::read_nofollow(&kdir.join(&file)) else {
                continue;
            };
            let set: BTreeSet<Arc<str>> = String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Arc::from)
                .collect();
            if set.is_empty() {
                db.by_base.remove(base.as_str());
            } else {
                db.by_base.insert(
                    Arc::from(base.as_str()),
                    set.into_iter().collect::<Vec<_>>().into(),
                );
            }
        }
        Ok(db)
    }

    /// Writes the keyword list of the folder at `dir` atomically.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let kdir = dir.join(DIR_NAME);
        match std::fs::create_dir(&kdir) {
            Ok(()) => {
                crate::owner::inherit(&kdir).map_err(|e| MaildirError::io("chown", &kdir, e))?
            }
            // Planted as a link to another account's (one system account
            // may serve them all): its list must not be replaced.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_link(&kdir) => {
                return Err(MaildirError::NotAllowed(
                    "the keyword directory is a symbolic link",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(MaildirError::io("mkdir", kdir, e)),
        }
        write_atomic(&kdir.join(LIST_NAME), self.serialise().as_bytes())?;
        for u in &self.updates {
            let _ = std::fs::remove_file(kdir.join(u));
        }
        Ok(())
    }
}

/// Whether `path` is a symbolic link (checked before each use: the
/// directory is reached by path, see docs/design.md).
fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_directory_that_is_a_link_is_neither_read_nor_written() {
        let t = tempfile::tempdir().unwrap();
        let (mine, theirs) = (t.path().join("mine"), t.path().join("theirs"));
        std::fs::create_dir_all(theirs.join(DIR_NAME)).unwrap();
        std::fs::create_dir_all(&mine).unwrap();
        let list = theirs.join(DIR_NAME).join(LIST_NAME);
        std::fs::write(&list, "Secret\n\nb.M2.h:0\n").unwrap();
        std::os::unix::fs::symlink(theirs.join(DIR_NAME), mine.join(DIR_NAME)).unwrap();
        let db = KeywordDb::load(&mine).unwrap();
        assert!(db.by_base.is_empty());
        assert!(KeywordDb::default().store(&mine).is_err());
        assert_eq!(
            std::fs::read_to_string(&list).unwrap(),
            "Secret\n\nb.M2.h:0\n"
        );
    }

    #[test]
    fn roundtrip() {
        let text = "$Junk\nwork\n\na.M1.h:0 1\nb.M2.h:1\n";
        let db = KeywordDb::parse(text);
        assert_eq!(db.by_base["a.M1.h"].len(), 2);
        assert_eq!(&*db.by_base["b.M2.h"][0], "work");
        assert_eq!(db.serialise(), text);
    }

    #[test]
    fn symlinked_keyword_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join(DIR_NAME);
        std::fs::create_dir(&k).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").unwrap();
        std::os::unix::fs::symlink(&secret, k.join("a.M1.h")).unwrap();
        std::os::unix::fs::symlink(&secret, k.join(LIST_NAME)).unwrap();
        let db = KeywordDb::load(dir.path());
        let leaked = db
            .map(|d| {
                d.by_base
                    .values()
                    .flat_map(|s| s.iter())
                    .any(|kw| &**kw == "hunter2")
            })
            .unwrap_or(false);
        assert!(!leaked);
    }

    #[test]
    fn courier_update_files_override_and_are_folded() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join(DIR_NAME);
        std::fs::create_dir(&k).unwrap();
        std::fs::write(k.join(LIST_NAME), "old\n\na.M1.h:0\nb.M2.h:0\n").unwrap();
        std::fs::write(k.join(".5.a.M1.h"), "new\n").unwrap();
        std::fs::write(k.join(".3.b.M2.h"), "stale\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(k.join("b.M2.h"), "").unwrap();
        let db = KeywordDb::load(dir.path()).unwrap();
        assert_eq!(&*db.by_base["a.M1.h"][0], "new");
        assert!(!db.by_base.contains_key("b.M2.h"));
        db.store(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(&k)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let again = KeywordDb::load(dir.path()).unwrap();
        assert_eq!(again.by_base, db.by_base);
    }
}
