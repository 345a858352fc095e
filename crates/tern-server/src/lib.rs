//! The tern server: configuration, listeners, TLS, limits, and the IMAP
//! session driver that joins the protocol crate to storage and auth.
//!
//! Only this crate (and the binary) is async. Storage calls run on tokio's
//! blocking pool; protocol parsing and message formatting stay in their pure
//! crates.

pub mod config;
mod conn;
pub mod folders;
pub mod imap;
pub mod listener;
mod login;
pub mod policy;
pub mod pop3;
pub mod summaries;
pub mod tls;
pub mod trash;
pub mod users;

pub use config::Config;
