//! Replays the fuzz corpora of the POP3 engine (`fuzz/seeds/pop3_engine`,
//! `fuzz/seeds/pop3_stuff`) and random inputs through the fuzz entry
//! points: no invariant may break. The targets themselves run with
//! `cargo +nightly fuzz run <target>`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_pop3_proto::fuzzing;

type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 2] = [
    ("pop3_engine", fuzzing::engine),
    ("pop3_stuff", fuzzing::stuff),
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

fn sessionish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"USER a\n".to_vec()),
        Just(b"PASS b\n".to_vec()),
        Just(b"STAT\n".to_vec()),
        Just(b"LIST\n".to_vec()),
        Just(b"UIDL 3\n".to_vec()),
        Just(b"DELE 2\n".to_vec()),
        Just(b"DELE 9\n".to_vec()),
        Just(b"RETR 2\n".to_vec()),
        Just(b"TOP 1 0\n".to_vec()),
        Just(b"RSET\n".to_vec()),
        Just(b".\r\n..\n\r".to_vec()),
        prop::collection::vec(any::<u8>(), 0..10),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn random_sessions_keep_the_invariants(data in sessionish()) {
        for (_, run) in TARGETS {
            run(&data);
        }
    }
}
