#![no_main]
//! Fuzz target: tern_maildir::fuzzing::uiddb: courierimapuiddb and dovecot-uidlist parse and round-trip.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::uiddb(data);
});
