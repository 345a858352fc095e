//! POP3 (RFC 1939) with CAPA and response codes (RFC 2449, RFC 3206),
//! STLS (RFC 2595), SASL PLAIN and LOGIN (RFC 5034) and UTF8 (RFC 6856).
//!
//! ```text
//!   greeting ─► AUTHORIZATION ──USER/PASS, AUTH──► TRANSACTION ──QUIT──► UPDATE
//!                    │  STLS, CAPA, UTF8            │ STAT LIST RETR TOP     │ DELE'd messages
//!                    └──QUIT──► (close)              │ DELE RSET UIDL NOOP    │ removed, then close
//!                                                    └── drop/timeout: nothing removed
//! ```
//! The maildrop is the user's INBOX, numbered once at login from the same
//! shared folder view IMAP sessions use, so IMAP and POP3 sessions of one
//! user agree. UIDLs and sizes come from Courier's `courierpop3dsizelist`
//! ([`tern_maildir::pop3list`]). As Courier's pop3d does, login moves new
//! mail to `cur/` and RETR marks a message seen.

mod session;

pub use session::serve_pop3;
