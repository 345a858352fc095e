//! Replays the fuzz corpus `fuzz/seeds/pop3_command/` through the parser
//! and the phase rule (random lines run in the crate's proptest).

#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn saved_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/pop3_command");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let line = std::fs::read(e.path()).unwrap();
        let cmd = tern_pop3_proto::parse(&line);
        let _ = tern_pop3_proto::allowed(&cmd, tern_pop3_proto::Phase::Authorization);
        let _ = tern_pop3_proto::allowed(&cmd, tern_pop3_proto::Phase::Transaction);
        n += 1;
    }
    assert!(n > 0);
}
