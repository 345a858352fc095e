//! Maildir and Maildir++ storage, byte-compatible with Courier-IMAP.
//!
//! A user's Maildir root is INBOX; every other folder is a `.Name` or
//! `.Parent.Child` directory beside `cur/ new/ tmp/` with a `maildirfolder`
//! file in it. Message flags live in the `:2,` suffix of the file name, so mutt
//! and maildrop see the same flags. UIDs live in Courier's `courierimapuiddb`,
//! keywords in `courierimapkeywords/:list` and subscriptions in
//! `courierimapsubscribed`, so a site can switch between Courier-IMAP and tern
//! in either direction with no client re-downloading mail.
//!
//! Nothing here takes a lock that a delivering MTA would have to honour: the
//! only lock is a dot-lock that serialises UID assignment between processes
//! that keep `courierimapuiddb` (see [`lock`]). This crate is synchronous; the
//! server calls it from blocking threads.

pub mod acl;
mod changelog;
pub mod convert_utf8;
pub mod deliver;
pub mod dirs;
pub mod dovecot_keywords;
pub mod dovecot_uidlist;
pub mod flags;
pub mod folder;
pub mod fuzzing;
pub mod keywords;
pub mod lock;
pub mod maildir;
pub mod make;
pub mod mutf7;
pub mod name;
pub mod name_form;
pub mod owner;
pub mod pop3list;
pub mod quota;
pub mod subscriptions;
pub mod tmp;
pub mod uiddb;
pub mod uidl_format;
pub mod uidvalidity;
pub mod unique;
pub mod watch;

mod error;

pub use error::MaildirError;
pub use flags::{Flag, Flags};
pub use folder::{Folder, FolderView, MessageEntry};
pub use maildir::{FolderInfo, Maildir, NameConflict};
pub use name::FolderName;
