#![no_main]
//! Fuzz target: a POP3 command line parses, and the phase rule answers, without a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let cmd = tern_pop3_proto::parse(data);
    let _ = tern_pop3_proto::allowed(&cmd, tern_pop3_proto::Phase::Authorization);
    let _ = tern_pop3_proto::allowed(&cmd, tern_pop3_proto::Phase::Transaction);
});
