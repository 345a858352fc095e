#![no_main]
//! Fuzz target: tern_maildir::fuzzing::pop3list: courierpop3dsizelist never panics.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::pop3list(data);
});
