//! The POP3 protocol layer of tern, free of I/O (RFC 1939, RFC 2449 CAPA,
//! RFC 2595 STLS, RFC 5034 AUTH, RFC 6856 UTF8).
//!
//! A command line (its CRLF already taken off by the driver) is parsed once
//! into a [`Command`]; [`allowed`] says whether the session's [`Phase`]
//! takes it. The server crate reads the socket, runs the maildrop and
//! authentication calls and writes the answers.
//!
//! ```text
//!   AUTHORIZATION ──USER+PASS / AUTH──▶ TRANSACTION ──QUIT──▶ UPDATE (deletions done)
//!        │                                   │
//!        └──QUIT──▶ closed                   └── connection lost: nothing deleted
//! ```

pub mod command;

pub use command::{allowed, parse, Allowed, Command, Phase};
