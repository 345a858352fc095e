//! Replays the fuzz corpora of this crate's network parsers
//! (`fuzz/seeds/haproxy`, `fuzz/seeds/control`, `fuzz/seeds/lmtp`) and of
//! the whole IMAP session (`fuzz/seeds/imap_session`), and random inputs
//! through the fuzz entry points: none may panic (the session's entry
//! point checks its own invariants and panics when one fails). The targets themselves run with
//! `cargo +nightly fuzz run <target>`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use tern_server::fuzzing;

type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 3] = [
    ("haproxy", fuzzing::haproxy),
    ("control", fuzzing::control),
    ("imap_session", fuzzing::imap_session),
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

fn network_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 143\r\n".to_vec()),
        Just(b"\r\n\r\n\0\r\nQUIT\n".to_vec()),
        Just(b"POOL ".to_vec()),
        Just(b"LIST".to_vec()),
        Just(b"KICK USER ".to_vec()),
        Just(b"KICK HOST ".to_vec()),
        Just(b"MOVE a b ".to_vec()),
        Just(b"\r\n.\r\n".to_vec()),
        Just(b"RCPT TO:<".to_vec()),
        Just(b"MAIL FROM:<a> SIZE=".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        Just(b" \t\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Client input of commands, arguments and literals mixed at random.
fn imap_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"a1 LOGIN fuzz pw\r\n".to_vec()),
        Just(b"a2 SELECT INBOX\r\n".to_vec()),
        Just(b"a3 FETCH 1:* (FLAGS BODY[] BODYSTRUCTURE ENVELOPE)\r\n".to_vec()),
        Just(b"a4 UID STORE 1:* +FLAGS (\\Seen kw)\r\n".to_vec()),
        Just(b"a5 SEARCH RETURN (SAVE) OR SEEN TEXT x\r\n".to_vec()),
        Just(b"a6 APPEND INBOX {5+}\r\nhello\r\n".to_vec()),
        Just(b"a7 IDLE\r\n".to_vec()),
        Just(b"DONE\r\n".to_vec()),
        Just(b"a8 COPY $ INBOX.Work\r\n".to_vec()),
        Just(b"a9 LIST \"\" *\r\n".to_vec()),
        Just(b"{3}\r\n".to_vec()),
        Just(b"{99999999+}\r\n".to_vec()),
        Just(b"(".to_vec()),
        Just(b" \"".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ];
    (any::<u8>(), prop::collection::vec(piece, 0..10)).prop_map(|(first, v)| {
        let mut data = vec![first];
        data.extend(v.concat());
        data
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn random_lines_do_not_panic(data in network_like()) {
        for (_, run) in &TARGETS[..2] {
            run(&data);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    #[test]
    fn random_sessions_keep_the_invariants(data in imap_like()) {
        fuzzing::imap_session(&data);
    }
}

#[test]
fn control_lines_read_as_their_commands() {
    use std::time::Duration;
    use tern_server::proxy::{ControlCommand, ControlLine};
    let l = ControlLine::parse("POOL MOVE alice b.example 12\n").unwrap();
    assert!(l.pooled);
    assert_eq!(
        l.command,
        ControlCommand::Move {
            user: "alice".into(),
            host: "b.example".into(),
            hold: Duration::from_secs(12)
        }
    );
    assert_eq!(l.command.to_line(), "MOVE alice b.example 12");
    assert_eq!(
        ControlLine::parse("KICK USER bob").unwrap().command,
        ControlCommand::KickUser("bob".into())
    );
    assert!(ControlLine::parse("MOVE a b soon")
        .unwrap_err()
        .contains("MOVE user host seconds"));
    let l = ControlLine::parse("POOL UNMOVE carol\n").unwrap();
    assert!(l.pooled);
    assert_eq!(l.command, ControlCommand::Unmove("carol".into()));
    assert_eq!(l.command.to_line(), "UNMOVE carol");
    assert!(ControlLine::parse("UNMOVE").is_err());
    assert!(ControlLine::parse("UNMOVE a b").is_err());
    assert!(ControlLine::parse("POOL POOL LIST").is_err());
    assert!(ControlLine::parse("").is_err());
}
