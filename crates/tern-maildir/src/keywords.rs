//! Keywords as Courier-IMAP keeps them: `courierimapkeywords/:list`.
//!
//! The file lists every keyword name, one a line, then an empty line, then
//! one line per message that has keywords: `<base file name>:<n> <n> ...`,
//! where each `n` indexes the name list. The file is rewritten atomically.

use std::collections::{BTreeSet, HashMap};
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
}

impl KeywordDb {
    /// Parses the `:list` format.
    pub fn parse(text: &str) -> KeywordDb {
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            names.push(Arc::from(line));
        }
        let mut by_base = HashMap::new();
        for line in lines {
            let Some((base, idx)) = line.rsplit_once(':') else {
                continue;
            };
            let set: BTreeSet<Arc<str>> = idx
                .split_ascii_whitespace()
                .filter_map(|n| n.parse::<usize>().ok())
                .filter_map(|n| names.get(n).cloned())
                .collect();
            if !set.is_empty() {
                by_base.insert(Arc::from(base), set.into_iter().collect::<Vec<_>>().into());
            }
        }
        KeywordDb { by_base }
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
        let path = dir.join(DIR_NAME).join(LIST_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Self::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeywordDb::default()),
            Err(e) => Err(MaildirError::io("read", path, e)),
        }
    }

    /// Writes the keyword list of the folder at `dir` atomically.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let kdir = dir.join(DIR_NAME);
        if let Err(e) = std::fs::create_dir(&kdir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(MaildirError::io("mkdir", kdir, e));
            }
        }
        write_atomic(&kdir.join(LIST_NAME), self.serialise().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let text = "$Junk\nwork\n\na.M1.h:0 1\nb.M2.h:1\n";
        let db = KeywordDb::parse(text);
        assert_eq!(db.by_base["a.M1.h"].len(), 2);
        assert_eq!(&*db.by_base["b.M2.h"][0], "work");
        assert_eq!(db.serialise(), text);
    }
}
