#![no_main]
//! Fuzz target: tern_message::fuzzing::summary_cache: `tern.cache` never
//! panics its reader, and what it reads is written back the same.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_message::fuzzing::summary_cache(data);
});
