#![no_main]
//! Fuzz target: tern_maildir::fuzzing::maildirsize: maildirsize never panics.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::maildirsize(data);
});
