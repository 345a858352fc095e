//! The POP3 protocol layer of tern, free of I/O (RFC 1939, RFC 2449 CAPA,
//! RFC 2595 STLS, RFC 5034 AUTH, RFC 6856 UTF8).
//!
//! A command line (its CRLF already taken off by the driver) is parsed once
//! into a [`Command`]; [`allowed`] says whether the session's [`Phase`]
//! takes it; in TRANSACTION, the [`Maildrop`] state machine answers it or
//! says which message to send, and [`stuff::Stuffer`] turns a message read
//! in pieces into its wire form. The server crate reads the socket, runs
//! the Maildir and authentication calls and writes the answers.
//!
//! ```text
//!   AUTHORIZATION ──USER+PASS / AUTH──▶ TRANSACTION ──QUIT──▶ UPDATE (deletions done)
//!        │                                   │
//!        └──QUIT──▶ closed                   └── connection lost: nothing deleted
//! ```

pub mod command;
pub mod fuzzing;
pub mod maildrop;
pub mod stuff;

pub use command::{allowed, parse, Allowed, Command, Phase};
pub use maildrop::{Action, Listed, Maildrop};
