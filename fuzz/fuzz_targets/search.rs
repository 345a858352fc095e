#![no_main]
//! Fuzz target: tern_message::fuzzing::search must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_message::fuzzing::search(data);
});
