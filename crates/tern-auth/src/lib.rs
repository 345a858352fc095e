//! Authentication for tern: the account backends (a Dovecot-format
//! passwd-file, SQL databases), tried in order ([`directory`]), password
//! schemes, and the SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM).
//!
//! Password verification is CPU-heavy by design (Argon2, yescrypt); the
//! server runs it on a blocking thread, never on the async runtime.

mod cache;
pub mod checkpassword;
pub mod directory;
pub mod fuzzing;
pub mod jwt;
pub mod ldap;
pub mod oauth;
pub mod pam;
pub mod passwd_file;
pub mod sasl;
pub mod scheme;
pub mod scram;
pub mod secret;
pub mod sql;
pub mod system;
pub mod userdb;

pub use directory::{Backend, Directory};
pub use passwd_file::{EntryAuth, PasswdFile, UserEntry};
pub use secret::Secret;

/// What went wrong reading the user database or a password hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The passwd-file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of the passwd-file is malformed.
    #[error("{path}:{line}: {problem}")]
    BadLine {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A backend could not answer (a database down or too slow): the
    /// login is a temporary failure, never a wrong password.
    #[error("account backend unavailable: {0}")]
    Unavailable(String),
    /// The stored password uses a scheme tern does not know.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// Hashing a new password failed.
    #[error("hashing failed: {0}")]
    Hash(String),
}
