//! End-to-end tests: the real `tern` binary on ephemeral ports, spoken to
//! over TCP and TLS. One module per area.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

mod accounts;
mod acl;
mod compat;
mod concurrency;
mod connections;
mod courier_import;
mod delivery;
mod differential;
mod durability;
mod framing;
mod lmtp;
mod mailboxes;
mod messages;
mod migration;
mod multihost;
mod ownership;
mod pop3;
mod proxy;
mod sasl;
mod session;
mod traces;
