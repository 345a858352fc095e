//! Replays the fuzz corpora (`fuzz/seeds/framer`, `fuzz/seeds/command`,
//! `fuzz/seeds/engine`) and
//! random inputs through the fuzz entry points: none may panic. The targets
//! themselves run with `cargo +nightly fuzz run <target>` (docs/design.md).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_imap_proto::fuzzing;

#[test]
fn saved_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 3] = [
        ("framer", fuzzing::framer),
        ("command", fuzzing::command),
        ("engine", fuzzing::engine),
    ];
    for (name, run) in targets {
        let dir = root.join(name);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            run(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus for {name}");
    }
}

fn imap_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"a1 APPEND INBOX {5+}\r\n".to_vec()),
        Just(b"a2 LOGIN {3}\r\n".to_vec()),
        Just(b" ~{4}\r\n".to_vec()),
        Just(b"x9 CREATE pwned\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"{99999999999999999999999+}\r\n".to_vec()),
        Just(vec![b'x'; 90]),
        Just(b"a3 SELECT INBOX\r\n".to_vec()),
        Just(b"a4 FETCH $ (FLAGS)\r\n".to_vec()),
        Just(b"a5 SEARCH RETURN (SAVE) $ TEXT {3+}\r\nabc\r\n".to_vec()),
        Just(b"a6 CLOSE\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    (any::<[u8; 2]>(), prop::collection::vec(piece, 0..30))
        .prop_map(|(h, v)| [h.to_vec(), v.concat()].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn random_inputs_keep_the_invariants(data in imap_like()) {
        fuzzing::framer(&data);
        fuzzing::command(&data[2..]);
        fuzzing::engine(&data[1..]);
    }
}
