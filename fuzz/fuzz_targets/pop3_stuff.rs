#![no_main]
//! Fuzz target: the RETR/TOP dot-stuffer over a message in pieces; every
//! line ends in CRLF, none is a lone dot.

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_pop3_proto::fuzzing::stuff(data));
