#![no_main]
//! Fuzz target: tern_auth::fuzzing::passwd_file must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_auth::fuzzing::passwd_file(data);
});
