#![no_main]
//! Fuzz target: LMTP command lines and the DATA reader (unstuffing, CRLF
//! to LF, the end line) read whole and in pieces alike.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_server::fuzzing::lmtp(data));
