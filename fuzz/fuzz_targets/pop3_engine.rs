#![no_main]
//! Fuzz target: whole POP3 sessions through the parser, the phase rule and
//! the TRANSACTION engine over an in-memory maildrop; invariants checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_pop3_proto::fuzzing::engine(data));
