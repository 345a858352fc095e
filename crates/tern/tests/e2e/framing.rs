//! Literal framing: a literal's bytes are never read as a command, whatever
//! is done with the literal (protocol-core issue, defect 1).

use crate::harness::*;

/// No folder named `pwned` appeared.
fn no_pwned(c: &mut Client) {
    let r = c.cmd("LIST \"\" *");
    assert!(!r.has("pwned"), "{r:?}");
}

#[test]
fn append_with_mailbox_literal_stores_the_message_literal() {
    let s = server().start();
    let mut c = s.alice();
    let body = b"x9 CREATE INBOX.pwned\r\n";
    let mut data = b"a1 APPEND {5+}\r\nINBOX ".to_vec();
    data.extend_from_slice(format!("{{{}+}}\r\n", body.len()).as_bytes());
    data.extend_from_slice(body);
    data.extend_from_slice(b"\r\n");
    c.send(&data);
    let r = c.read_until_tag("a1");
    assert!(r.ok() && r.tagged().contains("APPENDUID"), "{r:?}");
    let r = c.cmd("NOOP");
    assert!(!r.has("x9"), "{r:?}");
    no_pwned(&mut c);
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 BODY[]");
    assert!(r.has("x9 CREATE INBOX.pwned"), "{r:?}");
}

#[test]
fn refused_literal_plus_drops_its_whole_command() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let mut data = b"a1 SEARCH TEXT {70000+}\r\n".to_vec();
    data.extend(std::iter::repeat_n(b'a', 70000));
    let inner = b"x9 CREATE INBOX.pwned\r\n";
    data.extend_from_slice(format!(" TEXT {{{}+}}\r\n", inner.len()).as_bytes());
    data.extend_from_slice(inner);
    data.extend_from_slice(b"\r\na2 NOOP\r\n");
    c.send(&data);
    let r = c.read_until_tag("a2");
    assert!(!r.has("x9"), "{r:?}");
    let a1: Vec<&String> = r.lines.iter().filter(|l| l.starts_with("a1 ")).collect();
    assert_eq!(a1.len(), 1, "{r:?}");
    assert!(a1[0].starts_with("a1 BAD [LIMIT]"), "{r:?}");
    assert!(r.ok());
    no_pwned(&mut c);
}

#[test]
fn overlong_line_drops_the_literal_it_announces() {
    let s = server().config("[limits]\nmax_line_length = 2048").start();
    let mut c = s.alice();
    let inner = b"x9 CREATE INBOX.pwned\r\n";
    let mut data = format!(
        "a1 LIST \"\" \"{}\" {{{}+}}\r\n",
        "x".repeat(5000),
        inner.len()
    )
    .into_bytes();
    data.extend_from_slice(inner);
    data.extend_from_slice(b"\r\na2 NOOP\r\n");
    c.send(&data);
    let r = c.read_until_tag("a2");
    assert!(!r.has("x9"), "{r:?}");
    assert!(r.lines[0].starts_with("a1 BAD [LIMIT]"), "{r:?}");
    no_pwned(&mut c);
}

#[test]
fn refused_literal_too_large_to_skip_closes_with_bye() {
    let s = server()
        .config("[limits]\nmax_refused_literal = 10000")
        .start();
    let mut c = s.alice();
    // Larger than a command may be, and than the server skips.
    c.send(b"a1 SEARCH TEXT {100000+}\r\nx9 CREATE INBOX.pwned\r\n");
    let r = c.read_line();
    assert!(r.starts_with("a1 BAD [LIMIT]"), "{r}");
    let r = c.read_line();
    assert!(r.starts_with("* BYE"), "{r}");
    assert!(c.closed());
    let mut c = s.alice();
    no_pwned(&mut c);
}

#[test]
fn refused_sync_literal_is_answered_before_any_continuation() {
    let s = server().config("[limits]\nmax_line_length = 2048").start();
    let mut c = s.alice();
    c.send(b"a1 SEARCH TEXT {100000}\r\n");
    let r = c.read_line();
    assert!(r.starts_with("a1 BAD [LIMIT]"), "{r}");
    // The client did not send the literal; the next line is a command.
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn multiappend_message_literals_are_refused_not_executed() {
    let s = server().start();
    let mut c = s.alice();
    let m1 = b"Subject: a\r\n\r\nx\r\n";
    let m2 = b"x9 CREATE INBOX.pwned\r\n";
    let mut data = format!("a1 APPEND INBOX {{{}+}}\r\n", m1.len()).into_bytes();
    data.extend_from_slice(m1);
    data.extend_from_slice(format!(" {{{}+}}\r\n", m2.len()).as_bytes());
    data.extend_from_slice(m2);
    data.extend_from_slice(b"\r\na2 NOOP\r\n");
    c.send(&data);
    let r = c.read_until_tag("a2");
    assert!(!r.has("x9"), "{r:?}");
    assert!(r.lines.iter().any(|l| l.starts_with("a1 BAD")), "{r:?}");
    no_pwned(&mut c);
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 0"), "{r:?}");
}

#[test]
fn append_of_thousands_of_small_literals_is_answered() {
    // None of them can be the message (it is an APPEND's first or second
    // literal): the command is read in one pass and refused by the parser.
    let s = server().start();
    let mut c = s.alice();
    let mut data = b"a1 APPEND INBOX".to_vec();
    for _ in 0..5000 {
        data.extend_from_slice(b" {1+}\r\nx");
    }
    data.extend_from_slice(b"\r\na2 NOOP\r\n");
    c.send(&data);
    let r = c.read_until_tag("a2");
    assert!(r.lines.iter().any(|l| l.starts_with("a1 BAD")), "{r:?}");
    assert!(r.ok());
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 0"), "{r:?}");
}

#[test]
fn overlong_line_without_a_tag_gets_an_untagged_bad() {
    let s = server().config("[limits]\nmax_line_length = 2048").start();
    let mut c = s.alice();
    let mut data = vec![b'x'; 5000];
    data.extend_from_slice(b"\r\n");
    c.send(&data);
    let l = c.read_line();
    assert_eq!(l, "* BAD [LIMIT] Command line too long");
    assert!(c.cmd("NOOP").ok());
}
