#![no_main]
//! Fuzz target: tern_maildir::fuzzing::dovecot_uidlist must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tern_maildir::fuzzing::dovecot_uidlist(data);
});
