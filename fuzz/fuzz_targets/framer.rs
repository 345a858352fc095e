#![no_main]
//! Fuzz target: tern_imap_proto::fuzzing::framer: the framer keeps its invariants and never panics.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_imap_proto::fuzzing::framer(data);
});
