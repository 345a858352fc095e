#![no_main]
//! Fuzz target: a proxy control line parses, runs and is sent on without a
//! panic, and what is sent reads back as the same command.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_server::fuzzing::control(data));
