//! The error type of the Maildir crate.

use std::path::PathBuf;

/// What went wrong in a Maildir operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaildirError {
    /// A file system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The folder does not exist.
    #[error("no such folder")]
    NoSuchFolder,
    /// The folder exists already.
    #[error("folder exists already")]
    FolderExists,
    /// The folder name is not valid (empty component, `/`, leading dot...).
    #[error("invalid folder name: {0}")]
    InvalidName(&'static str),
    /// The operation is not allowed on this folder (e.g. deleting INBOX).
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The dot-lock could not be taken within the wait limit.
    #[error("lock {0} is held by another process")]
    LockTimeout(PathBuf),
    /// A message file disappeared (expunged by another session or program).
    #[error("message was expunged")]
    MessageGone,
    /// Adding the message(s) would exceed the Maildir++ quota.
    #[error("quota exceeded")]
    OverQuota,
    /// The Maildir root is a symbolic link and the configuration does not
    /// allow that (`mail.linked_maildir`).
    #[error("the Maildir {0} is a symbolic link (set mail.linked_maildir = true to serve it)")]
    LinkedRoot(PathBuf),
    /// The mailbox would hold more keywords than allowed.
    #[error("more than {0} keywords in one mailbox")]
    TooManyKeywords(usize),
}

impl MaildirError {
    /// Whether the filesystem had no room (ENOSPC, or the user's EDQUOT).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, MaildirError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }

    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MaildirError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, MaildirError>;
