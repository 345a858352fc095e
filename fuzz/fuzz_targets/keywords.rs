#![no_main]
//! Fuzz target: tern_maildir::fuzzing::keywords: courierimapkeywords/:list round-trips.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::keywords(data);
});
