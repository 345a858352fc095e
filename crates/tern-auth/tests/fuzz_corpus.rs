//! Replays the fuzz corpora of the account parsers (`fuzz/seeds/<target>/`)
//! and random inputs through the fuzz entry points: none may panic. The
//! targets themselves run with `cargo +nightly fuzz run <target>`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_auth::fuzzing;

type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 4] = [
    ("sasl", fuzzing::sasl),
    ("stored_password", fuzzing::stored_password),
    ("passwd_file", fuzzing::passwd_file),
    ("userdb", fuzzing::userdb),
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

fn account_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"n,,n=user,r=abc".to_vec()),
        Just(b"p=tls-exporter,a=x,n=u=2Cv,r=x".to_vec()),
        Just(b"\0c=biws,r=abcservernonce,p=AAAA".to_vec()),
        Just(b"{SCRAM-SHA-256}4096,c2FsdA==,".to_vec()),
        Just(b"alice:{PLAIN}x:1000:1000::/home/a::mail=/m/a\n".to_vec()),
        Just(b"#alice:y\n".to_vec()),
        Just(b"alice:".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"ann\tuid=5|home=/h|systempw={PLAIN}p\n".to_vec()),
        Just(b" tim b913a602c7eda7a495b4e6e7334d3890".to_vec()),
        Just(b"\0".to_vec()),
        Just(b":".to_vec()),
        Just(b"=".to_vec()),
        Just(b",".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn random_inputs_never_panic(data in account_like()) {
        for (_, run) in TARGETS {
            run(&data);
        }
    }
}
