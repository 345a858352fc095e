#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

/// The shared driver of the engine's fuzz target (its moves between
/// states do not matter for the sessions below).
fn drive(pieces: &[&[u8]], phase: Phase, refuse_appends: bool) -> crate::fuzzing::EngineTrace {
    crate::fuzzing::drive_engine(pieces, phase, refuse_appends)
}

const SESSION: &[u8] = b"a1 NOOP\r\n\
    a2 APPEND INBOX (\\Seen) {11}\r\nSubject: x\n\r\n\
    a3 LOGIN {4+}\r\nuser {2}\r\npw\r\n\
    a4 SEARCH TEXT {3+}\r\nabc\r\n\
    a5 APPEND {5+}\r\nINBOX ~{4+}\r\na\0\r\n\r\n\
    a6 FETCH 1 (FLAGS\r\n\
    a7 BOGUS\r\n";

/// The engine fed a session split at every byte, and a byte at a time,
/// takes the same steps and writes the same answers as fed whole.
#[test]
fn every_split_gives_the_same_steps() {
    let whole = drive(&[SESSION], Phase::Authenticated, false);
    assert_eq!(
        whole.steps,
        [
            "run a1",
            "append-message Some(\"a2\") Inbox",
            "message Subject: x\n",
            "run a2",
            "answered unparsable=false",
            "answered unparsable=false",
            "append-message Some(\"a5\") Inbox",
            "message a\0\r\n",
            "run a5",
            "answered unparsable=true",
            "answered unparsable=true",
        ],
        "{whole:?}"
    );
    let text = String::from_utf8_lossy(&whole.out);
    assert!(
        text.contains("a3 BAD Command not allowed after login\r\n"),
        "{text}"
    );
    assert!(text.contains("a4 BAD No mailbox selected\r\n"), "{text}");
    assert!(
        text.contains("a6 BAD [CLIENTBUG] Error in IMAP command FETCH"),
        "{text}"
    );
    assert!(
        text.contains("a7 BAD [CLIENTBUG] Unknown command BOGUS\r\n"),
        "{text}"
    );
    // One `+` for a2's message and one for a3's `{2}`: LITERAL+ gets none.
    assert_eq!(text.matches("+ Ready").count(), 2, "{text}");
    for at in 0..=SESSION.len() {
        let (a, b) = SESSION.split_at(at);
        assert_eq!(
            drive(&[a, b], Phase::Authenticated, false),
            whole,
            "split at {at}"
        );
    }
    let bytes: Vec<&[u8]> = SESSION.chunks(1).collect();
    assert_eq!(drive(&bytes, Phase::Authenticated, false), whole);
}

/// Issue 10, defect 1: the bytes of a refused literal are never read as a
/// command, whatever they hold.
#[test]
fn a_refused_literal_is_never_read_as_commands() {
    let input: &[u8] = b"a1 APPEND {5+}\r\nINBOX {23+}\r\nx9 CREATE INBOX.pwned\r\n\r\na2 NOOP\r\n";
    let t = drive(&[input], Phase::Authenticated, true);
    assert_eq!(
        t.steps,
        ["append-message Some(\"a1\") Inbox", "run a2"],
        "{t:?}"
    );
    assert_eq!(String::from_utf8_lossy(&t.out), "a1 NO cannot\r\n");
    // A LITERAL+ literal too long for the command is read and dropped.
    let mut input = b"b1 SEARCH TEXT {70000+}\r\n".to_vec();
    // Its last bytes look like a command; so does the next literal's.
    input.extend(std::iter::repeat_n(b'x', 70_000 - 17));
    input.extend_from_slice(
        b"b2 CREATE pwned\r\n TEXT {24+}\r\nb3 CREATE pwned-agains\r\n\r\nb4 NOOP\r\n",
    );
    let t = drive(&[&input], Phase::Authenticated, false);
    assert_eq!(t.steps, ["dropped", "run b4"], "{t:?}");
    assert_eq!(
        String::from_utf8_lossy(&t.out),
        "b1 BAD [LIMIT] Command too long\r\n"
    );
    // A synchronising one is refused before the `+`.
    let t = drive(
        &[b"c1 SEARCH TEXT {70000}\r\nc2 NOOP\r\n"],
        Phase::Selected,
        false,
    );
    assert_eq!(t.steps, ["dropped", "run c2"], "{t:?}");
    assert!(!String::from_utf8_lossy(&t.out).contains('+'));
    // One past what may be skipped ends the connection.
    let t = drive(&[b"d1 SEARCH TEXT {100001+}\r\n"], Phase::Selected, false);
    assert_eq!(t.steps, ["dropped", "close"]);
    assert_eq!(
        String::from_utf8_lossy(&t.out),
        "d1 BAD [LIMIT] Command too long\r\n* BYE [LIMIT] Literal too large to skip, closing\r\n"
    );
}

/// Before a login no literal is a message: an APPEND there is held as any
/// command (within the cap) and refused for its state.
#[test]
fn before_login_nothing_is_streamed() {
    let t = drive(
        &[b"a1 APPEND INBOX {3}\r\nabc\r\na2 LOGIN u p\r\n"],
        Phase::NotAuthenticated,
        false,
    );
    assert_eq!(t.steps, ["answered unparsable=false", "run a2"], "{t:?}");
    assert!(String::from_utf8_lossy(&t.out).contains("a1 BAD Command not allowed before login"));
}

#[test]
fn each_state_allows_its_commands() {
    let body = |line: &[u8]| cmdparse::parse(line).unwrap().body;
    let cases: [(&[u8], [bool; 4]); 8] = [
        (b"a CAPABILITY\r\n", [true, true, true, true]),
        (b"a LOGIN u p\r\n", [true, false, false, false]),
        (b"a STARTTLS\r\n", [true, false, false, false]),
        (b"a SELECT INBOX\r\n", [false, true, true, false]),
        (b"a FETCH 1 FLAGS\r\n", [false, false, true, false]),
        (b"a SORT (DATE) UTF-8 ALL\r\n", [false, false, true, false]),
        (b"a CLOSE\r\n", [false, false, true, false]),
        (b"a GETQUOTAROOT INBOX\r\n", [false, true, true, false]),
    ];
    let phases = [
        Phase::NotAuthenticated,
        Phase::Authenticated,
        Phase::Selected,
        Phase::Logout,
    ];
    for (line, allowed) in cases {
        let b = body(line);
        for (phase, want) in phases.iter().zip(allowed) {
            // Logout allows only what any state allows.
            let want = want || (*phase == Phase::Logout && line == b"a CAPABILITY\r\n");
            assert_eq!(
                phase.allows(&b).is_ok(),
                want,
                "{} in {phase:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
    assert_eq!(
        Phase::Authenticated.allows(&body(b"a FETCH 1 FLAGS\r\n")),
        Err("No mailbox selected")
    );
}

struct Saved(Vec<u32>);

impl SavedResult for Saved {
    fn saved_uids(&self) -> Vec<u32> {
        self.0.clone()
    }
    fn seq_of(&self, uid: Uid) -> Option<Seq> {
        // The mailbox holds UIDs 10, 20, 30.
        [10, 20, 30]
            .iter()
            .position(|u| *u == uid.0)
            .and_then(Seq::from_index)
    }
}

/// Issue 10, defect 2: `$` is resolved on the typed command, only where
/// the grammar has a set; `CREATE $` creates a folder named `$`.
#[test]
fn the_saved_result_goes_where_the_grammar_has_a_set() {
    let run = |line: &[u8], saved: &Saved| {
        let mut out = Vec::new();
        match prepare(line, Phase::Selected, 100, Some(saved), &mut out) {
            Prepared::Run(r) => (Some(r), out),
            Prepared::Answered { .. } | Prepared::Acl { .. } => (None, out),
        }
    };
    let saved = Saved(vec![20, 30]);
    let (r, _) = run(b"a FETCH $ FLAGS\r\n", &saved);
    match r.unwrap().body {
        CommandBody::Fetch { sequence_set, .. } => {
            assert_eq!(format!("{sequence_set:?}").matches("Value(").count(), 2);
            let text = crate::seqset::to_sequence_set(&[2, 3]).unwrap();
            assert_eq!(sequence_set, text);
        }
        other => panic!("{other:?}"),
    }
    let (r, _) = run(b"a UID FETCH $ FLAGS\r\n", &saved);
    match r.unwrap().body {
        CommandBody::Fetch { sequence_set, .. } => {
            assert_eq!(
                sequence_set,
                crate::seqset::to_sequence_set(&[20, 30]).unwrap()
            )
        }
        other => panic!("{other:?}"),
    }
    let (r, _) = run(b"a CREATE $\r\n", &saved);
    match r.unwrap().body {
        CommandBody::Create { mailbox } => assert!(format!("{mailbox:?}").contains('$')),
        other => panic!("{other:?}"),
    }
    let (r, out) = run(b"a FETCH $ FLAGS\r\n", &Saved(Vec::new()));
    assert!(r.is_none());
    assert_eq!(out, b"a OK Nothing to do: the saved result is empty\r\n");
}

/// Issue 10, defect 3: an advertised command with bad arguments is told
/// so, not called unknown.
#[test]
fn bad_arguments_of_a_known_command_are_named() {
    for (line, want) in [
        (
            &b"a SORT (BOGUS) UTF-8 ALL\r\n"[..],
            "a BAD [CLIENTBUG] Error in IMAP command SORT: invalid arguments\r\n",
        ),
        (
            b"a GETQUOTAROOT\r\n",
            "a BAD [CLIENTBUG] Error in IMAP command GETQUOTAROOT: invalid arguments\r\n",
        ),
        (
            b"a XYZZY\r\n",
            "a BAD [CLIENTBUG] Unknown command XYZZY\r\n",
        ),
        (
            b"\r\n",
            "* BAD Error in IMAP command: missing or invalid tag\r\n",
        ),
        // Found by the imap_session fuzz target: the name ends at the line
        // end, so no line of a literal is echoed...
        (
            b"INBOX {23+}\r\nx9 CREATE INBOX.pwned\r\n\r\n",
            "INBOX BAD [CLIENTBUG] Unknown command ?23??\r\n",
        ),
        // ...and it is shown as letters, digits and -._ only: no 8-bit or
        // control bytes, and no `{3}` at the end a client would wait on.
        (
            b"a \x01\xc3\xa9\r\n",
            "a BAD [CLIENTBUG] Unknown command ??\r\n",
        ),
        (
            b"a1 CCAScloseXT{350T{3}\r\x1a\n",
            "a1 BAD [CLIENTBUG] Unknown command CCASCLOSEXT?350T?3?\r\n",
        ),
    ] {
        let mut out = Vec::new();
        let p = prepare(line, Phase::Selected, 100, None, &mut out);
        assert!(
            matches!(p, Prepared::Answered { unparsable: true }),
            "{p:?}"
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
    }
}

/// ACL commands (RFC 4314) run only after a login; malformed ones are
/// "invalid arguments", not unknown commands.
#[test]
fn acl_commands_are_parsed_beside_the_codec() {
    let mut out = Vec::new();
    match prepare(
        b"t1 MYRIGHTS INBOX\r\n",
        Phase::Selected,
        100,
        None,
        &mut out,
    ) {
        Prepared::Acl { tag, command } => {
            assert_eq!(tag, "t1");
            assert_eq!(command.name(), "MYRIGHTS");
        }
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    let p = prepare(
        b"t2 GETACL INBOX\r\n",
        Phase::NotAuthenticated,
        100,
        None,
        &mut out,
    );
    assert!(matches!(p, Prepared::Answered { unparsable: false }));
    assert_eq!(out, b"t2 BAD Command not allowed before login\r\n");
    let mut out = Vec::new();
    let p = prepare(
        b"t3 SETACL INBOX\r\n",
        Phase::Authenticated,
        100,
        None,
        &mut out,
    );
    assert!(matches!(p, Prepared::Answered { unparsable: true }));
    assert!(
        String::from_utf8_lossy(&out).contains("Error in IMAP command SETACL: invalid arguments")
    );
}
