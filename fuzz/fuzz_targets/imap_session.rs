#![no_main]
//! Fuzz target: the whole IMAP session (framer, parser, state, handlers,
//! synchronisation) over an in-memory stream and a small Maildir; see
//! tern_server::fuzzing::imap_session for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_server::fuzzing::imap_session(data));
