//! The Dovecot differential: every message of `shared/corpus` (the CPython
//! email samples and generated realistic mail) is stored in tern and in
//! Dovecot 2.3 from Debian's packages (`shared/oracle/dovecot.sh`), and the
//! answers to FETCH of ENVELOPE, BODY, BODYSTRUCTURE, body sections and
//! their BINARY (decoded) forms, and to SORT and THREAD, must be
//! byte-identical. The differences kept on purpose are listed in [`KEPT`]
//! and next to the BINARY comparison, and explained in docs/compatibility.md.
//! Fails (never skips) when Dovecot cannot run.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// (Message-ID, FETCH item) pairs where tern answers differently on
/// purpose; docs/compatibility.md says why.
const KEPT: &[(&str, &str)] = &[
    // "Content-Type: text" (no subtype): RFC 2045 §5.2 makes it text/plain;
    // Dovecot answers an empty type and subtype.
    ("<msg_14.14@samples.example.com>", "BODYSTRUCTURE"),
    ("<msg_14.14@samples.example.com>", "BODY"),
];

const ITEMS: &[&str] = &[
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822.SIZE",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[1.1]",
    "BODY.PEEK[2.1]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.1.TEXT]",
    "BODY.PEEK[1.HEADER]",
    "BODY.PEEK[1.1.MIME]",
    "BODY.PEEK[1.2.MIME]",
    "BODY.PEEK[1.1.HEADER]",
    "BODY.PEEK[1.1.1]",
    "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT MESSAGE-ID)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED DATE)]",
    "BODY.PEEK[]<10.60>",
    "BODY.PEEK[1]<3.40>",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[3]",
    "BODY.PEEK[1.2]",
    "BODY.PEEK[1.TEXT]",
    "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[1.HEADER.FIELDS (CONTENT-TYPE)]",
    "BODY.PEEK[2.HEADER.FIELDS.NOT (FROM)]",
    "BODY.PEEK[HEADER.FIELDS (X-NONEXISTENT)]",
    "BODY.PEEK[TEXT]<0.100>",
    "BODY.PEEK[HEADER]<5.20>",
    "RFC822.HEADER",
    // Sets \Seen: the FLAGS it adds must stand where Dovecot puts them.
    "RFC822.TEXT",
];

/// RFC 3516 items: the decoded content of base64 and quoted-printable parts
/// and its size. Dovecot drops the connection on a part whose base64 is
/// broken; tern answers the bytes decoded up to the damage (see
/// docs/compatibility.md), so those answers are checked only to be OK.
const BINARY_ITEMS: &[&str] = &[
    "BINARY.PEEK[1]",
    "BINARY.PEEK[2]",
    "BINARY.PEEK[3]",
    "BINARY.PEEK[1.1]",
    "BINARY.PEEK[2.1]",
    "BINARY.SIZE[1]",
    "BINARY.SIZE[2]",
    "BINARY.SIZE[2.1]",
    "BINARY.PEEK[2]<0.30>",
    "BINARY.PEEK[]",
    "BINARY.SIZE[]",
    // Text specifiers: outside RFC 3516's grammar, accepted by Dovecot.
    "BINARY.PEEK[TEXT]",
    "BINARY.PEEK[1.MIME]",
    "BINARY.PEEK[2.HEADER]",
    "BINARY.PEEK[2.TEXT]",
    "BINARY.SIZE[TEXT]",
];

const SORTS: &[&str] = &[
    "(ARRIVAL)",
    "(DATE)",
    "(REVERSE DATE)",
    "(SUBJECT)",
    "(FROM)",
    "(TO)",
    "(CC)",
    "(SIZE)",
    "(REVERSE SIZE SUBJECT)",
    "(DISPLAYFROM)",
    "(DISPLAYTO)",
];

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// A private Dovecot on free ports, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Dovecot {
    dir: PathBuf,
    pub(crate) imap: SocketAddr,
    pop3: u16,
    namespace: &'static str,
}

/// A port nothing listens on now, for a server a test starts on a port it
/// must know beforehand (a database, Dovecot, a proxy's control port).
///
/// Taken from below the kernel's ephemeral range: a port that `bind(0)`
/// handed out and that was released again can be handed out once more to
/// the next listener on port 0 (tern's own listeners among them), which
/// then made the server that was to bind it exit ("address in use"; seen
/// in CI as a proxy refusing connections).
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(12_000, 65_000);
    let span = low - 10_000;
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + (seed.wrapping_add(n.wrapping_mul(104_729)) % span);
        let port = u16::try_from(port).unwrap();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

impl Dovecot {
    fn cmd(&self, action: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(shared().join("oracle/dovecot.sh"))
            .arg(action)
            .env("HX_DIR", &self.dir)
            .env("HX_NAMESPACE", self.namespace)
            .env("HX_IMAP_PORT", self.imap.port().to_string())
            .env("HX_POP3_PORT", self.pop3.to_string());
        c
    }

    fn start() -> Dovecot {
        Self::start_with("courier")
    }

    /// Dovecot with its namespace as `HX_NAMESPACE` says: `courier`
    /// (`INBOX.`) or `default` (no prefix).
    pub(crate) fn start_with(namespace: &'static str) -> Dovecot {
        // Outside any private temporary directory: Dovecot's mail processes
        // run as another user and must reach it.
        // One directory per instance: tests of this file run side by side.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tern-diff-dovecot-{}-{n}", std::process::id()));
        let d = Dovecot {
            dir,
            imap: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            pop3: free_port(),
            namespace,
        };
        let out = d.cmd("start").arg("plain").output().unwrap();
        assert!(
            out.status.success(),
            "Dovecot (the differential's oracle) did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }
}

impl Dovecot {
    /// A user's Maildir (`alice` or `bob`, password `secret`).
    pub(crate) fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("mail").join(user).join("Maildir")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.cmd("stop").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The corpus as separate messages (CRLF), from an mboxrd written by the
/// corpus generator: the CPython samples and 100 generated messages.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mbox = dir.join("corpus.mbox");
    let st = Command::new("python3")
        .arg(shared().join("corpus/make_test_mbox.py"))
        .arg(&mbox)
        .args(["--count", "100", "--seed", "1", "--samples-dir"])
        .arg(shared().join("corpus/python-email"))
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&mbox).unwrap();
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(m) = cur.take() {
                msgs.push(m);
            }
            cur = Some(Vec::new());
            continue;
        }
        let Some(m) = cur.as_mut() else { continue };
        // mboxrd: one '>' less before "From ".
        let unquoted = line.strip_prefix(b">").filter(|rest| {
            let r = rest.iter().position(|&b| b != b'>').unwrap_or(rest.len());
            rest[r..].starts_with(b"From ")
        });
        m.extend_from_slice(unquoted.unwrap_or(line));
    }
    if let Some(m) = cur {
        msgs.push(m);
    }
    // The separator's blank line belongs to the mbox, not the message.
    for m in &mut msgs {
        if m.ends_with(b"\r\n\r\n") {
            m.truncate(m.len() - 2);
        }
    }
    msgs
}

/// Hand-written messages for the corners the corpus does not reach: source
/// routes, comments and groups in address fields; a message inside a
/// message inside a message; a multipart/digest whose parts default to
/// message/rfc822; a boundary parameter folded over two lines.
fn edge_cases() -> Vec<Vec<u8>> {
    let texts = [
        "From: <@relay.example,@hop.example:route-user@example.org>\n\
         To: team: one@example.net, two (the second) @ example.net;, Solo <solo@example.com>\n\
         Cc: carol@example.com (Carol Comment)\n\
         Sender: (only a comment) <s@example.com>\n\
         Reply-To:\n\
         Subject: edge addresses\n\
         Date: Tue, 3 Mar 2020 10:00:00 +0100\n\
         Message-ID: <edge-1@tern.test>\n\
         \n\
         body of edge one\n",
        "From: outer@example.org\n\
         Date: Wed, 4 Mar 2020 10:00:00 +0100\n\
         Message-ID: <edge-2@tern.test>\n\
         Mime-Version: 1.0\n\
         Content-Type: message/rfc822\n\
         \n\
         From: middle@example.org\n\
         Mime-Version: 1.0\n\
         Content-Type: message/rfc822\n\
         \n\
         From: inner@example.org\n\
         Subject: innermost\n\
         \n\
         the innermost text\n",
        "From: digest@example.org\n\
         Message-ID: <edge-3@tern.test>\n\
         Mime-Version: 1.0\n\
         Content-Type: message/rfc822\n\
         \n\
         From: list@example.org\n\
         Subject: the digest\n\
         Content-Type: multipart/digest; boundary=\"dg\"\n\
         \n\
         before the first part\n\
         \n\
         --dg \n\
         \n\
         From: first@example.com\n\
         Subject: first\n\
         \n\
         first body\n\
         \n\
         --dg\n\
         X-Part: second\n\
         \n\
         From: second@example.com\n\
         Subject: second\n\
         \n\
         second body\n\
         \n\
         --dg--\n\
         \n\
         after the last part\n",
        "From: folded@example.org\n\
         Message-ID: <edge-4@tern.test>\n\
         Mime-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"two\n words\"\n\
         \n\
         prologue\n\
         \n\
         --two words\n\
         Content-Type: text/x-own; charset=us-ascii\n\
         \n\
         own text\n\
         \n\
         --two words\n\
         Content-Type: message/rfc822\n\
         \n\
         From: sub@example.org\n\
         Subject: sub\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\n\
         \n\
         --alt\n\
         Content-Type: text/html\n\
         \n\
         <p>html</p>\n\
         \n\
         --alt\n\
         Content-Type: text/plain\n\
         \n\
         plain\n\
         \n\
         --alt--\n\
         \n\
         --two words--\n\
         epilogue\n",
        "From: J.Smith <js@example.org>, Single <s@example.org>\n\
         To: undisclosed-recipients:;\n\
         Cc: @nolocal.example, Only Name, localonly\n\
         Bcc: \"say \\\"hi\\\"\" <q@example.org>, =?utf-8?q?J=C3=B6rg_M?= <j@example.org>\n\
         Message-ID: <edge-5@tern.test>\n\
         Subject: more addresses\n\
         \n\
         body of edge five\n",
    ];
    texts
        .iter()
        .map(|t| t.replace('\n', "\r\n").into_bytes())
        .collect()
}

fn fill(addr: SocketAddr, msgs: &[Vec<u8>]) -> Client {
    let mut c = Client::plain(addr);
    assert!(c.cmd("LOGIN alice secret").ok());
    let _ = c.cmd("DELETE INBOX.diff");
    assert!(c.cmd("CREATE INBOX.diff").ok());
    for m in msgs {
        let r = c.append("INBOX.diff", "() \"01-Jan-2024 10:00:00 +0000\"", m);
        assert!(r.ok(), "{r:?}");
    }
    assert!(c.cmd("SELECT INBOX.diff").ok());
    c
}

/// The untagged lines of a response (literals inline).
fn untagged(r: &Resp) -> String {
    r.lines[..r.lines.len() - 1].join("\n")
}

fn message_id(m: &[u8]) -> String {
    let text = String::from_utf8_lossy(m);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("Message-ID")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn fetch_sort_and_thread_answer_as_dovecot_does() {
    let dovecot = Dovecot::start();
    let s = server().start();
    let mut msgs = corpus(s.path());
    assert!(msgs.len() >= 140, "corpus too small: {}", msgs.len());
    msgs.extend(edge_cases());
    let mut d = fill(dovecot.imap, &msgs);
    let mut t = fill(s.imap, &msgs);
    let mut diffs = Vec::new();
    for item in ITEMS {
        for (i, m) in msgs.iter().enumerate() {
            let cmd = format!("FETCH {} ({item})", i + 1);
            let (a, b) = (t.cmd(&cmd), d.cmd(&cmd));
            assert!(a.ok(), "{a:?}");
            let key = item.split(['.', '[']).next().unwrap_or(item);
            let kept = KEPT
                .iter()
                .any(|(id, it)| *id == message_id(m) && *it == key);
            if untagged(&a) != untagged(&b) && !kept {
                diffs.push(format!(
                    "{cmd} ({}):\n  tern:    {}\n  Dovecot: {}",
                    message_id(m),
                    untagged(&a),
                    untagged(&b)
                ));
            }
        }
    }
    // BINARY: the same decoded bytes as Dovecot. Kept on purpose (see
    // docs/compatibility.md): tern sends a literal8 only when the data holds
    // NUL (RFC 3516 §4.3), Dovecot whenever it decoded something; tern
    // decodes what Dovecot refuses as invalid (RFC 2045 §6.7, §6.8); and
    // BINARY.SIZE is checked against the length of Dovecot's BINARY answer,
    // because Dovecot's own BINARY.SIZE of a multipart disagrees with it.
    let literal8_as_literal = |r: &Resp| untagged(r).replace("~{", "{");
    let status = |r: &Resp| r.tagged().split(' ').nth(1).unwrap_or("").to_owned();
    let mut compared = 0;
    let mut refused = 0;
    for item in BINARY_ITEMS {
        let (size_of, oracle_item) = match item.strip_prefix("BINARY.SIZE") {
            Some(sec) => (Some(sec), format!("BINARY.PEEK{sec}")),
            None => (None, item.to_string()),
        };
        for (i, m) in msgs.iter().enumerate() {
            let cmd = format!("FETCH {} ({item})", i + 1);
            let a = t.cmd(&cmd);
            let b = d.try_cmd(&format!("FETCH {} ({oracle_item})", i + 1));
            let refused_here = match &b {
                None => {
                    d = Client::plain(dovecot.imap);
                    assert!(d.cmd("LOGIN alice secret").ok());
                    assert!(d.cmd("SELECT INBOX.diff").ok());
                    true
                }
                Some(b) => b.tagged().contains("[PARSE]"),
            };
            if refused_here {
                // Dovecot refused or hung up on broken content: tern answers.
                assert!(a.ok() && a.lines.len() == 2, "{cmd}: {a:?}");
                refused += 1;
                continue;
            }
            let Some(b) = b else { continue };
            compared += 1;
            let expected = match size_of {
                None => literal8_as_literal(&b),
                Some(sec) => {
                    let body = b.lines[0].split_once("}").map(|(h, _)| h).unwrap_or("");
                    let n = body.rsplit('{').next().unwrap_or("0");
                    let n = if b.lines[0].ends_with(" NIL)") {
                        "0"
                    } else {
                        n
                    };
                    format!("* {} FETCH (BINARY.SIZE{sec} {n})", i + 1)
                }
            };
            if literal8_as_literal(&a) != expected || status(&a) != status(&b) {
                diffs.push(format!(
                    "{cmd} ({}):\n  tern:    {} / {}\n  Dovecot: {} / {}",
                    message_id(m),
                    untagged(&a),
                    a.tagged(),
                    expected,
                    b.tagged()
                ));
            }
        }
    }
    // Refusals are the exception, not a way around the comparison.
    assert!(
        refused * 50 < compared,
        "Dovecot refused {refused} of {} BINARY fetches",
        refused + compared
    );
    let mut commands: Vec<String> = Vec::new();
    for key in SORTS {
        for search in ["ALL", "FROM example", "NOT SUBJECT re", "TEXT invoice"] {
            commands.push(format!("SORT {key} UTF-8 {search}"));
        }
    }
    for alg in ["REFERENCES", "ORDEREDSUBJECT"] {
        for search in ["ALL", "SUBJECT re", "NOT FROM example", "TEXT the"] {
            commands.push(format!("THREAD {alg} UTF-8 {search}"));
        }
    }
    for cmd in [
        "SORT (SUBJECT DATE) UTF-8 ALL",
        "SORT (REVERSE ARRIVAL) UTF-8 ALL",
        "SORT (FROM REVERSE SUBJECT) US-ASCII ALL",
        "SEARCH RETURN (MIN MAX COUNT) BODY the",
        "SEARCH RETURN (ALL) TEXT invoice",
        "UID SEARCH RETURN () SUBJECT re",
        "SEARCH RETURN (COUNT) NOT ALL",
        "SEARCH CHARSET US-ASCII SUBJECT re",
        "SEARCH CHARSET ISO-8859-1 BODY the",
    ] {
        commands.push(cmd.to_owned());
    }
    // SEARCH over decoded text (RFC 2047 words, base64 and quoted-printable
    // bodies in their charsets), i;unicode-casemap, headers, sizes, dates.
    for key in [
        "BODY invoice",
        "TEXT MEETING",
        "SUBJECT re",
        "FROM example",
        "TO example",
        "CC a",
        "HEADER Content-Type multipart",
        "HEADER X-Mailer \"\"",
        "NOT BODY the",
        "OR SUBJECT fwd FROM bob",
        "LARGER 5000 SMALLER 50000",
        "SENTSINCE 1-Jan-2020",
        "SENTBEFORE 1-Jan-2005",
        "SENTON 17-Jul-1996",
        "BCC x",
        "FROM route-user@example.org",
        "FROM relay",
        "TO team",
        "TO two@example.net",
        "TO second",
        "CC \"Carol Comment <carol@\"",
        "CC comment",
        "FROM \"only a comment\"",
        "CC \"carol@example.com (Carol Comment)\"",
        "CC \"Carol Comment\"",
        "TO \"team: one\"",
        "TO \"team:one\"",
        "TO \"net;, Solo\"",
        "TO \"net, Solo\"",
        "FROM \"<@relay\"",
        "FROM \"@relay.example,@hop.example:route\"",
        "TO \"Solo <solo\"",
        "TO \"two@example.net, Solo\"",
        "FROM \"\\\"J.Smith\\\" <js\"",
        "FROM \"J.Smith <js\"",
        "FROM \"Single <s@\"",
        "FROM \"org>, Single\"",
        "TO \"undisclosed-recipients:;\"",
        "TO \"undisclosed-recipients: ;\"",
        "CC MISSING_MAILBOX",
        "CC \"<localonly@MISSING_DOMAIN>\"",
        "CC \"\\\"Only Name\\\" <MISSING\"",
        "BCC \"say \\\\\\\"hi\"",
        "BCC \"rg M <j@\"",
        "BCC \"<@r\"",
        "BODY \"\"",
        "TEXT \"\"",
        "SUBJECT \"\"",
        "HEADER Subject \"\"",
        "NOT HEADER X-Nonexistent \"\"",
        "HEADER Received \"from\"",
        "HEADER Content-Transfer-Encoding base64",
        "TEXT \"Content-Type\"",
        "TEXT boundary",
        "BODY boundary",
        "BODY \"Content-Transfer-Encoding\"",
        "TEXT \"message-id\"",
        "OR OR FROM a TO b CC c",
        "BODY \"multiple words here\"",
        "SUBJECT \"re: \"",
        "SUBJECT fwd",
        "FROM \"@\"",
        "TO \"<\"",
        "BODY \"=20\"",
        "BODY \"=\"",
        "LARGER 0",
        "SMALLER 1000",
        "SENTON 1-Jan-1970",
        "SENTBEFORE 2-Jan-1970",
    ] {
        commands.push(format!("SEARCH {key}"));
    }
    for text in [
        "Grüße",
        "GRÜSSE",
        "привет",
        "こんにちは",
        "καλημέρα",
        "NAÏVE CAFÉ",
        "שלום",
        "مرحبا",
    ] {
        for key in ["BODY", "TEXT", "SUBJECT"] {
            commands.push(format!(
                "SEARCH CHARSET UTF-8 {key} {{{}+}}\r\n{text}",
                text.len()
            ));
        }
    }
    // ESEARCH answers carry the command's tag, which differs.
    let untag = |r: &Resp| {
        let u = untagged(r);
        match (u.find("(TAG \""), u.find("\")")) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &u[..a], &u[b + 2..]),
            _ => u,
        }
    };
    for cmd in commands {
        let (a, b) = (t.cmd(&cmd), d.cmd(&cmd));
        if untag(&a) != untag(&b) {
            diffs.push(format!(
                "{cmd}:\n  tern:    {}\n  Dovecot: {}",
                untagged(&a),
                untagged(&b)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} answers differ from Dovecot's:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(60)
            .map(|d| d.chars().take(1500).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A Maildir that Dovecot served (with its default `pop3_uidl_format`,
/// UIDLs not saved in `dovecot-uidlist`) keeps Dovecot's POP3 UIDLs under
/// tern with `pop3.uidl_format = "%08Xu%08Xv"`, and its IMAP UIDs.
#[test]
fn pop3_uidls_of_a_dovecot_maildir_carry_over() {
    let dovecot = Dovecot::start();
    let mut d = Client::plain(dovecot.imap);
    assert!(d.cmd("LOGIN alice secret").ok());
    for i in 0..4 {
        let msg = format!("Subject: m{i}\r\nMessage-ID: <pop-{i}@tern.test>\r\n\r\nbody {i}\r\n");
        assert!(d.append("INBOX", "()", msg.as_bytes()).ok());
    }
    assert!(d.cmd("SELECT INBOX").ok());
    assert!(d.cmd("STORE 2 +FLAGS (\\Deleted)").ok());
    assert!(d.cmd("EXPUNGE").ok());
    let uids = |c: &mut Client| untagged(&c.cmd("FETCH 1:* (UID)"));
    let dovecot_uids = uids(&mut d);
    d.cmd("LOGOUT");
    let mut p = Pop::plain(format!("127.0.0.1:{}", dovecot.pop3).parse().unwrap());
    assert!(p.cmd("USER alice").starts_with("+OK"));
    assert!(p.cmd("PASS secret").starts_with("+OK"));
    let (_, dovecot_uidls) = p.multi("UIDL");
    p.cmd("QUIT");
    assert_eq!(
        dovecot_uidls.split(|&b| b == b'\n').count(),
        4,
        "3 messages listed"
    );

    let s = server().pop3("uidl_format = \"%08Xu%08Xv\"").start();
    let from = dovecot.dir.join("mail/alice/Maildir");
    let to = s.maildir("alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::copy(from.join("dovecot-uidlist"), to.join("dovecot-uidlist")).unwrap();
    let mut p = s.pop_alice();
    let (_, tern_uidls) = p.multi("UIDL");
    p.cmd("QUIT");
    assert_eq!(
        String::from_utf8_lossy(&tern_uidls),
        String::from_utf8_lossy(&dovecot_uidls)
    );
    let mut t = s.alice();
    assert!(t.cmd("SELECT INBOX").ok());
    assert_eq!(uids(&mut t), dovecot_uids);
}
