#![no_main]
//! Fuzz target: tern_auth::fuzzing::sasl must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_auth::fuzzing::sasl(data);
});
