//! APPEND, FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE and their UID forms.

use crate::harness::*;

const MULTIPART: &[u8] = b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello world\r\n--XX\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAw==\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: b@example.org\r\n\r\ninner body\r\n--XX--\r\n";

#[test]
fn append_fetch_roundtrip_is_byte_exact() {
    let s = server().start();
    let mut c = s.alice();
    let msg = message("hello", "line one\r\nline two");
    let r = c.append(
        "INBOX",
        "(\\Seen $Label1) \"17-Jul-1996 02:44:25 -0700\"",
        &msg,
    );
    assert!(r.ok() && r.tagged().contains("[APPENDUID "), "{r:?}");
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])");
    assert!(r.ok());
    let expected = format!("RFC822.SIZE {}", msg.len());
    assert!(r.has(&expected), "{r:?}");
    assert!(
        r.has("INTERNALDATE \"17-Jul-1996 09:44:25 +0000\""),
        "{r:?}"
    );
    assert!(r.has("FLAGS (\\Seen \\Recent $Label1)"), "{r:?}");
    let needle = [
        format!("BODY[] {{{}}}\r\n", msg.len()).into_bytes(),
        msg.clone(),
    ]
    .concat();
    assert!(
        r.raw.windows(needle.len()).any(|w| w == needle.as_slice()),
        "body not byte-exact"
    );
    // On disk: LF line ends, S= and W= in the name, flags in the suffix.
    let cur: Vec<String> = std::fs::read_dir(s.maildir("alice").join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(":2,S"), "{cur:?}");
    assert!(cur[0].contains(&format!(",W={}", msg.len())), "{cur:?}");
    let on_disk = std::fs::read(s.maildir("alice").join("cur").join(&cur[0])).unwrap();
    assert!(!on_disk.contains(&b'\r'));
    // Partial fetch and header.
    let r = c.cmd("FETCH 1 (BODY.PEEK[]<0.20> BODY.PEEK[HEADER.FIELDS (Subject)])");
    assert!(r.has("BODY[]<0> {20}"), "{r:?}");
    assert!(
        r.has("BODY[HEADER.FIELDS (Subject)] {18}\r\nSubject: hello\r\n\r\n"),
        "{r:?}"
    );
}

#[test]
fn append_to_selected_mailbox_announces_exists_first() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let r = c.append("INBOX", "()", &message("x", "y"));
    assert!(r.ok());
    let exists = r
        .lines
        .iter()
        .position(|l| l == "* 1 EXISTS")
        .expect("EXISTS sent");
    assert!(exists < r.lines.len() - 1);
    // The mailbox is checked before the client is asked for the message.
    let r = c.cmd("APPEND INBOX.Missing {3}");
    assert!(r.no() && r.tagged().contains("[TRYCREATE]"), "{r:?}");
    assert_eq!(r.lines.len(), 1, "{r:?}");
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn literal_plus_and_empty_message() {
    let s = server().start();
    let mut c = s.alice();
    let msg = message("lp", "non-sync literal");
    let mut data = format!("a1 APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
    data.extend_from_slice(&msg);
    data.extend_from_slice(b"\r\n");
    c.send(&data);
    let r = c.read_until_tag("a1");
    assert!(r.ok(), "{r:?}");
    assert!(
        !r.lines.iter().any(|l| l.starts_with('+')),
        "no continuation for LITERAL+"
    );
    c.send(b"a2 APPEND INBOX {0+}\r\n\r\n");
    assert!(c.read_until_tag("a2").no());
}

/// RFC 3516: broken encodings are decoded leniently (RFC 2045 §6.7, §6.8)
/// and never fail the FETCH, an unknown encoding is `NO [UNKNOWN-CTE]` and
/// the session goes on, a missing part is the empty string, and BINARY is
/// advertised.
#[test]
fn binary_decodes_what_it_can_and_refuses_unknown_encodings() {
    let s = server().start();
    let mut c = s.alice();
    let msg = b"Subject: b\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs*bG8\r\n--B\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db =ZZ  \r\nsoft=\r\nend\r\n--B\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--B--\r\n";
    assert!(c.append("INBOX", "()", msg).ok());
    let caps = c.cmd("CAPABILITY");
    assert!(caps.has(" BINARY"), "{caps:?}");
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[9])");
    assert!(r.ok(), "{r:?}");
    let all = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(all.contains("BINARY[1] {5}\r\nhello"), "{all}");
    assert!(
        all.contains("BINARY[2] {16}\r\na=b =ZZ\r\nsoftend"),
        "{all}"
    );
    assert!(all.contains("BINARY.SIZE[2] 16"), "{all}");
    assert!(all.contains("BINARY[9] {0}\r\n"), "{all}");
    let r = c.cmd("FETCH 1 (BINARY.PEEK[3])");
    assert!(r.no() && r.tagged().contains("[UNKNOWN-CTE]"), "{r:?}");
    // The whole message: decoded parts relabelled, the unknown one refused.
    let r = c.cmd("FETCH 1 (BINARY.PEEK[1]<2.2>)");
    assert!(
        String::from_utf8_lossy(&r.raw).contains("BINARY[1]<2> {2}\r\nll"),
        "{r:?}"
    );
    assert!(c.cmd("NOOP").ok());
    // APPEND takes a literal8 (RFC 3516 §4.4), NUL included.
    let bin = b"Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\na\x00b\r\n";
    c.send(format!("a1 APPEND INBOX ~{{{}}}\r\n", bin.len()).as_bytes());
    assert!(c.read_line().starts_with('+'));
    c.send(bin);
    c.send(b"\r\n");
    let r = c.read_until_tag("a1");
    assert!(r.ok(), "{r:?}");
    let r = c.cmd("FETCH 2 (BINARY.PEEK[1] RFC822.SIZE)");
    let all = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(all.contains("BINARY[1] ~{5}\r\na\x00b\r\n"), "{all}");
}

/// BINARY with a text specifier (`BINARY[TEXT]`, `BINARY.SIZE[1.MIME]`,
/// `BINARY.PEEK[2.HEADER.FIELDS (..)]`), outside RFC 3516's grammar but
/// accepted by Dovecot and expected by its imaptest suite: TEXT is the
/// decoded body, header sections are the header bytes; the plain BINARY
/// form still sets \Seen, the PEEK and SIZE forms do not.
#[test]
fn binary_takes_text_specifiers_as_dovecot_does() {
    let s = server().start();
    let mut c = s.alice();
    let msg = b"Subject: t\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: in@example.org\r\nSubject: inner\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--B--\r\n";
    assert!(c.append("INBOX", "()", msg).ok());
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 (BINARY.SIZE[1.MIME] BINARY.PEEK[2.HEADER.FIELDS (SUBJECT)] BINARY.PEEK[2.TEXT] BINARY.SIZE[2.TEXT] BODY.PEEK[1.MIME])");
    assert!(r.ok(), "{r:?}");
    let all = String::from_utf8_lossy(&r.raw).into_owned();
    let mime = "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    assert!(
        all.contains(&format!("BINARY.SIZE[1.MIME] {}", mime.len())),
        "{all}"
    );
    assert!(
        all.contains("BINARY[2.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n"),
        "{all}"
    );
    assert!(all.contains("BINARY[2.TEXT] {3}\r\na=b "), "{all}");
    assert!(all.contains("BINARY.SIZE[2.TEXT] 3"), "{all}");
    assert!(
        all.contains(&format!("BODY[1.MIME] {{{}}}\r\n{mime}", mime.len())),
        "{all}"
    );
    let r = c.cmd("FETCH 1 (FLAGS)");
    assert!(!r.lines[0].contains("\\Seen"), "{r:?}");
    // BINARY[TEXT] of the whole message: its parts decoded and relabelled.
    let r = c.cmd("FETCH 1 (BINARY[TEXT])");
    let all = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(all.contains("BINARY[TEXT] {"), "{all}");
    assert!(all.contains("\r\nhello\r\n--B\r\n"), "{all}");
    assert!(
        all.contains("Content-Transfer-Encoding: binary\r\n"),
        "{all}"
    );
    assert!(all.contains("\\Seen"), "{all}");
    // A text specifier on a part that is no message is the empty string.
    let r = c.cmd("FETCH 1 (BINARY.PEEK[1.TEXT])");
    assert!(
        String::from_utf8_lossy(&r.raw).contains("BINARY[1.TEXT] {0}"),
        "{r:?}"
    );
}

/// NUL cannot travel in a literal (RFC 3501 §4.3): sections send it as
/// 0x80, as Dovecot does, whether read from the message (TEXT) or from
/// the summary (kept header fields); BINARY sends it as it is, in a
/// literal8.
#[test]
fn nul_in_sections_is_sent_as_0x80() {
    let s = server().start();
    let mut c = s.alice();
    let msg = b"Subject: a\x00b\r\n\r\nc\x00d\r\n";
    assert!(c.append("INBOX", "()", msg).ok());
    c.cmd("SELECT INBOX");
    for (item, want) in [
        ("BODY.PEEK[TEXT]", &b"BODY[TEXT] {5}\r\nc\x80d\r\n"[..]),
        (
            "BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
            &b"BODY[HEADER.FIELDS (SUBJECT)] {16}\r\nSubject: a\x80b\r\n\r\n"[..],
        ),
        ("BINARY.PEEK[1]", &b"BINARY[1] ~{5}\r\nc\x00d\r\n"[..]),
    ] {
        // Twice: the first answer made the summary the second is served
        // from (kept header fields always come from it).
        for _ in 0..2 {
            let r = c.cmd(&format!("FETCH 1 ({item})"));
            assert!(r.ok(), "{r:?}");
            assert!(
                r.raw.windows(want.len()).any(|w| w == want),
                "{item}: {:?}",
                String::from_utf8_lossy(&r.raw)
            );
        }
    }
}

#[test]
fn body_sections_and_structure() {
    let s = server().start();
    let mut c = s.alice();
    c.append("INBOX", "()", MULTIPART);
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BINARY.PEEK[2] BINARY.SIZE[2])");
    assert!(r.ok(), "{r:?}");
    let all = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(all.contains("BODY[1] {11}\r\nhello world"), "{all}");
    assert!(all.contains("BODY[2.MIME] {"), "{all}");
    assert!(
        all.contains("BODY[3.HEADER] {39}\r\nSubject: inner\r\nFrom: b@example.org\r\n\r\n"),
        "{all}"
    );
    assert!(all.contains("BODY[3.TEXT] {10}\r\ninner body"), "{all}");
    assert!(all.contains("BODY[3.1] {10}\r\ninner body"), "{all}");
    assert!(all.contains("BINARY[2] ~{4}\r\n\x00\x01\x02\x03"), "{all}");
    assert!(all.contains("BINARY.SIZE[2] 4"), "{all}");
    let r = c.cmd("FETCH 1 (BODYSTRUCTURE ENVELOPE)");
    let line = r.untagged("1 FETCH")[0];
    assert!(
        line.contains("(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 11 0"),
        "{line}"
    );
    assert!(line.contains("\"mixed\" (\"boundary\" \"XX\")"), "{line}");
    assert!(
        line.contains("(\"attachment\" (\"filename\" \"a.bin\"))"),
        "{line}"
    );
    assert!(
        line.contains("ENVELOPE (NIL \"parts\" ((NIL NIL \"a\" \"example.org\"))"),
        "{line}"
    );
    // A part that does not exist is the empty string, as Dovecot answers.
    let r = c.cmd("FETCH 1 (BODY.PEEK[9])");
    assert!(r.ok() && r.has("BODY[9] {0}"), "{r:?}");
}

#[test]
fn fetch_body_sets_seen_and_peek_does_not() {
    let s = server().start();
    let mut c = s.alice();
    c.append("INBOX", "()", &message("a", "b"));
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1 (BODY.PEEK[TEXT])");
    assert!(!r.has("\\Seen"));
    let r = c.cmd("UID FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER] BODY[TEXT])");
    // The FLAGS the \Seen adds stand before the first body item, as in
    // Dovecot's answers.
    assert!(
        r.lines[0].starts_with("* 1 FETCH (UID 1 RFC822.SIZE ")
            && r.lines[0].contains(" FLAGS (\\Seen \\Recent) BODY[HEADER] {"),
        "{r:?}"
    );
    let r = c.cmd("FETCH 1 FLAGS");
    assert!(r.has("\\Seen"));
    // EXAMINE never changes flags.
    c.append("INBOX", "()", &message("c", "d"));
    c.cmd("EXAMINE INBOX");
    c.cmd("FETCH 2 (RFC822)");
    let r = c.cmd("FETCH 2 FLAGS");
    assert!(!r.has("\\Seen"), "{r:?}");
    assert!(c.cmd("STORE 2 +FLAGS (\\Seen)").no());
}

#[test]
fn store_flags_and_keywords() {
    let s = server().start();
    let mut c = s.alice();
    for i in 0..3 {
        c.append("INBOX", "()", &message(&format!("m{i}"), "x"));
    }
    c.cmd("SELECT INBOX");
    let r = c.cmd("STORE 1:2 +FLAGS (\\Flagged \\Answered $Work)");
    assert_eq!(
        r.untagged("")
            .iter()
            .filter(|l| l.contains("FETCH"))
            .count(),
        2,
        "{r:?}"
    );
    assert!(
        r.has("* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent $Work))"),
        "{r:?}"
    );
    let r = c.cmd("STORE 2 -FLAGS.SILENT (\\Flagged)");
    assert!(r.ok() && !r.has("FETCH"));
    let r = c.cmd("UID STORE 3 FLAGS (\\Draft)");
    assert!(r.has("* 3 FETCH (UID 3 FLAGS (\\Draft \\Recent))"), "{r:?}");
    let r = c.cmd("FETCH 1:3 (FLAGS)");
    assert!(
        r.has("* 2 FETCH (FLAGS (\\Answered \\Recent $Work))"),
        "{r:?}"
    );
    // Flags are in the file names, keywords in courierimapkeywords.
    let names: Vec<String> = std::fs::read_dir(s.maildir("alice").join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(":2,FR")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(":2,D")), "{names:?}");
    let kw = std::fs::read_to_string(s.maildir("alice").join("courierimapkeywords/:list")).unwrap();
    assert!(kw.starts_with("$Work\n\n"), "{kw}");
    let r = c.cmd("SELECT INBOX");
    assert!(
        r.has("FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"),
        "{r:?}"
    );
}

#[test]
fn search_keys() {
    let s = server().start();
    let mut c = s.alice();
    c.append(
        "INBOX",
        "(\\Seen)",
        &message("apple pie", "the quick brown fox"),
    );
    c.append("INBOX", "(\\Flagged)", &message("banana", "lazy dog"));
    c.append(
        "INBOX",
        "()",
        b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nU2Now7ZuZW4gVGFnIQ==\r\n",
    );
    c.cmd("SELECT INBOX");
    let q = |c: &mut Client, q: &str| -> String {
        let r = c.cmd(q);
        assert!(r.ok(), "{q}: {r:?}");
        r.untagged("SEARCH")[0].to_owned()
    };
    assert_eq!(q(&mut c, "SEARCH ALL"), "SEARCH 1 2 3");
    assert_eq!(q(&mut c, "SEARCH SEEN"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH UNSEEN"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "SEARCH FLAGGED"), "SEARCH 2");
    assert_eq!(q(&mut c, "SEARCH SUBJECT APPLE"), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH BODY \"brown fox\""), "SEARCH 1");
    assert_eq!(q(&mut c, "SEARCH TEXT lazy"), "SEARCH 2");
    // TEXT looks at whole header fields, names included, as Dovecot does;
    // BODY does not look at headers.
    assert_eq!(q(&mut c, "SEARCH TEXT Content-Transfer"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH BODY Content-Transfer"), "SEARCH");
    // 8-bit search strings travel as literals (here LITERAL+).
    let lit = |c: &mut Client, key: &str, value: &str| -> String {
        let tag = c.next_tag();
        c.send(
            format!(
                "{tag} SEARCH CHARSET UTF-8 {key} {{{}+}}\r\n{value}\r\n",
                value.len()
            )
            .as_bytes(),
        );
        let r = c.read_until_tag(&tag);
        assert!(r.ok(), "{r:?}");
        r.untagged("SEARCH")[0].to_owned()
    };
    assert_eq!(lit(&mut c, "FROM", "jörg"), "SEARCH 3");
    assert_eq!(lit(&mut c, "SUBJECT", "grüße"), "SEARCH 3");
    assert_eq!(lit(&mut c, "BODY", "SCHÖNEN"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH OR SEEN FLAGGED"), "SEARCH 1 2");
    assert_eq!(q(&mut c, "SEARCH NOT SEEN NOT FLAGGED"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH 2:*"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "SEARCH 3:2"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "UID SEARCH UID 2:3"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "SEARCH SENTON 1-Jan-2024"), "SEARCH 3");
    assert_eq!(q(&mut c, "SEARCH SENTBEFORE 1-Jan-2000"), "SEARCH 1 2");
    assert_eq!(q(&mut c, "SEARCH SINCE 1-Jan-2000"), "SEARCH 1 2 3");
    assert_eq!(q(&mut c, "SEARCH LARGER 100000"), "SEARCH");
    assert_eq!(q(&mut c, "SEARCH SUBJECT \"\""), "SEARCH 1 2 3");
    assert_eq!(
        q(&mut c, "SEARCH HEADER Message-ID <banana@example.org>"),
        "SEARCH 2"
    );
    assert_eq!(q(&mut c, "SEARCH NEW"), "SEARCH 2 3");
    assert_eq!(q(&mut c, "SEARCH CHARSET UTF-8 SUBJECT banana"), "SEARCH 2");
    let r = c.cmd("SEARCH CHARSET X-NOPE ALL");
    assert!(r.no() && r.tagged().contains("BADCHARSET"), "{r:?}");
    let size = {
        let r = c.cmd("FETCH 1 RFC822.SIZE");
        number_after(r.lines[0].as_str(), "RFC822.SIZE").unwrap()
    };
    assert_eq!(
        q(
            &mut c,
            &format!("SEARCH LARGER {} SMALLER {}", size - 1, size + 1)
        ),
        "SEARCH 1"
    );
}

/// Long OR chains (a Thunderbird quick filter, a webmail "any of these
/// senders") and deep nesting are answered, not refused: imap-codec alone
/// refused more than nine levels, and a recursive evaluation would let a
/// client choose the stack depth.
#[test]
fn long_or_chains_and_deep_nesting_are_answered() {
    let s = server().config("[limits]\nmax_search_keys = 3000").start();
    let mut c = s.alice();
    for i in 0..30 {
        let flags = if i % 3 == 0 { "(\\Seen)" } else { "()" };
        c.append("INBOX", flags, &message(&format!("topic{i}"), "text"));
    }
    c.cmd("SELECT INBOX");
    let q = |c: &mut Client, q: &str| -> String {
        let r = c.cmd(q);
        assert!(r.ok(), "{}: {r:?}", &q[..q.len().min(80)]);
        r.untagged("SEARCH")
            .first()
            .map(|l| l.to_string())
            .or_else(|| r.untagged("SORT").first().map(|l| l.to_string()))
            .or_else(|| r.untagged("THREAD").first().map(|l| l.to_string()))
            .or_else(|| r.untagged("ESEARCH").first().map(|l| l.to_string()))
            .unwrap_or_default()
    };
    // Twelve subjects in one OR chain (was BAD).
    let chain = |subjects: &[usize]| -> String {
        let mut q = String::new();
        for &n in &subjects[..subjects.len() - 1] {
            q.push_str(&format!("OR SUBJECT topic{n} "));
        }
        q.push_str(&format!("SUBJECT topic{}", subjects[subjects.len() - 1]));
        q
    };
    // SUBJECT topic1 also matches topic10..topic19: ask for 20..29 only.
    let twelve: Vec<usize> = (20..30).chain([2, 3]).collect();
    assert_eq!(
        q(&mut c, &format!("SEARCH {}", chain(&twelve))),
        "SEARCH 3 4 21 22 23 24 25 26 27 28 29 30"
    );
    // A 1,000-key chain of sequence numbers, in UID SEARCH, SORT and THREAD.
    let mut long = "OR UID 1000 ".repeat(999);
    long.push('5');
    assert_eq!(q(&mut c, &format!("UID SEARCH {long}")), "SEARCH 5");
    assert_eq!(q(&mut c, &format!("SORT (SUBJECT) UTF-8 {long}")), "SORT 5");
    assert_eq!(
        q(&mut c, &format!("THREAD ORDEREDSUBJECT UTF-8 {long}")),
        "THREAD (5)"
    );
    assert_eq!(
        q(&mut c, &format!("SEARCH RETURN (COUNT) {long}")),
        format!("ESEARCH (TAG \"t{}\") COUNT 1", c.tag)
    );
    // Parentheses 500 deep, and NOT and OR alternating 300 deep (which no
    // flattening removes): NOT (OR 1 NOT (OR 1 ... SEEN)), an even number
    // of NOTs, so it is SEEN without message 1.
    let deep = format!("{}UNSEEN{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(q(&mut c, &format!("SEARCH {deep} 1:4")), "SEARCH 2 3");
    let alternating = format!("{}SEEN{}", "NOT (OR 1 ".repeat(300), ")".repeat(300));
    assert_eq!(
        q(&mut c, &format!("SEARCH {alternating}")),
        "SEARCH 4 7 10 13 16 19 22 25 28"
    );
    // Over the limit: BAD [LIMIT], and the session goes on.
    let mut too_many = "OR SEEN ".repeat(3000);
    too_many.push_str("SEEN");
    let r = c.cmd(&format!("SEARCH {too_many}"));
    assert!(r.bad() && r.has("[LIMIT]"), "{:?}", r.tagged());
    // 30,000 open parentheses in one 64 KiB line: refused, the server lives.
    let r = c.cmd(&format!("SEARCH {}SEEN", "(".repeat(30_000)));
    assert!(r.bad() && r.has("[CLIENTBUG]"), "{:?}", r.tagged());
    let r = c.cmd(&format!(
        "SEARCH {}SEEN{}",
        "(".repeat(30_000),
        ")".repeat(30_000)
    ));
    assert!(r.ok(), "{:?}", r.tagged());
    assert_eq!(q(&mut c, "SEARCH OR 1 2"), "SEARCH 1 2");
}

#[test]
fn uid_star_and_ranges() {
    let s = server().start();
    let mut c = s.alice();
    for i in 0..3 {
        c.append("INBOX", "()", &message(&format!("m{i}"), "x"));
    }
    let r = c.cmd("SELECT INBOX");
    let next = number_after(r.untagged("OK [UIDNEXT")[0], "UIDNEXT").unwrap();
    let r = c.cmd(&format!("UID FETCH {next}:* (UID)"));
    assert!(
        r.has("* 3 FETCH (UID 3)"),
        "n:* includes the last message: {r:?}"
    );
    let r = c.cmd("UID FETCH 100 (UID)");
    assert!(r.ok() && r.untagged("").is_empty());
    let r = c.cmd("FETCH 3:1 (UID)");
    assert_eq!(r.untagged("").len(), 3);
    let r = c.cmd("FETCH * (UID)");
    assert!(r.has("* 3 FETCH (UID 3)"));
    let r = c.cmd("UID FETCH 2 (FLAGS)");
    assert!(
        r.has("* 2 FETCH (UID 2 FLAGS"),
        "UID FETCH includes UID: {r:?}"
    );
}

#[test]
fn copy_move_expunge_with_uidplus() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("CREATE INBOX.Dest");
    for i in 0..5 {
        c.append("INBOX", "()", &message(&format!("m{i}"), "x"));
    }
    let r = c.cmd("SELECT INBOX");
    let src_v = number_after(r.untagged("OK [UIDVALIDITY")[0], "UIDVALIDITY").unwrap();
    let r = c.cmd("COPY 2:3 INBOX.Dest");
    assert!(r.tagged().contains("[COPYUID "), "{r:?}");
    assert!(r.tagged().contains(" 2:3 1:2]"), "{r:?}");
    let r = c.cmd("COPY 1 INBOX.Nope");
    assert!(r.no() && r.tagged().contains("[TRYCREATE]"), "{r:?}");
    c.cmd("STORE 1,4 +FLAGS.SILENT (\\Deleted)");
    let r = c.cmd("EXPUNGE");
    assert_eq!(
        r.untagged("")
            .iter()
            .filter(|l| l.ends_with("EXPUNGE"))
            .count(),
        2,
        "{r:?}"
    );
    assert!(r.has("* 4 EXPUNGE") && r.has("* 1 EXPUNGE"), "{r:?}");
    let r = c.cmd("FETCH 1:* (UID)");
    let uids: Vec<u64> = r
        .untagged("")
        .iter()
        .filter_map(|l| number_after(l, "UID"))
        .collect();
    assert_eq!(uids, vec![2, 3, 5]);
    let r = c.cmd("UID MOVE 5 INBOX.Dest");
    assert!(r.has("OK [COPYUID"), "{r:?}");
    assert!(r.has("* 3 EXPUNGE"), "{r:?}");
    assert!(r.ok());
    c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)");
    c.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)");
    let r = c.cmd("UID EXPUNGE 3");
    assert!(r.has("* 2 EXPUNGE") && !r.has("* 1 EXPUNGE"), "{r:?}");
    let r = c.cmd("STATUS INBOX.Dest (MESSAGES UIDNEXT)");
    assert!(r.has("MESSAGES 3") && r.has("UIDNEXT 4"), "{r:?}");
    // CLOSE expunges silently; UNSELECT does not.
    let r = c.cmd("CLOSE");
    assert!(r.ok() && !r.has("EXPUNGE"));
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 0 EXISTS"), "{r:?}");
    let _ = src_v;
}

#[test]
fn check_close_unselect_examine() {
    let s = server().start();
    let mut c = s.alice();
    for i in 0..3 {
        c.append("INBOX", "()", &message(&format!("c{i}"), "x"));
    }
    let r = c.cmd("EXAMINE INBOX");
    assert!(
        r.tagged().contains("[READ-ONLY]") && r.has("PERMANENTFLAGS ()"),
        "{r:?}"
    );
    assert!(
        c.cmd("EXPUNGE").no(),
        "EXPUNGE is refused on a read-only mailbox"
    );
    let r = c.cmd("SELECT INBOX");
    assert!(r.tagged().contains("[READ-WRITE]"), "{r:?}");
    assert!(c.cmd("CHECK").ok());
    c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert!(c.cmd("UNSELECT").ok());
    assert!(
        c.cmd("FETCH 1 FLAGS").bad(),
        "no mailbox selected after UNSELECT"
    );
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 3"), "UNSELECT does not expunge: {r:?}");
    c.cmd("SELECT INBOX");
    assert!(c.cmd("CLOSE").ok());
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 2"), "CLOSE expunges: {r:?}");
    // EXAMINE does not take \Recent and does not move new/ to cur/.
    std::fs::write(
        s.maildir("alice").join("new/1700000002.M9P9.mta"),
        "Subject: n\n\nx\n",
    )
    .unwrap();
    let r = c.cmd("EXAMINE INBOX");
    assert!(r.has("* 3 EXISTS"), "{r:?}");
    assert!(s.maildir("alice").join("new/1700000002.M9P9.mta").exists());
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 1 RECENT"), "{r:?}");
    let r = c.cmd("LOGOUT");
    assert!(r.ok() && r.has("* BYE"));
}

/// SORT and THREAD on a small folder; the expected answers are the ones
/// Dovecot 2.3 gives for the same messages (checked by hand).
#[test]
fn sort_and_thread_answer_as_dovecot_does() {
    let s = server().start();
    let mut c = s.alice();
    let caps = c.cmd("CAPABILITY");
    for cap in [
        "SORT",
        "SORT=DISPLAY",
        "THREAD=REFERENCES",
        "THREAD=ORDEREDSUBJECT",
    ] {
        assert!(
            caps.lines[0].split(' ').any(|w| w == cap),
            "{cap}: {caps:?}"
        );
    }
    let msgs = [
        (
            "a@x",
            "",
            "Hello",
            "Mon, 01 Jan 2024 10:00:00 +0000",
            "Zed <zed@b.org>",
        ),
        (
            "b@x",
            "<a@x>",
            "Re: Hello",
            "Mon, 01 Jan 2024 11:00:00 +0000",
            "amy@c.org",
        ),
        (
            "c@x",
            "<a@x> <b@x>",
            "Re: Re: Hello",
            "Mon, 01 Jan 2024 09:00:00 -0300",
            "=?utf-8?q?J=C3=B6rg?= <jo@d.org>",
        ),
        (
            "d@x",
            "",
            "[list] Other",
            "Sun, 31 Dec 2023 10:00:00 +0000",
            "bob@e.org",
        ),
        ("", "", "Fwd: other", "bad date", "Carl <carl@f.org>"),
    ];
    assert!(c.cmd("CREATE INBOX.srt").ok());
    for (mid, refs, subj, date, from) in msgs {
        let mut m = String::new();
        if !mid.is_empty() {
            m.push_str(&format!("Message-ID: <{mid}>\r\n"));
        }
        if !refs.is_empty() {
            m.push_str(&format!("References: {refs}\r\n"));
        }
        m.push_str(&format!(
            "Subject: {subj}\r\nDate: {date}\r\nFrom: {from}\r\nTo: x@y\r\n\r\nbody\r\n"
        ));
        let r = c.append("INBOX.srt", "()", m.as_bytes());
        assert!(r.ok(), "{r:?}");
    }
    c.cmd("SELECT INBOX.srt");
    for (criteria, want) in [
        ("(SUBJECT)", "* SORT 1 2 3 4 5"),
        ("(REVERSE DATE)", "* SORT 5 3 2 1 4"),
        ("(FROM)", "* SORT 2 4 5 3 1"),
        ("(DISPLAYFROM)", "* SORT 2 4 5 3 1"),
        ("(SIZE)", "* SORT 5 1 4 2 3"),
        ("(ARRIVAL)", "* SORT 1 2 3 4 5"),
        ("(TO SUBJECT)", "* SORT 1 2 3 4 5"),
    ] {
        let r = c.cmd(&format!("SORT {criteria} UTF-8 ALL"));
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.lines[0], want, "SORT {criteria}");
    }
    let r = c.cmd("SORT (SUBJECT) UTF-8 FROM bob");
    assert_eq!(r.lines[0], "* SORT 4");
    let r = c.cmd("THREAD REFERENCES UTF-8 ALL");
    assert_eq!(r.lines[0], "* THREAD (4 5)(1 2 3)");
    let r = c.cmd("THREAD ORDEREDSUBJECT UTF-8 ALL");
    assert_eq!(r.lines[0], "* THREAD (4 5)(1 (2)(3))");
    let r = c.cmd("UID THREAD REFERENCES UTF-8 SUBJECT nothing-matches");
    assert_eq!(r.lines[0], "* THREAD");
    assert!(c.cmd("THREAD NOSUCH UTF-8 ALL").bad());
    let r = c.cmd("SORT (DATE) X-NO-SUCH-CHARSET ALL");
    assert!(r.no() && r.tagged().contains("BADCHARSET"), "{r:?}");
    // The folder keeps the subject ranks of a SORT ALL: new mail and
    // expunges must show in the next answer.
    let m = b"Subject: Aardvark\r\nFrom: a@b\r\n\r\nbody\r\n";
    assert!(c.append("INBOX.srt", "()", m).ok());
    let r = c.cmd("SORT (SUBJECT) UTF-8 ALL");
    assert_eq!(r.lines[0], "* SORT 6 1 2 3 4 5", "{r:?}");
    let r = c.cmd("SORT (REVERSE SUBJECT) UTF-8 ALL");
    assert_eq!(r.lines[0], "* SORT 4 5 1 2 3 6", "{r:?}");
    assert!(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok());
    assert!(c.cmd("EXPUNGE").ok());
    let r = c.cmd("SORT (SUBJECT) UTF-8 ALL");
    assert_eq!(r.lines[0], "* SORT 5 1 2 3 4", "{r:?}");
    let r = c.cmd("THREAD REFERENCES UTF-8 ALL");
    assert_eq!(r.lines[0], "* THREAD (3 4)(1 2)(5)", "{r:?}");
}

/// A search that reads the messages is split over threads when the
/// folder is large: every hit must be found once, in order, whatever part
/// it falls in, and header fields kept in the summaries answer as the
/// messages do.
#[test]
fn large_searches_find_every_hit_in_order() {
    let s = server().start();
    let mut c = s.alice();
    let cur = s.maildir("alice").join("cur");
    let n = 1300;
    let mut body_hits = Vec::new();
    let mut from_hits = Vec::new();
    for i in 1..=n {
        let from = if i % 101 == 0 { "Needle <x@y>" } else { "a@b" };
        let body = if i % 97 == 0 || i == 1 || i == n {
            "a NEEDLE in the text"
        } else {
            "hay"
        };
        if from.starts_with("Needle") {
            from_hits.push(i.to_string());
        }
        if body.contains("NEEDLE") {
            body_hits.push(i.to_string());
        }
        // Delivered as an MTA would; names in delivery order.
        let m = format!("From: {from}\nSubject: m{i}\n\n{body}\n");
        std::fs::write(cur.join(format!("{}.M{i}P1.mta:2,", 1_700_000_000 + i)), m).unwrap();
    }
    let r = c.cmd("SELECT INBOX");
    assert!(r.has(&format!("* {n} EXISTS")), "{r:?}");
    let all_hits: Vec<String> = {
        let mut v: Vec<u32> = body_hits
            .iter()
            .chain(&from_hits)
            .map(|x| x.parse().unwrap())
            .collect();
        v.sort_unstable();
        v.dedup();
        v.iter().map(u32::to_string).collect()
    };
    for (q, want) in [
        ("SEARCH BODY needle", &body_hits),
        ("SEARCH FROM needle", &from_hits),
        ("SEARCH TEXT needle", &all_hits),
    ] {
        for _ in 0..2 {
            let r = c.cmd(q);
            assert!(r.ok(), "{q}: {r:?}");
            assert_eq!(
                r.untagged("SEARCH")[0],
                format!("SEARCH {}", want.join(" ")),
                "{q}"
            );
        }
    }
    let r = c.cmd("SEARCH NOT FROM needle NOT BODY needle");
    let count = r.untagged("SEARCH")[0].split(' ').count() - 1;
    assert_eq!(count, n - all_hits.len());
    // Large FETCHes run as several jobs, the next built while the last is
    // sent: every message once, in order, from the summaries, from the
    // files, and while setting \Seen (one job at a time).
    for (q, what) in [
        ("FETCH 1:* (ENVELOPE)", "ENVELOPE"),
        (
            "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
            "Subject: m",
        ),
        ("FETCH 1:* (BODY.PEEK[TEXT])", "BODY[TEXT]"),
        (
            "FETCH 1:* (BODY[HEADER.FIELDS (FROM SUBJECT)])",
            // Written straight into cur/: \Recent too, for this session.
            "FLAGS (\\Seen \\Recent)",
        ),
    ] {
        let r = c.cmd(q);
        assert!(r.ok(), "{q}: {r:?}");
        let seqs: Vec<usize> = r.lines[..r.lines.len() - 1]
            .iter()
            .filter_map(|l| l.strip_prefix("* ")?.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{q}");
        for (i, l) in r.lines[..n].iter().enumerate() {
            assert!(l.contains(what), "{q}: {l}");
            if what == "Subject: m" {
                assert!(l.contains(&format!("Subject: m{}\r\n", i + 1)), "{q}: {l}");
            }
        }
    }
    let r = c.cmd("SEARCH UNSEEN");
    assert_eq!(r.untagged("SEARCH")[0], "SEARCH", "{r:?}");
}

/// SEARCH in legacy charsets: the search string is decoded from the
/// CHARSET given, the message text from the charsets it declares, and both
/// compared in i;unicode-casemap form.
#[test]
fn search_in_legacy_charsets() {
    let s = server().start();
    let mut c = s.alice();
    let koi8 = b"Subject: =?koi8-r?b?8NLJ18XU?=\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4 \xcd\xc9\xd2\r\n";
    let latin1 = b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nStra=DFe\r\n";
    assert!(c.append("INBOX", "()", koi8).ok());
    assert!(c.append("INBOX", "()", latin1).ok());
    c.cmd("SELECT INBOX");
    let search = |c: &mut Client, cmd: &[u8]| {
        c.send(b"s1 ");
        c.send(cmd);
        c.send(b"\r\n");
        c.read_until_tag("s1")
    };
    // "Привет" in KOI8-R, in the subject and in the body.
    let r = search(
        &mut c,
        b"SEARCH CHARSET KOI8-R SUBJECT {6+}\r\n\xf0\xd2\xc9\xd7\xc5\xd4",
    );
    assert!(r.has("* SEARCH 1"), "{r:?}");
    let r = search(&mut c, b"SEARCH CHARSET KOI8-R BODY {3+}\r\n\xed\xe9\xf2");
    assert!(r.has("* SEARCH 1"), "{r:?}");
    // "STRAßE" finds "Straße" (i;unicode-casemap), in UTF-8 and Latin-1;
    // "STRASSE" does not (ß has no one-character titlecase), as in Dovecot.
    let r = search(
        &mut c,
        "SEARCH CHARSET UTF-8 BODY {7+}\r\nSTRAßE".as_bytes(),
    );
    assert!(r.has("* SEARCH 2"), "{r:?}");
    let r = c.cmd("SEARCH CHARSET UTF-8 BODY STRASSE");
    assert!(r.has("* SEARCH") && !r.has("* SEARCH 2"), "{r:?}");
    let r = search(
        &mut c,
        b"SEARCH CHARSET ISO-8859-1 SUBJECT {4+}\r\ngr\xfc\xdf",
    );
    assert!(r.has("* SEARCH 2"), "{r:?}");
    let r = c.cmd("SEARCH CHARSET X-UNKNOWN TEXT x");
    assert!(r.no() && r.tagged().contains("[BADCHARSET (UTF-8"), "{r:?}");
}

/// ESEARCH (RFC 4731) and saved results (RFC 5182).
#[test]
fn esearch_and_saved_results() {
    let s = server().start();
    let mut c = s.alice();
    let caps = c.cmd("CAPABILITY");
    assert!(caps.lines[0].contains(" ESEARCH") && caps.lines[0].contains(" SEARCHRES"));
    for i in 0..6 {
        let flags = if i % 2 == 0 { "(\\Seen)" } else { "()" };
        assert!(c
            .append("INBOX", flags, &message(&format!("m{i}"), "x"))
            .ok());
    }
    c.cmd("SELECT INBOX");
    let r = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN");
    assert!(r.ok(), "{r:?}");
    let esearch = |r: &Resp| {
        let tag = r.tagged().split(' ').next().unwrap_or("").to_owned();
        r.lines[0].replace(&format!("(TAG \"{tag}\")"), "(TAG)")
    };
    assert_eq!(esearch(&r), "* ESEARCH (TAG) MIN 2 MAX 6 COUNT 3 ALL 2,4,6");
    let r = c.cmd("UID SEARCH RETURN () SEEN");
    assert_eq!(esearch(&r), "* ESEARCH (TAG) UID ALL 1,3,5");
    let r = c.cmd("SEARCH RETURN (COUNT) SUBJECT nothing");
    assert_eq!(esearch(&r), "* ESEARCH (TAG) COUNT 0");
    assert!(c.cmd("SEARCH RETURN (BOGUS) ALL").bad());
    // SAVE alone says nothing; $ then stands for the saved messages.
    let r = c.cmd("SEARCH RETURN (SAVE) UNSEEN");
    assert!(r.ok() && r.lines.len() == 1, "{r:?}");
    let r = c.cmd("FETCH $ (UID)");
    assert_eq!(r.untagged("").len(), 3, "{r:?}");
    assert!(
        r.has("* 2 FETCH (UID 2)") && r.has("* 6 FETCH (UID 6)"),
        "{r:?}"
    );
    let r = c.cmd("SEARCH $ SUBJECT m3");
    assert_eq!(r.lines[0], "* SEARCH 4");
    let r = c.cmd("UID STORE $ +FLAGS.SILENT (\\Flagged)");
    assert!(r.ok(), "{r:?}");
    let r = c.cmd("SEARCH FLAGGED");
    assert_eq!(r.lines[0], "* SEARCH 2 4 6");
    // An empty saved result: nothing to do, and SEARCH $ finds nothing.
    assert!(c.cmd("SEARCH RETURN (SAVE) SUBJECT nothing").ok());
    let r = c.cmd("FETCH $ (UID)");
    assert!(r.ok() && r.untagged("").is_empty(), "{r:?}");
    let r = c.cmd("SEARCH OR $ SUBJECT m1");
    assert_eq!(r.lines[0], "* SEARCH 2");
}

/// ENVELOPE and BODYSTRUCTURE come from the folder's summary cache, kept
/// on disk across restarts; a damaged cache file is rebuilt from the
/// messages. (A test may change a message file in place, which Maildir
/// never does, to see where an answer came from.)
#[test]
fn summaries_are_cached_on_disk_and_rebuilt_when_damaged() {
    let mut s = server().start();
    let mut c = s.alice();
    for i in 0..3 {
        assert!(c
            .append("INBOX", "()", &message(&format!("orig{i}"), "x"))
            .ok());
    }
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1:* (ENVELOPE BODYSTRUCTURE)");
    assert!(r.has("\"orig1\""), "{r:?}");
    let cache = s.maildir("alice").join("tern.cache");
    // The file is written beside the command, in the background.
    let written = |want: &dyn Fn(&[u8]) -> bool| {
        (0..100).any(|_| {
            let ok = std::fs::read(&cache).is_ok_and(|d| want(&d));
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            ok
        })
    };
    assert!(written(&|d| d.len() > 30), "the cache file is written");
    // Change message 2 behind tern's back.
    let cur = s.maildir("alice").join("cur");
    let file = std::fs::read_dir(&cur)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("orig1"))
        .unwrap();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("orig1", "CHANGED");
    std::fs::write(&file, text).unwrap();
    let r = c.cmd("FETCH 2 (ENVELOPE)");
    assert!(r.has("\"orig1\""), "served from memory: {r:?}");
    s.restart();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 2 (ENVELOPE)");
    assert!(r.has("\"orig1\""), "served from the cache file: {r:?}");
    // A damaged cache file is thrown away and rebuilt from the messages.
    std::fs::write(&cache, b"tern summary cache 4\n\xff\xff\xff\xffgarbage").unwrap();
    s.restart();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let r = c.cmd("FETCH 1:3 (ENVELOPE)");
    assert!(r.has("\"CHANGED\"") && r.has("\"orig2\""), "rebuilt: {r:?}");
    assert!(written(
        &|d| d.starts_with(b"tern summary cache 4\n") && !d.ends_with(b"garbage")
    ));
}

#[test]
fn unreadable_message_fails_the_search_instead_of_matching_nothing() {
    let s = server().start();
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("one", "needle")).ok());
    assert!(c.append("INBOX", "()", &message("two", "needle")).ok());
    assert!(c.cmd("SELECT INBOX").ok());
    // Message 2's file becomes something that cannot be read (a directory:
    // permissions do not stop root, which the tests may run as).
    let cur = s.maildir("alice").join("cur");
    let mut names: Vec<_> = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let second = names.last().unwrap().clone();
    std::fs::remove_file(&second).unwrap();
    std::fs::create_dir(&second).unwrap();
    for q in [
        "SEARCH BODY needle",
        "UID SORT (DATE) UTF-8 BODY needle",
        "THREAD REFERENCES UTF-8 TEXT needle",
    ] {
        let r = c.cmd(q);
        assert!(r.no() && r.tagged().contains("[SERVERBUG]"), "{q}: {r:?}");
        assert!(
            r.untagged("SEARCH").is_empty() && r.untagged("SORT").is_empty(),
            "{r:?}"
        );
    }
    // A search that reads no file still works, and so does the session.
    let r = c.cmd("SEARCH ALL");
    assert!(r.ok() && r.has("* SEARCH 1 2"), "{r:?}");
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn saved_result_only_where_the_grammar_has_a_set() {
    let s = server().start();
    let mut c = s.alice();
    for subject in ["costs $5", "plain", "costs $6"] {
        assert!(c.append("INBOX", "()", &message(subject, "x")).ok());
    }
    assert!(c.cmd("SELECT INBOX").ok());
    assert!(c.cmd("SEARCH RETURN (SAVE) SUBJECT plain").ok());
    // `SUBJECT $` searches for a dollar sign.
    let r = c.cmd("SEARCH SUBJECT $");
    assert!(r.has("* SEARCH 1 3"), "{r:?}");
    // The saved set where the grammar has one: message numbers as a key,
    // also in UID SEARCH; UIDs after the key UID and in UID FETCH.
    let r = c.cmd("SEARCH $");
    assert!(r.has("* SEARCH 2"), "{r:?}");
    let r = c.cmd("UID SEARCH UID $");
    assert!(r.has("* SEARCH 2"), "{r:?}");
    let r = c.cmd("UID FETCH $ (FLAGS)");
    assert!(r.has("* 2 FETCH") && r.untagged("").len() == 1, "{r:?}");
    // Saved results survive an expunge of another message: message
    // numbers shift, UIDs do not.
    assert!(c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok());
    assert!(c.cmd("EXPUNGE").ok());
    let r = c.cmd("SEARCH $");
    assert!(r.has("* SEARCH 1"), "{r:?}");
    let r = c.cmd("FETCH $ (UID)");
    assert!(r.has("* 1 FETCH (UID 2)"), "{r:?}");
    // An empty saved result: a search key that matches nothing, and
    // nothing to do for the other commands.
    assert!(c.cmd("SEARCH RETURN (SAVE) SUBJECT nomatch").ok());
    let r = c.cmd("SEARCH OR $ SUBJECT costs");
    assert!(r.has("* SEARCH 2"), "{r:?}");
    let r = c.cmd("UID SEARCH UID $");
    assert!(r.ok() && r.has("* SEARCH") && !r.has("* SEARCH 2"), "{r:?}");
    assert!(c.cmd("COPY $ INBOX").ok());
    // A mailbox named `$` is a mailbox name, not the saved result (this
    // answered "OK Nothing to do" and did nothing).
    let r = c.cmd("CREATE $");
    assert!(r.no() && r.tagged().contains("[NONEXISTENT]"), "{r:?}");
    let r = c.cmd("STATUS $ (MESSAGES)");
    assert!(r.no(), "{r:?}");
}

/// Writes `n` messages of about `size` bytes straight into cur/, with the
/// sizes in their names as tern and Dovecot write them.
fn big_messages(s: &Server, n: usize, size: usize) {
    let cur = s.maildir("alice").join("cur");
    std::fs::create_dir_all(&cur).unwrap();
    let line = "x".repeat(99) + "\n";
    for i in 0..n {
        let mut m = format!("Subject: big {i}\n\n").into_bytes();
        while m.len() < size {
            m.extend_from_slice(line.as_bytes());
        }
        let lines = m.iter().filter(|&&b| b == b'\n').count();
        let name = format!(
            "17000000{i:02}.M1P1.big,S={},W={}:2,S",
            m.len(),
            m.len() + lines
        );
        std::fs::write(cur.join(name), &m).unwrap();
    }
}

#[test]
fn large_fetch_holds_bytes_not_messages() {
    // 40 messages of 4 MB, each read whole (none sent from its file): a
    // FETCH 1:* BODY[] read the first 128 messages at once whatever their
    // size (185 MB of server memory for these 160 MB).
    let s = server()
        .config("[limits]\nfetch_job_bytes = 8388608\nstream_literal_bytes = 1099511627776")
        .start();
    big_messages(&s, 40, 4 << 20);
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    let before = s.peak_rss_kib();
    let r = c.cmd("FETCH 1:* (BODY.PEEK[])");
    assert!(r.ok(), "{}", r.tagged());
    assert_eq!(r.untagged("").len(), 40);
    let grown = s.peak_rss_kib().saturating_sub(before);
    // Two jobs of at most 8 MiB of messages, each read and converted to
    // CRLF once, and what waits for the socket: 67 MB measured, against
    // 178 MB with jobs cut by count alone.
    assert!(grown < 100 * 1024, "peak grew by {grown} KiB");
}

#[test]
fn a_fifo_in_cur_never_hangs_a_session() {
    // Another program left a FIFO where a message should be: opening it
    // for reading would wait for a writer forever.
    let s = server().start();
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("real", "needle")).ok());
    let fifo = s
        .maildir("alice")
        .join("cur")
        .join("1700000099.M9P9.fifo:2,");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("FETCH 1:* (BODY.PEEK[])");
    assert!(r.has("needle"), "{r:?}");
    let r = c.cmd("SEARCH BODY needle");
    assert!(
        r.tagged().contains("[SERVERBUG]") || r.has("* SEARCH 1"),
        "{r:?}"
    );
    assert!(c.cmd("NOOP").ok());
    assert!(s.alice().cmd("NOOP").ok());
}

#[test]
fn a_client_that_does_not_read_holds_little_server_memory() {
    // The client asks for 160 MB and reads nothing for a while: the server
    // stops building answers when the socket is full, so what it holds is
    // bounded by the FETCH jobs, not by the answer.
    // The messages go out from their files (the default for messages of
    // 1 MiB and more): 2.9 MB measured once they did, 67 MB before.
    let s = server().start();
    big_messages(&s, 40, 4 << 20);
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    let before = s.peak_rss_kib();
    c.send(b"f1 FETCH 1:* (BODY.PEEK[])\r\n");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let grown = s.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 24 * 1024,
        "peak grew by {grown} KiB while the client read nothing"
    );
    // Then everything arrives, in order.
    let r = c.read_until_tag("f1");
    assert!(r.ok(), "{}", r.tagged());
    assert_eq!(r.untagged("").len(), 40);
}

/// A message of mixed line ends (LF, CRLF, bare CR) with NUL bytes, about
/// `size` bytes, put straight into alice's `cur/`.
fn odd_message(s: &Server, size: usize) -> Vec<u8> {
    let cur = s.maildir("alice").join("cur");
    std::fs::create_dir_all(&cur).unwrap();
    let mut m = b"Subject: odd\n\n".to_vec();
    let mut i = 0u32;
    while m.len() < size {
        m.extend_from_slice(format!("line {i} of the body").as_bytes());
        m.extend_from_slice(match i % 5 {
            0 => b"\r\n".as_slice(),
            1 => b"\r".as_slice(),
            2 => b"\0\n".as_slice(),
            _ => b"\n".as_slice(),
        });
        i += 1;
    }
    std::fs::write(cur.join("1700000001.M1P1.odd:2,S"), &m).unwrap();
    m
}

/// What the client must receive for a stored message: CRLF line ends, NUL
/// sent as 0x80.
fn on_the_wire(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = 0u8;
    for &b in stored {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(if b == 0 { 0x80 } else { b });
        prev = b;
    }
    out
}

/// The bytes of the literal that follows `item` in a response.
fn literal_after(raw: &[u8], item: &str) -> Vec<u8> {
    let at = raw
        .windows(item.len())
        .position(|w| w == item.as_bytes())
        .unwrap_or_else(|| panic!("no {item} in the answer"));
    let rest = &raw[at + item.len()..];
    assert_eq!(rest[0], b'{', "{item} is not followed by a literal");
    let close = rest.iter().position(|&b| b == b'}').unwrap();
    let n: usize = std::str::from_utf8(&rest[1..close])
        .unwrap()
        .parse()
        .unwrap();
    rest[close + 3..close + 3 + n].to_vec()
}

#[test]
fn messages_sent_from_their_files_are_the_bytes_sent_from_memory() {
    // With every message sent from its file (threshold 1 byte) and with
    // none (threshold far above), each whole and partial answer is the same
    // bytes: CRLF across the pieces' edges, NUL as 0x80, partials at the
    // right offsets, a partial past the end empty.
    let stored_at = |threshold: u64| {
        let s = server()
            .config(&format!("[limits]\nstream_literal_bytes = {threshold}"))
            .start();
        let stored = odd_message(&s, 600 * 1024);
        let mut c = s.alice();
        assert!(c.cmd("SELECT INBOX").ok());
        let mut answers = Vec::new();
        for (cmd, item) in [
            ("FETCH 1 (BODY.PEEK[])", "BODY[] "),
            ("FETCH 1 (RFC822)", "RFC822 "),
            ("FETCH 1 (BODY.PEEK[]<262140.300000>)", "BODY[]<262140> "),
            ("FETCH 1 (BODY.PEEK[]<7.10>)", "BODY[]<7> "),
            ("FETCH 1 (BODY.PEEK[]<99999999.10>)", "BODY[]<99999999> "),
        ] {
            let r = c.cmd(cmd);
            assert!(r.ok(), "{cmd}: {}", r.tagged());
            answers.push(literal_after(&r.raw, item));
        }
        (stored, answers)
    };
    let (stored, from_files) = stored_at(1);
    let (_, from_memory) = stored_at(1 << 40);
    let wire = on_the_wire(&stored);
    assert_eq!(from_files[0], wire);
    assert_eq!(from_files[1], wire);
    assert_eq!(from_files[2], wire[262140..562140]);
    assert_eq!(from_files[3], wire[7..17]);
    assert!(from_files[4].is_empty());
    assert_eq!(from_files, from_memory);
}

#[test]
fn one_huge_message_is_sent_without_being_held() {
    // 48 MB in one message: sent from the file in pieces, the server's
    // peak grows by a few pieces, not by the message (it grew by more than
    // three times the message, 149 MB, when it was read whole and
    // converted to CRLF; 1.7 MB measured now).
    let s = server().start();
    big_messages(&s, 1, 48 << 20);
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    let before = s.peak_rss_kib();
    let r = c.cmd("FETCH 1 (BODY.PEEK[])");
    assert!(r.ok(), "{}", r.tagged());
    let body = literal_after(&r.raw, "BODY[] ");
    assert!(body.len() > 48 << 20);
    assert!(body.starts_with(b"Subject: big 0\r\n\r\n"));
    let grown = s.peak_rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "peak grew by {grown} KiB");
}

/// A message of CRLF line ends whose second part is binary content with
/// NUL, bare LF, bare CR and CR CR LF: what LF storage cannot give back.
fn binary_message() -> (Vec<u8>, Vec<u8>) {
    let content: Vec<u8> = b"\x00one\ntwo\rthree\r\r\nfour\x00".to_vec();
    let mut m = b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
text part\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    m.extend_from_slice(&content);
    m.extend_from_slice(b"\r\n--b--\r\n");
    (m, content)
}

#[test]
fn binary_content_appended_comes_back_byte_for_byte() {
    // RFC 3516: an APPEND of binary content (literal8) is kept as sent, so
    // BINARY[2] is the very bytes, and BODY[] and RFC822.SIZE agree with
    // what was sent (LF storage turned every bare LF into CRLF before).
    let s = server().start();
    let (msg, content) = binary_message();
    let mut c = s.alice();
    c.send(format!("b1 APPEND INBOX ~{{{}+}}\r\n", msg.len()).as_bytes());
    c.send(&msg);
    c.send(b"\r\n");
    let r = c.read_until_tag("b1");
    assert!(r.ok(), "{r:?}");
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("FETCH 1 (RFC822.SIZE BINARY.SIZE[2] BINARY.PEEK[2])");
    assert!(r.ok(), "{r:?}");
    assert!(r.has(&format!("RFC822.SIZE {}", msg.len())), "{r:?}");
    assert!(r.has(&format!("BINARY.SIZE[2] {}", content.len())), "{r:?}");
    let at = r
        .raw
        .windows(11)
        .position(|w| w == b"BINARY[2] ~")
        .expect("literal8");
    let rest = &r.raw[at + 10..];
    let open = format!("~{{{}}}\r\n", content.len());
    assert!(
        rest.starts_with(open.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(rest)
    );
    assert_eq!(&rest[open.len()..open.len() + content.len()], &content[..]);
    // BODY[] is the message as sent, NUL sent as 0x80 as always.
    let r = c.cmd("FETCH 1 (BODY.PEEK[])");
    let body = literal_after(&r.raw, "BODY[] ");
    let expect: Vec<u8> = msg.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    assert_eq!(body, expect);
    // Sent from the file in pieces too.
    let s2 = server()
        .config("[limits]\nstream_literal_bytes = 1")
        .start();
    let mut c = s2.alice();
    c.send(format!("b1 APPEND INBOX ~{{{}+}}\r\n", msg.len()).as_bytes());
    c.send(&msg);
    c.send(b"\r\n");
    assert!(c.read_until_tag("b1").ok());
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("FETCH 1 (BODY.PEEK[])");
    assert_eq!(literal_after(&r.raw, "BODY[] "), expect);
    // And a message a script writes with bare LFs is still stored and sent
    // as before: LF on disk, CRLF on the wire.
    let lf = b"Subject: lf\n\nline one\nline two\n";
    assert!(c.append("INBOX", "()", lf).ok());
    let r = c.cmd("FETCH 2 (RFC822.SIZE BODY.PEEK[])");
    assert!(r.has("RFC822.SIZE 35"), "{r:?}");
    assert_eq!(
        literal_after(&r.raw, "BODY[] "),
        b"Subject: lf\r\n\r\nline one\r\nline two\r\n"
    );
}

#[test]
fn keywords_are_capped_per_mailbox_and_announced_once_per_command() {
    let s = server().config("[limits]\nmax_keywords = 50").start();
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("k", "x")).ok());
    assert!(c.cmd("SELECT INBOX").ok());
    let list = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("kw{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // 40 new keywords: one FLAGS and one PERMANENTFLAGS for all of them.
    let r = c.cmd(&format!("STORE 1 +FLAGS ({})", list(0, 40)));
    assert!(r.ok(), "{}", r.tagged());
    assert_eq!(r.untagged("FLAGS (").len(), 1, "{:?}", r.lines);
    assert_eq!(r.untagged("OK [PERMANENTFLAGS").len(), 1);
    assert!(r.untagged("FLAGS (")[0].contains("kw39"));
    // Twenty more would make 60: refused, nothing changed.
    let r = c.cmd(&format!("STORE 1 +FLAGS ({})", list(40, 20)));
    assert!(r.no() && r.tagged().contains("[LIMIT]"), "{}", r.tagged());
    let r = c.cmd("FETCH 1 (FLAGS)");
    assert!(!r.has("kw40"), "{r:?}");
    // The same cap for APPEND; keywords already there are no new ones.
    let r = c.append("INBOX", &format!("({})", list(40, 20)), &message("k2", "x"));
    assert!(r.no() && r.tagged().contains("[LIMIT]"), "{}", r.tagged());
    assert!(c
        .append("INBOX", &format!("({})", list(0, 30)), &message("k3", "x"))
        .ok());
    assert!(c.cmd(&format!("STORE 1 -FLAGS ({})", list(0, 40))).ok());
}

#[test]
fn thousands_of_new_keywords_cost_little_memory() {
    // Three lines of 8,000 new keywords each peaked at 4.0 GB: each new
    // keyword wrote a FLAGS line listing all of them. Now the cap refuses
    // them at once.
    let s = server().start();
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("k", "x")).ok());
    assert!(c.cmd("SELECT INBOX").ok());
    let before = s.peak_rss_kib();
    for round in 0..3 {
        let kws: Vec<String> = (0..8000).map(|i| format!("r{round}k{i}")).collect();
        let r = c.cmd(&format!("STORE 1 +FLAGS.SILENT ({})", kws.join(" ")));
        assert!(r.no() && r.tagged().contains("[LIMIT]"), "{}", r.tagged());
    }
    let grown = s.peak_rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "peak grew by {grown} KiB");
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn a_file_name_with_a_line_end_never_reaches_the_uid_list() {
    // Such a name written raw into courierimapuiddb injected a line (a UID
    // 4,000,000 entry, for one).
    let s = server().log("warn").start();
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("real", "x")).ok());
    let cur = s.maildir("alice").join("cur");
    std::fs::write(
        cur.join("1700000002.M1P1.h\n4000000 evil:2,"),
        b"Subject: e\n\nx\n",
    )
    .unwrap();
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    let db = std::fs::read_to_string(s.maildir("alice").join("courierimapuiddb")).unwrap();
    assert_eq!(db.lines().count(), 2, "{db}");
    assert!(!db.contains("4000000"), "{db}");
    assert!(c.append("INBOX", "()", &message("next", "x")).ok());
    let r = c.cmd("UID FETCH 1:* (UID)");
    assert_eq!(r.untagged("").len(), 2, "{r:?}");
    assert!(s.log().contains("line end"), "{}", s.log());
}

#[test]
fn a_message_file_cut_short_while_it_is_sent_ends_the_connection() {
    // The literal's length is announced before its bytes are read from the
    // file; a file rewritten shorter meanwhile (which Maildir forbids, but
    // a careless program does) must not be filled up with made-up bytes
    // that the client would keep as the message: the connection ends.
    let s = server().log("error").start();
    big_messages(&s, 2, 16 << 20);
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    c.send(b"f1 FETCH 1:2 (BODY.PEEK[])\r\n");
    // The server counts both while the client reads nothing, and blocks
    // on the full socket while sending the first.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cur = s.maildir("alice").join("cur");
    let second = std::fs::read_dir(&cur)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("1700000001"))
        .unwrap();
    std::fs::write(&second, b"Subject: cut\n\nshort\n").unwrap();
    let (got, closed) = c.read_to_close();
    assert!(closed, "the connection stayed open");
    assert!(
        !got.windows(6).any(|w| w == b"f1 OK "),
        "the FETCH completed"
    );
    // The first message came whole before the end.
    assert!(got.len() > 16 << 20, "{} bytes", got.len());
    assert!(s.log().contains("shorter than announced"), "{}", s.log());
    // Others are not affected.
    assert!(s.alice().cmd("SELECT INBOX").ok());
}

/// A small tmpfs mounted at a path for as long as it lives (root only, as
/// CI runs).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount tmpfs at {} (the tests run as root)",
            at.display()
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_told_as_such_and_the_session_goes_on() {
    // ENOSPC while an APPEND is written: NO [LIMIT] saying the disk is
    // full (it was [SERVERBUG] "internal error"), the session goes on, and
    // what was stored before is still there.
    let s = server().start();
    let _disk = SmallDisk::mount(&s.path().join("mail/alice"), "1m");
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("small", "fits")).ok());
    let big = {
        let mut m = message("big", "");
        m.extend(std::iter::repeat_n(b'x', 2 << 20));
        m.extend_from_slice(b"\r\n");
        m
    };
    let r = c.append("INBOX", "()", &big);
    assert!(r.no() && r.tagged().contains("[LIMIT]"), "{}", r.tagged());
    assert!(r.tagged().contains("Disk full"), "{}", r.tagged());
    assert!(c.cmd("NOOP").ok());
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    // Nothing of the failed message is left in tmp/.
    let left = std::fs::read_dir(s.maildir("alice").join("tmp"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
    // A delivery arrives, then the disk fills up: INBOX still opens, with
    // what has UIDs and a warning (before, the lock file could not be
    // written and SELECT failed); once there is room the new mail shows.
    assert!(c.cmd("UNSELECT").ok());
    std::fs::write(
        s.maildir("alice").join("new/1700000100.M1P1.mta"),
        message("while full", "z"),
    )
    .unwrap();
    let filler = s.path().join("mail/alice/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        let _ = f.sync_all();
    }
    let r = c.cmd("SELECT INBOX");
    assert!(r.ok(), "{r:?}");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    assert!(r.has("* NO [ALERT]") && r.has("disk is full"), "{r:?}");
    std::fs::remove_file(&filler).unwrap();
    let r = c.cmd("NOOP");
    assert!(
        r.has("* 2 EXISTS"),
        "the new message once there is room: {r:?}"
    );
    let r = c.cmd("FETCH 2 BODY.PEEK[TEXT]");
    assert!(r.has("z"), "{r:?}");
}
