//! The framer fed whole streams and the same streams split at every byte.

use super::*;
use proptest::prelude::*;

const LIMITS: FramerLimits = FramerLimits {
    max_line: 64,
    max_command: 200,
    max_discard: 1000,
};

/// What a driver saw, in owned form, so that runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Command(Vec<u8>),
    /// A streamed literal, its bytes joined.
    Streamed(Vec<u8>),
    Plus,
    Refused,
    TooLong(TooLong, Option<String>),
    Fatal,
}

/// How the test driver treats literals.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// Inline when it fits, else refuse.
    Inline,
    /// Stream every literal whose prefix is an APPEND up to its message.
    StreamAppend,
    /// Refuse every literal.
    Refuse,
}

fn is_append_message(prefix: &[u8]) -> bool {
    let mut probe = prefix.to_vec();
    probe.extend_from_slice(b"{0}\r\n\r\n");
    matches!(
        crate::command::parse(&probe).map(|c| c.body),
        Ok(imap_codec::imap_types::command::CommandBody::Append { .. })
    )
}

fn run(chunks: &[&[u8]], policy: Policy) -> Vec<Seen> {
    let mut f = Framer::new(LIMITS);
    let mut seen = Vec::new();
    let mut streaming: Option<(u64, Vec<u8>)> = None;
    let mut chunks = chunks.iter();
    loop {
        match f.next_event() {
            Event::NeedInput => match chunks.next() {
                Some(c) => f.feed(c),
                None => return seen,
            },
            Event::Literal { info, prefix } => {
                let stream = matches!(policy, Policy::StreamAppend) && is_append_message(prefix);
                if matches!(policy, Policy::Refuse) {
                    f.refuse();
                    seen.push(Seen::Refused);
                } else if stream {
                    if f.stream() == Continuation::Send {
                        seen.push(Seen::Plus);
                    }
                    if info.len == 0 {
                        seen.push(Seen::Streamed(Vec::new()));
                    } else {
                        streaming = Some((info.len, Vec::new()));
                    }
                } else {
                    match f.inline() {
                        Ok(Continuation::Send) => seen.push(Seen::Plus),
                        Ok(Continuation::None) => {}
                        Err(_) => seen.push(Seen::Refused),
                    }
                }
            }
            Event::Chunk(b) => {
                let Some((left, buf)) = streaming.as_mut() else {
                    panic!("chunk outside a streamed literal");
                };
                buf.extend_from_slice(b);
                *left -= b.len() as u64;
                if *left == 0 {
                    let (_, buf) = streaming.take().unwrap();
                    seen.push(Seen::Streamed(buf));
                }
            }
            Event::Command(c) => seen.push(Seen::Command(c)),
            Event::TooLong { what, tag } => seen.push(Seen::TooLong(what, tag)),
            Event::Fatal => {
                seen.push(Seen::Fatal);
                return seen;
            }
        }
    }
}

/// The stream fed whole, then split in two at every byte, then one byte at
/// a time: every way gives the same events.
fn same_at_every_split(input: &[u8], policy: Policy) -> Vec<Seen> {
    let whole = run(&[input], policy);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(run(&[a, b], policy), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes, policy), whole, "byte by byte");
    whole
}

fn cmd(s: &[u8]) -> Seen {
    Seen::Command(s.to_vec())
}

#[test]
fn plain_commands_and_bare_lf() {
    let seen = same_at_every_split(b"a1 NOOP\r\na2 CAPABILITY\na3 LOGOUT\r\n", Policy::Inline);
    assert_eq!(
        seen,
        vec![
            cmd(b"a1 NOOP\r\n"),
            cmd(b"a2 CAPABILITY\r\n"),
            cmd(b"a3 LOGOUT\r\n")
        ]
    );
}

#[test]
fn inline_literals_sync_and_nonsync() {
    let seen = same_at_every_split(
        b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\na2 NOOP\r\n",
        Policy::Inline,
    );
    assert_eq!(
        seen,
        vec![
            Seen::Plus,
            cmd(b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"),
            cmd(b"a2 NOOP\r\n")
        ]
    );
}

#[test]
fn literal_bytes_that_look_like_commands_stay_literal() {
    // The literal holds a line that is a valid command; it must never come
    // out as a command, whatever is done with the literal.
    let input = b"a1 LOGIN x {24+}\r\nx9 CREATE INBOX.pwned\r\n\r\na2 NOOP\r\n";
    for policy in [Policy::Inline, Policy::Refuse] {
        let seen = same_at_every_split(input, policy);
        assert!(
            !seen
                .iter()
                .any(|s| matches!(s, Seen::Command(c) if c.starts_with(b"x9"))),
            "{policy:?}: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&cmd(b"a2 NOOP\r\n")));
    }
}

#[test]
fn append_with_mailbox_literal_streams_only_the_message() {
    // The measured defect: the first literal is the mailbox name, not the
    // message; the second one is the message and holds a command line.
    let input = b"a1 APPEND {5+}\r\nINBOX {23+}\r\nx9 CREATE INBOX.pwned\r\n\r\nx2 NOOP\r\n";
    let seen = same_at_every_split(input, Policy::StreamAppend);
    assert_eq!(
        seen,
        vec![
            Seen::Streamed(b"x9 CREATE INBOX.pwned\r\n".to_vec()),
            cmd(b"a1 APPEND {5+}\r\nINBOX {0}\r\n\r\n"),
            cmd(b"x2 NOOP\r\n"),
        ]
    );
}

#[test]
fn refused_nonsync_literal_drops_the_rest_of_its_command() {
    // After the refused literal the command goes on with another LITERAL+
    // literal whose bytes are a command: dropped too.
    let input = b"a1 SEARCH TEXT {30+}\r\n012345678901234567890123456789 TEXT {24+}\r\nx9 CREATE INBOX.pwned\r\n\r\na2 NOOP\r\n";
    let seen = same_at_every_split(input, Policy::Refuse);
    assert_eq!(seen, vec![Seen::Refused, cmd(b"a2 NOOP\r\n")]);
}

#[test]
fn refused_sync_literal_is_never_read() {
    // The client waits for `+`, gets the tagged answer instead, and sends
    // its next command.
    let seen = same_at_every_split(b"a1 LOGIN {5}\r\na2 NOOP\r\n", Policy::Refuse);
    assert_eq!(seen, vec![Seen::Refused, cmd(b"a2 NOOP\r\n")]);
}

#[test]
fn literal_too_large_for_the_command_is_refused() {
    let input = b"a1 SEARCH TEXT {300+}\r\n".to_vec();
    let mut input = input;
    input.extend(std::iter::repeat_n(b'x', 300));
    input.extend_from_slice(b"\r\na2 NOOP\r\n");
    let seen = same_at_every_split(&input, Policy::Inline);
    assert_eq!(seen, vec![Seen::Refused, cmd(b"a2 NOOP\r\n")]);
}

#[test]
fn refused_literal_beyond_the_discard_cap_is_fatal() {
    let seen = same_at_every_split(b"a1 SEARCH TEXT {5000+}\r\nxxxx", Policy::Refuse);
    assert_eq!(seen, vec![Seen::Refused, Seen::Fatal]);
    // A number that does not fit in 64 bits is a literal too.
    let seen = run(
        &[b"a1 X {99999999999999999999999+}\r\nx9 CREATE y\r\n"],
        Policy::Inline,
    );
    assert_eq!(seen, vec![Seen::Refused, Seen::Fatal]);
}

#[test]
fn overlong_line_is_dropped_with_its_literal() {
    let mut input = b"a1 SEARCH TEXT ".to_vec();
    input.extend(std::iter::repeat_n(b'y', 100));
    input.extend_from_slice(b" {22+}\r\nx9 CREATE INBOX.pwned\r\na2 NOOP\r\n");
    let seen = same_at_every_split(&input, Policy::Inline);
    assert_eq!(
        seen,
        vec![
            Seen::TooLong(TooLong::Line, Some("a1".into())),
            cmd(b"a2 NOOP\r\n")
        ]
    );
    // A synchronising literal at the end of an overlong line is never sent.
    let mut input = b"a1 LOGIN ".to_vec();
    input.extend(std::iter::repeat_n(b'y', 100));
    input.extend_from_slice(b" {5}\r\na2 NOOP\r\n");
    let seen = same_at_every_split(&input, Policy::Inline);
    assert_eq!(
        seen,
        vec![
            Seen::TooLong(TooLong::Line, Some("a1".into())),
            cmd(b"a2 NOOP\r\n")
        ]
    );
}

#[test]
fn overlong_command_after_literals_is_dropped() {
    // Each line fits; together with their literals they do not.
    let mut input = Vec::new();
    input.extend_from_slice(b"a1 X {50}\r\n");
    input.extend(std::iter::repeat_n(b'a', 50));
    input.extend_from_slice(b" {50}\r\n");
    input.extend(std::iter::repeat_n(b'b', 50));
    input.extend_from_slice(b" {50}\r\n");
    input.extend(std::iter::repeat_n(b'c', 50));
    input.extend_from_slice(b" 0123456789012345678901234567890123456789\r\na2 NOOP\r\n");
    let seen = same_at_every_split(&input, Policy::Inline);
    assert_eq!(
        seen,
        vec![
            Seen::Plus,
            Seen::Plus,
            Seen::Plus,
            Seen::TooLong(TooLong::Command, Some("a1".into())),
            cmd(b"a2 NOOP\r\n")
        ]
    );
}

#[test]
fn raw_lines_for_sasl_and_idle() {
    let mut f = Framer::new(LIMITS);
    assert_eq!(f.next_line(), Ok(None));
    f.feed(b"dGVzdA==\nDO");
    assert_eq!(f.next_line(), Ok(Some(b"dGVzdA==\r\n".to_vec())));
    assert_eq!(f.next_line(), Ok(None));
    f.feed(b"NE\r\n");
    assert_eq!(f.next_line(), Ok(Some(b"DONE\r\n".to_vec())));
    f.feed(&[b'z'; 100]);
    assert_eq!(f.next_line(), Ok(None));
    f.feed(b"zz {5+}\r\na1 NOOP\r\n");
    assert_eq!(f.next_line(), Err(TooLong::Line));
    assert_eq!(f.next_event(), Event::Command(b"a1 NOOP\r\n".to_vec()));
}

#[test]
fn discard_buffered_forgets_pipelined_bytes() {
    let mut f = Framer::new(LIMITS);
    f.feed(b"a1 STARTTLS\r\na2 LOGIN x y\r\n");
    assert_eq!(f.next_event(), Event::Command(b"a1 STARTTLS\r\n".to_vec()));
    f.discard_buffered();
    assert!(!f.has_buffered());
    assert_eq!(f.next_event(), Event::NeedInput);
}

#[test]
fn announcements_parsed() {
    let (i, n) = literal_at_end(b"a {12}\r\n").unwrap();
    assert_eq!(
        (i.len, i.sync, i.binary, n),
        (12, LiteralSync::Sync, false, 6)
    );
    let (i, n) = literal_at_end(b"a ~{7+}\n").unwrap();
    assert_eq!(
        (i.len, i.sync, i.binary, n),
        (7, LiteralSync::NonSync, true, 6)
    );
    assert!(literal_at_end(b"a {}\r\n").is_none());
    assert!(literal_at_end(b"a {1a}\r\n").is_none());
    assert!(literal_at_end(b"a 12}\r\n").is_none());
}

proptest! {
    /// Any bytes, split anywhere, frame the same way under every policy,
    /// and nothing held grows past the limits.
    #[test]
    fn any_split_frames_alike(
        input in proptest::collection::vec(
            prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b'{'), Just(b'}'), Just(b'+'),
                Just(b'~'), Just(b' '), Just(b'1'), Just(b'0'), Just(b'a'),
                any::<u8>(),
            ],
            0..400,
        ),
        cuts in proptest::collection::vec(0usize..400, 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        cuts.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&input[at..c]);
            at = c;
        }
        chunks.push(&input[at..]);
        for policy in [Policy::Inline, Policy::Refuse] {
            let whole = run(&[&input], policy);
            prop_assert_eq!(run(&chunks, policy), whole.clone());
            for s in &whole {
                if let Seen::Command(c) = s {
                    prop_assert!(c.len() <= LIMITS.max_command + 1);
                    prop_assert!(c.ends_with(b"\r\n"));
                }
            }
        }
    }
}
