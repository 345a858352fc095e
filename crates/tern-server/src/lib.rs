//! The tern server: configuration, listeners, TLS, limits, and the IMAP
//! session driver that joins the protocol crate to storage and auth.
//!
//! Only this crate (and the binary) is async. Storage calls run on tokio's
//! blocking pool; protocol parsing and message formatting stay in their pure
//! crates.

pub mod config;
mod conn;
pub mod creds;
pub mod folders;
pub mod fuzzing;
pub mod haproxy;
pub mod imap;
pub mod listener;
pub mod lmtp;
pub mod login;
pub mod policy;
pub mod pop3;
pub mod proxy;
pub mod sasl;
pub mod storage_gate;
pub mod summaries;
pub mod tls;
pub mod trash;
pub mod users;

pub use config::Config;

/// What the unit tests of several modules set up the same way.
#[cfg(test)]
pub(crate) mod test_support {
    /// A Maildir in a temporary directory holding one message in `cur/`
    /// with this subject.
    pub fn maildir_with_one_message(subject: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        tern_maildir::maildir::make_maildir_dirs(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("cur/1700000000.M1P1.h:2,"),
            format!("Subject: {subject}\n\nx\n"),
        )
        .unwrap();
        dir
    }
}
