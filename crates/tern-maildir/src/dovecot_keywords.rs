//! Keywords as Dovecot keeps them on Maildir: letters in the file name.
//!
//! Dovecot gives each of a folder's first 26 keywords a letter, `a` for
//! index 0 to `z` for 25, written among the flags after `:2,`; the folder's
//! `dovecot-keywords` file names them, one `<index> <name>` a line
//! (lib-storage/index/maildir/maildir-keywords.c). A keyword beyond the 26th
//! lives only in Dovecot's index, which tern does not read.
//!
//! While a folder has `dovecot-keywords`, tern keeps both representations in
//! step: a keyword with a letter is set exactly when the file name has the
//! letter (so a change Dovecot made is seen as Dovecot made it), and every
//! change tern makes goes to the letters and to `courierimapkeywords`, so a
//! switch back to Dovecot or on to Courier loses nothing. A new keyword gets
//! the next free letter, the file rewritten first under Dovecot's own lock
//! (`dovecot-keywords.lock`), so no file name ever holds a letter the list
//! does not name.

use std::path::Path;
use std::sync::Arc;

use crate::error::{MaildirError, Result};
use crate::flags::Flags;
use crate::keywords::KeywordSet;
use crate::lock::DotLock;
use crate::unique::{read_head_nofollow, write_atomic};

/// The list of a folder's keyword letters.
pub const FILE_NAME: &str = "dovecot-keywords";
/// The dot-lock Dovecot takes to rewrite it.
pub const LOCK_NAME: &str = "dovecot-keywords.lock";
/// Letters `a` to `z`.
pub const MAX_KEYWORDS: usize = 26;
/// The file names 26 keywords: more than this is not read (a planted huge
/// file must not cost a session its size in memory).
const MAX_FILE_BYTES: u64 = 64 << 10;

/// A folder's `dovecot-keywords`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DovecotKeywords {
    names: [Option<Arc<str>>; MAX_KEYWORDS],
}

fn letter(index: usize) -> u8 {
    b'a' + u8::try_from(index).unwrap_or(0)
}

impl DovecotKeywords {
    /// Parses the file; lines that are not `<index> <name>` with an index
    /// below 26 are skipped, as Dovecot skips them.
    pub fn parse(text: &str) -> DovecotKeywords {
        let mut k = DovecotKeywords::default();
        for line in text.lines() {
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(i) = idx.parse::<usize>() else {
                continue;
            };
            if i >= MAX_KEYWORDS || name.is_empty() || !crate::keywords::is_keyword(name) {
                continue;
            }
            if k.index_of(name).is_none() {
                k.names[i] = Some(Arc::from(name));
            }
        }
        k
    }

    /// The folder's list, or `None` when it has none.
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn load(dir: &Path) -> Result<Option<DovecotKeywords>> {
        let path = dir.join(FILE_NAME);
        match read_head_nofollow(&path, MAX_FILE_BYTES) {
            Ok(b) => Ok(Some(Self::parse(&String::from_utf8_lossy(&b)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MaildirError::io("read", path, e)),
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                out.push_str(&format!("{i} {n}\n"));
            }
        }
        out
    }

    /// Dovecot compares keyword names without regard to ASCII case.
    fn index_of(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Whether a keyword has a letter.
    pub fn has_letter(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// A message's keywords: those of its letters, and those of
    /// `courier` (its `courierimapkeywords` set) that have no letter.
    pub fn merge(&self, courier: &KeywordSet, flags: &Flags) -> KeywordSet {
        let mut out: Vec<Arc<str>> = courier
            .iter()
            .filter(|k| !self.has_letter(k))
            .cloned()
            .collect();
        for l in flags.keyword_letters() {
            if let Some(Some(n)) = self.names.get(usize::from(l - b'a')) {
                if !out.iter().any(|k| k.eq_ignore_ascii_case(n)) {
                    out.push(n.clone());
                }
            }
        }
        if out.len() == courier.len() && out.iter().zip(courier.iter()).all(|(a, b)| a == b) {
            return courier.clone();
        }
        out.sort();
        Arc::from(out)
    }

    /// The letters for `keywords`, giving a letter to any that has none
    /// while one is free; true in the second place if the list grew.
    pub fn letters_for(&mut self, keywords: &KeywordSet) -> (Vec<u8>, bool) {
        let mut grew = false;
        let mut letters = Vec::new();
        for k in keywords.iter() {
            let i = match self.index_of(k) {
                Some(i) => Some(i),
                None => self.names.iter().position(Option::is_none).inspect(|&i| {
                    self.names[i] = Some(k.clone());
                    grew = true;
                }),
            };
            if let Some(i) = i {
                letters.push(letter(i));
            }
        }
        (letters, grew)
    }

    /// The letters of those of `keywords` that have one.
    pub fn letters_of(&self, keywords: &KeywordSet) -> Vec<u8> {
        keywords
            .iter()
            .filter_map(|k| self.index_of(k))
            .map(letter)
            .collect()
    }

    /// Rewrites the folder's list under Dovecot's lock.
    ///
    /// # Errors
    /// I/O errors, or a lock that could not be had.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let _lock = DotLock::acquire_dovecot(&dir.join(LOCK_NAME))?;
        write_atomic(&dir.join(FILE_NAME), self.render().as_bytes())
    }

    /// The list as it is on disk now with the letters `keywords` need
    /// added, written back under Dovecot's lock if it grew (no lock is
    /// taken when no keyword is asked for). `None` when the folder has no
    /// list.
    ///
    /// # Errors
    /// I/O errors, or a lock that could not be had.
    pub fn update(dir: &Path, keywords: &[&KeywordSet]) -> Result<Option<DovecotKeywords>> {
        if !dir.join(FILE_NAME).exists() {
            return Ok(None);
        }
        if keywords.iter().all(|k| k.is_empty()) {
            return Self::load(dir);
        }
        let _lock = DotLock::acquire_dovecot(&dir.join(LOCK_NAME))?;
        let Some(mut list) = Self::load(dir)? else {
            return Ok(None);
        };
        let mut grew = false;
        for k in keywords {
            grew |= list.letters_for(k).1;
        }
        if grew {
            write_atomic(&dir.join(FILE_NAME), list.render().as_bytes())?;
        }
        Ok(Some(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> KeywordSet {
        names
            .iter()
            .map(|n| Arc::from(*n))
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn letters_name_keywords() {
        let k =
            DovecotKeywords::parse("0 $Label1\n1 $Junk\n3 project-x\n30 toomuch\nbad line\n2 \n");
        let f = Flags::from_info("Sab");
        assert_eq!(&*k.merge(&set(&[]), &f), &*set(&["$Junk", "$Label1"]));
        // A keyword with a letter follows the letter, whatever the Courier
        // list says; one without follows the list.
        let f = Flags::from_info("Sd");
        assert_eq!(
            &*k.merge(&set(&["$Junk", "other"]), &f),
            &*set(&["other", "project-x"])
        );
        assert_eq!(k.render(), "0 $Label1\n1 $Junk\n3 project-x\n");
    }

    #[test]
    fn new_keywords_take_free_letters_until_there_are_none() {
        let mut k = DovecotKeywords::parse("0 $Label1\n2 NonJunk\n");
        let (l, grew) = k.letters_for(&set(&["$label1", "NonJunk", "fresh"]));
        assert_eq!(l, b"acb");
        assert!(grew);
        assert_eq!(k.render(), "0 $Label1\n1 fresh\n2 NonJunk\n");
        for i in 0..30 {
            k.letters_for(&set(&[&format!("k{i}")]));
        }
        let (l, grew) = k.letters_for(&set(&["one-too-many"]));
        assert!(l.is_empty() && !grew);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_to_at_most_26_valid_keywords(b in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let k = DovecotKeywords::parse(&String::from_utf8_lossy(&b));
            let again = DovecotKeywords::parse(&k.render());
            proptest::prop_assert_eq!(&again, &k);
            proptest::prop_assert!(k.render().lines().count() <= MAX_KEYWORDS);
        }
    }

    #[test]
    fn a_huge_file_is_read_no_further_than_its_head() {
        let t = tempfile::tempdir().unwrap();
        let mut text = "0 $Junk\n".to_owned();
        text.push_str(&"x".repeat(10 << 20));
        std::fs::write(t.path().join(FILE_NAME), text).unwrap();
        let k = DovecotKeywords::load(t.path()).unwrap().unwrap();
        assert!(k.has_letter("$Junk"));
    }

    #[test]
    fn update_writes_only_a_list_that_exists_and_grew() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            DovecotKeywords::update(t.path(), &[&set(&["a"])]).unwrap(),
            None
        );
        assert!(!t.path().join(FILE_NAME).exists());
        std::fs::write(t.path().join(FILE_NAME), "0 $Junk\n").unwrap();
        let l = DovecotKeywords::update(t.path(), &[&set(&["$Junk", "x"])])
            .unwrap()
            .unwrap();
        assert!(l.has_letter("x"));
        assert_eq!(
            std::fs::read_to_string(t.path().join(FILE_NAME)).unwrap(),
            "0 $Junk\n1 x\n"
        );
        assert!(!t.path().join(LOCK_NAME).exists(), "lock released");
    }
}
