#![no_main]
//! Fuzz target: the IMAP command engine (reader, literal policy, parse,
//! state check, `$`) over arbitrary bytes, fed whole and in pieces; see
//! tern_imap_proto::fuzzing::engine.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_imap_proto::fuzzing::engine(data));
