//! Known-answer traces: the example sessions of RFC 3501, RFC 7888 and
//! RFC 1939, replayed against the real server from `tests/traces/`.
//!
//! A trace is `C:` lines (sent as they are, with CRLF) and `S:` lines (what
//! the server must answer; `*` matches any text). `@deliver N` delivers N
//! numbered messages to alice; `@setup CMD` runs CMD on INBOX in a session
//! of its own first. IMAP: the untagged lines a command gets match its `S:`
//! lines in any order (RFC 3501 fixes none), the tagged line last; a command
//! ending in a synchronising literal gets its `+` line before the next `C:`.
//! POP3: every line in order.

use std::path::Path;

use crate::harness::*;

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Debug)]
enum Step {
    Deliver(usize),
    Setup(String),
    Client(String),
    Server(String),
}

fn read_trace(name: &str) -> Vec<Step> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            if let Some(n) = l.strip_prefix("@deliver ") {
                Step::Deliver(n.parse().unwrap())
            } else if let Some(c) = l.strip_prefix("@setup ") {
                Step::Setup(c.to_owned())
            } else if let Some(c) = l.strip_prefix("C: ") {
                Step::Client(c.to_owned())
            } else if let Some(s) = l.strip_prefix("S:") {
                Step::Server(s.strip_prefix(' ').unwrap_or(s).to_owned())
            } else {
                panic!("{name}: bad trace line {l:?}")
            }
        })
        .collect()
}

fn deliver(s: &Server, first: usize, n: usize) {
    for i in first..first + n {
        let msg = format!(
            "From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: message {i}\r\n\
             Message-ID: <{i}@example.org>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody {i}\r\n"
        );
        s.deliver_raw(
            "alice",
            &format!("17000000{i:02}.M1P1.trace"),
            msg.as_bytes(),
        );
    }
}

/// Runs the setup steps; the rest of the trace is returned.
fn prepare(s: &Server, steps: Vec<Step>) -> Vec<Step> {
    let mut delivered = 0;
    let mut rest = Vec::new();
    for step in steps {
        match step {
            Step::Deliver(n) => {
                deliver(s, delivered + 1, n);
                delivered += n;
            }
            Step::Setup(cmd) => {
                let mut c = s.alice();
                assert!(c.cmd("SELECT INBOX").ok());
                let r = c.cmd(&cmd);
                assert!(r.ok(), "setup {cmd}: {r:?}");
                c.cmd("LOGOUT");
            }
            other => rest.push(other),
        }
    }
    rest
}

fn run_imap(name: &str) {
    let s = server().start();
    let steps = prepare(&s, read_trace(name));
    let mut c = s.connect();
    let mut i = 0;
    // The greeting.
    if let Some(Step::Server(p)) = steps.first() {
        assert!(
            glob(p, &c.greeting),
            "{name}: greeting {:?} against {p:?}",
            c.greeting
        );
        i = 1;
    }
    while i < steps.len() {
        let Step::Client(line) = &steps[i] else {
            panic!("{name}: step {i}: expected C:, got {:?}", steps[i]);
        };
        i += 1;
        c.send(format!("{line}\r\n").as_bytes());
        let expected: Vec<&String> = steps[i..]
            .iter()
            .map_while(|s| match s {
                Step::Server(p) => Some(p),
                _ => None,
            })
            .collect();
        i += expected.len();
        if expected.is_empty() {
            continue;
        }
        // A synchronising literal: one continuation line.
        if expected.len() == 1 && expected[0].starts_with('+') {
            let got = c.read_line();
            assert!(
                glob(expected[0], &got),
                "{name}: {line:?}: {got:?} against {:?}",
                expected[0]
            );
            continue;
        }
        let tagged = expected.last().unwrap();
        let tag = tagged.split(' ').next().unwrap();
        let r = c.read_until_tag(tag);
        assert!(
            glob(tagged, r.tagged()),
            "{name}: {line:?}: tagged {:?} against {tagged:?}",
            r.tagged()
        );
        let mut untagged: Vec<&String> = r.lines[..r.lines.len() - 1].iter().collect();
        for p in &expected[..expected.len() - 1] {
            let Some(at) = untagged.iter().position(|l| glob(p, l)) else {
                panic!("{name}: {line:?}: nothing matches {p:?} in {untagged:#?}");
            };
            untagged.remove(at);
        }
        assert!(
            untagged.is_empty(),
            "{name}: {line:?}: unexpected {untagged:#?}"
        );
    }
}

fn run_pop3(name: &str) {
    let s = server().start();
    let steps = prepare(&s, read_trace(name));
    let mut p = s.pop();
    let mut greeting_done = false;
    for step in steps {
        match step {
            Step::Client(line) => {
                greeting_done = true;
                p.send(format!("{line}\r\n").as_bytes());
            }
            Step::Server(pattern) if !greeting_done => {
                greeting_done = true;
                assert!(
                    glob(&pattern, &p.greeting),
                    "{name}: greeting {:?}",
                    p.greeting
                );
            }
            Step::Server(pattern) => {
                let got = p.line();
                assert!(glob(&pattern, &got), "{name}: {got:?} against {pattern:?}");
            }
            other => panic!("{name}: {other:?} after the start"),
        }
    }
}

#[test]
fn rfc3501_sample_session() {
    run_imap("rfc3501-sample.trace");
}

#[test]
fn rfc7888_literals() {
    run_imap("rfc7888-literal-plus.trace");
}

#[test]
fn rfc1939_sample_session() {
    run_pop3("rfc1939-sample.pop3trace");
}

#[test]
fn glob_matches_as_documented() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("* OK *", "* OK done"));
    assert!(!glob("a*c", "abd"));
    assert!(glob("*", ""));
    assert!(glob("x", "x") && !glob("x", "xy"));
}
