#![no_main]
//! Fuzz target: tern_auth::fuzzing::stored_password must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_auth::fuzzing::stored_password(data);
});
