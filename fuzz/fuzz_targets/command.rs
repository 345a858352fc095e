#![no_main]
//! Fuzz target: tern_imap_proto::fuzzing::command: the command parser and tern's grammar additions never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_imap_proto::fuzzing::command(data);
});
