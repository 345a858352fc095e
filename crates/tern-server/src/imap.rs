//! The IMAP session driver.
//!
//! ```text
//!            greeting
//!   ┌──────────────────┐  LOGIN/AUTHENTICATE  ┌──────────────┐ SELECT/EXAMINE ┌──────────┐
//!   │ NotAuthenticated │ ───────────────────► │ Authenticated│ ─────────────► │ Selected │
//!   └──────────────────┘                      └──────────────┘ ◄───────────── └──────────┘
//!            │                 LOGOUT, timeout, I/O error        CLOSE/UNSELECT      │
//!            └───────────────────────────► Logout ◄──────────────────────────────────┘
//! ```
//! The driver reads lines and literals ([`tern_imap_proto::framing`]), has
//! imap-codec parse each command, runs it, and writes the responses it built.
//! Handlers never write to the socket themselves; they append to the
//! session's output buffer, which the driver flushes (also part-way through
//! a long FETCH, so memory stays bounded). Each command's handler is a
//! file of its own in `cmd/`; the session's states, framing, parse and
//! dispatch are in `session`.

mod acl;
mod append;
mod auth;
mod cmd;
mod fetch;
mod mailboxes;
pub mod namespace;
mod prelogin;
mod quota;
mod search;
mod selected;
mod session;
mod sort;
mod store;
mod sync;

pub(crate) use fetch::wire_form;
pub use session::{serve_connection, AsyncStream, Services, SessionStart};
