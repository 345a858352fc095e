#![no_main]
//! Fuzz target: the PROXY protocol header parsers must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_server::fuzzing::haproxy(data));
