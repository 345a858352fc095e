//! Replays the fuzz corpora of the Maildir files (`fuzz/seeds/<target>/`)
//! and random inputs through the fuzz entry points: none may panic. The
//! targets themselves run with `cargo +nightly fuzz run <target>`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_maildir::fuzzing;

type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 6] = [
    ("dovecot_uidlist_merge", fuzzing::dovecot_uidlist),
    ("uiddb", fuzzing::uiddb),
    ("keywords", fuzzing::keywords),
    ("pop3list", fuzzing::pop3list),
    ("maildirsize", fuzzing::maildirsize),
    ("file_name", fuzzing::file_name),
];

#[test]
fn saved_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (name, run) in TARGETS {
        let mut n = 0;
        for e in std::fs::read_dir(root.join(name)).unwrap().flatten() {
            run(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus for {name}");
    }
}

fn maildir_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"1 1700000000 42\n".to_vec()),
        Just(b"3 V1700000000 N5 G0123\n".to_vec()),
        Just(b"/2 7 1700000000\n".to_vec()),
        Just(b"1700000000.M1P2.host,S=10,W=12:2,FRS\n".to_vec()),
        Just(b"17 1700000000.M1P2.host\n".to_vec()),
        Just(b"$Junk\n\n".to_vec()),
        Just(b"1000000S,100C\n".to_vec()),
        Just(b"  -4096   -1\n".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn random_files_do_not_panic(data in maildir_like()) {
        for (_, run) in TARGETS {
            run(&data);
        }
    }
}
