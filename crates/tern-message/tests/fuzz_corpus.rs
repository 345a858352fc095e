//! Replays the fuzz corpora (`fuzz/seeds/<target>/`), every message of
//! `shared/corpus/python-email`, and random inputs through the fuzz entry
//! points: none may panic. The targets themselves run with
//! `cargo +nightly fuzz run <target>` (docs/design.md).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_message::fuzzing;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().is_file())
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect()
}

#[test]
fn saved_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 4] = [
        ("structure", fuzzing::structure),
        ("search", fuzzing::search),
        ("address", fuzzing::address),
        ("summary_cache", fuzzing::summary_cache),
    ];
    let mut n = 0;
    for (name, run) in targets {
        let inputs = files(&root.join(name));
        assert!(!inputs.is_empty(), "no corpus for {name}");
        for data in inputs {
            run(&data);
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn shared_corpus_messages_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/python-email");
    let msgs = files(&dir);
    assert!(
        msgs.len() > 40,
        "shared corpus missing at {}",
        dir.display()
    );
    for m in msgs {
        fuzzing::structure(&m);
        fuzzing::search(&m);
        // Damaged copies: cut anywhere, and every line end doubled.
        fuzzing::structure(&m[..m.len() / 3]);
        let doubled: Vec<u8> = m
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\n', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        fuzzing::structure(&doubled);
    }
}

fn mime_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"Subject: =?utf-8?b?w6k=?= Re: [x]\r\n".to_vec()),
        Just(b"From: a@b (n), \"q\" <c@d>, g: e@f;\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_inputs_do_not_panic(data in mime_like()) {
        fuzzing::structure(&data);
        fuzzing::search(&data);
        fuzzing::address(&data);
        fuzzing::summary_cache(&data);
    }
}

/// A `tern.cache` of the summaries of the shared corpus's messages.
fn corpus_cache() -> Vec<u8> {
    use tern_message::summary::{encode_cache_entry, summarize, CACHE_MAGIC};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/python-email");
    let mut cache = CACHE_MAGIC.to_vec();
    for (i, m) in files(&dir).iter().take(12).enumerate() {
        let msg = tern_message::crlf::to_crlf(m);
        encode_cache_entry(
            &mut cache,
            &format!("17000000{i:02}.M1P1.host"),
            &summarize(&msg),
        );
    }
    cache
}

#[test]
fn damaged_caches_are_refused_never_misread() {
    // A real cache reads back whole; cut anywhere or with any byte changed,
    // it is refused or read as something that writes back the same, and
    // never panics.
    let cache = corpus_cache();
    let entries = tern_message::summary::decode_cache(&cache).unwrap();
    assert_eq!(entries.len(), 12);
    for cut in (0..cache.len()).step_by(7) {
        fuzzing::summary_cache(&cache[..cut]);
    }
    for at in (0..cache.len()).step_by(13) {
        let mut bad = cache.clone();
        bad[at] ^= 0xff;
        fuzzing::summary_cache(&bad);
    }
}
