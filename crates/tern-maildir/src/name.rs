//! Folder names below INBOX and the Maildir++ directories that hold them.
//!
//! Maildir++ keeps `INBOX.Work.2024` as the directory `.Work.2024` in the
//! Maildir root: one level of directories, the hierarchy spelled with dots.
//! A [`FolderName`] is the Unicode name; how a directory spells it (UTF-8 or
//! modified UTF-7) is [`crate::name_form`]'s business. Validation here is
//! what keeps a name from escaping the user's Maildir: no `/`, no empty
//! component (so no `..`), no control bytes.

use crate::error::{MaildirError, Result};

/// The hierarchy separator of Maildir++.
pub const SEPARATOR: char = '.';

/// A validated folder name below INBOX, such as `Work.2024` (without the
/// `INBOX.` prefix). Invariant: non-empty components, no `/`, no control
/// characters, never INBOX itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderName(String);

impl FolderName {
    /// Validates a name (components separated by `.`).
    ///
    /// # Errors
    /// [`MaildirError::InvalidName`] when the name could escape the Maildir
    /// or is not a name Maildir++ can hold.
    pub fn new(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(MaildirError::InvalidName("empty name"));
        }
        if name.len() > 512 {
            return Err(MaildirError::InvalidName("name is too long"));
        }
        if name.contains('/') {
            return Err(MaildirError::InvalidName(
                "'/' is not allowed in a folder name",
            ));
        }
        if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(MaildirError::InvalidName(
                "control characters are not allowed",
            ));
        }
        if name.split(SEPARATOR).any(str::is_empty) {
            return Err(MaildirError::InvalidName("empty hierarchy level"));
        }
        Ok(FolderName(name.to_owned()))
    }

    /// The Unicode name below the personal namespace.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether its messages count toward the Maildir++ quota: all but
    /// Trash's, as Courier's `deliverquota` counts.
    pub fn counts_toward_quota(&self) -> bool {
        crate::quota::counts_folder(&format!(".{}", self.0))
    }

    /// Whether a directory name found in the Maildir root is a folder's
    /// (in either spelling).
    pub fn is_folder_dir(dir: &str) -> bool {
        match dir.strip_prefix('.') {
            Some(rest) if !rest.is_empty() && !rest.starts_with('.') => {
                FolderName::new(rest).is_ok()
            }
            _ => false,
        }
    }

    /// The parent folder name, if this is a child.
    pub fn parent(&self) -> Option<FolderName> {
        self.0
            .rfind(SEPARATOR)
            .map(|i| FolderName(self.0[..i].to_owned()))
    }

    /// True if `self` is a strict descendant of `ancestor`.
    pub fn is_below(&self, ancestor: &FolderName) -> bool {
        self.0.len() > ancestor.0.len()
            && self.0.starts_with(&ancestor.0)
            && self.0.as_bytes()[ancestor.0.len()] == SEPARATOR as u8
    }

    /// Replaces the prefix `from` of this name by `to` (for RENAME of a parent).
    pub fn rebase(&self, from: &FolderName, to: &FolderName) -> FolderName {
        FolderName(format!("{}{}", to.0, &self.0[from.0.len()..]))
    }
}

impl std::fmt::Display for FolderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes() {
        for bad in ["", "a/b", "..", "a..b", ".a", "a.", "/etc", "a\nb"] {
            assert!(FolderName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FolderName::is_folder_dir(".Work.2024"));
        assert!(!FolderName::is_folder_dir("..Work"));
    }

    #[test]
    fn hierarchy() {
        let a = FolderName::new("A").unwrap();
        let ab = FolderName::new("A.B").unwrap();
        let abc = FolderName::new("AB").unwrap();
        assert!(ab.is_below(&a));
        assert!(!abc.is_below(&a));
        assert_eq!(ab.parent(), Some(a.clone()));
        assert_eq!(
            ab.rebase(&a, &FolderName::new("X.Y").unwrap()).as_str(),
            "X.Y.B"
        );
        assert!(FolderName::is_folder_dir(".A.B"));
        assert!(!FolderName::is_folder_dir("cur"));
        assert!(!ab.is_below(&ab));
    }
}
