#![no_main]
//! Fuzz target: tern_maildir::fuzzing::file_name: message file names and flag letters round-trip.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::file_name(data);
});
