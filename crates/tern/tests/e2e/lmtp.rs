//! LMTP (RFC 2033): deliveries from the MTA into the recipients' INBOXes,
//! one answer per recipient, the quota honoured, IDLE sessions told.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

/// dave has Courier's quota field: 20 KiB, 3 messages.
const DAVE: &str = "dave:{PLAIN}davepw::::::quota=20480S,3C";

pub(crate) struct Lmtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Lmtp {
    fn connect(s: &Server) -> (Lmtp, String) {
        let tcp = TcpStream::connect(s.lmtp.expect("an LMTP listener")).unwrap();
        let mut l = Lmtp::over(tcp);
        let greeting = l.reply();
        (l, greeting)
    }

    /// An LMTP session on `tcp`, its greeting read and checked.
    pub(crate) fn connect_to(tcp: TcpStream) -> Lmtp {
        let mut l = Lmtp::over(tcp);
        let greeting = l.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        l
    }

    fn over(tcp: TcpStream) -> Lmtp {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Lmtp {
            r: BufReader::new(tcp.try_clone().unwrap()),
            w: tcp,
        }
    }

    /// One reply, its continuation lines joined with `\n`.
    pub(crate) fn reply(&mut self) -> String {
        let mut all = Vec::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            let more = line.as_bytes().get(3) == Some(&b'-');
            all.push(line);
            if !more {
                return all.join("\n");
            }
        }
    }

    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }
}

fn server_with_lmtp(extra: &str) -> Server {
    server()
        .users(DAVE)
        .config(&format!("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n{extra}"))
        .start()
}

#[test]
fn a_message_reaches_every_recipient_with_one_answer_each() {
    let s = server_with_lmtp("");
    // alice waits in IDLE: the delivery is announced at once.
    let mut idle = s.alice();
    assert!(idle.cmd("SELECT INBOX").ok());
    idle.send(b"i1 IDLE\r\n");
    assert!(idle.read_line().starts_with('+'));
    let (mut l, greeting) = Lmtp::connect(&s);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let caps = l.cmd("LHLO mx.example.org");
    assert!(
        caps.starts_with("250-")
            && caps.contains("PIPELINING")
            && caps.contains("ENHANCEDSTATUSCODES"),
        "{caps}"
    );
    assert!(caps.contains("SIZE "), "{caps}");
    assert_eq!(
        l.cmd("MAIL FROM:<sender@example.net> BODY=8BITMIME"),
        "250 2.1.0 OK"
    );
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l
        .cmd("RCPT TO:<nobody@example.org>")
        .starts_with("550 5.1.1"));
    assert_eq!(l.cmd("RCPT TO:<carol@example.org>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: via lmtp\r\nFrom: s@example.net\r\n\r\n..a line with a dot\r\nbody\r\n.\r\n");
    // One answer per accepted recipient, in order (RFC 2033 4.2).
    let a = l.reply();
    let c = l.reply();
    assert!(a.starts_with("250 2.0.0 <alice>"), "{a}");
    assert!(c.starts_with("250 2.0.0 <carol@example.org>"), "{c}");
    // The IDLE session sees it.
    let line = idle.read_line();
    assert!(line.contains("EXISTS"), "{line}");
    idle.send(b"DONE\r\n");
    idle.read_until_tag("i1");
    let r = idle.cmd("FETCH 1 BODY.PEEK[]");
    assert!(r.has("Return-Path: <sender@example.net>"), "{r:?}");
    assert!(r.has("Delivered-To: alice"), "{r:?}");
    assert!(
        r.has("\r\n.a line with a dot\r\nbody"),
        "unstuffed, CRLF: {r:?}"
    );
    let mut carol = s.login("carol@example.org", "c");
    assert!(carol.cmd("SELECT INBOX").ok());
    assert!(carol
        .cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        .has("via lmtp"));
    // Stored with LF line ends, as every Maildir program writes them.
    let cur = s.maildir("alice").join("cur");
    let new = s.maildir("alice").join("new");
    let file = std::fs::read_dir(&cur)
        .unwrap()
        .chain(std::fs::read_dir(&new).unwrap())
        .next()
        .unwrap()
        .unwrap()
        .path();
    let stored = std::fs::read(file).unwrap();
    assert!(!stored.contains(&b'\r'), "CR kept on disk");
    // A second message on the same connection, then QUIT.
    assert_eq!(l.cmd("MAIL FROM:<>"), "250 2.1.0 OK");
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: bounce\r\n\r\nx\r\n.\r\n");
    assert!(l.reply().starts_with("250 2.0.0"));
    assert!(l.cmd("QUIT").starts_with("221"));
    let r = idle.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 2"), "{r:?}");
}

#[test]
fn the_sequence_and_the_limits_are_enforced() {
    let s = server_with_lmtp("");
    let (mut l, _) = Lmtp::connect(&s);
    assert!(l.cmd("HELO x").starts_with("500"), "LMTP takes LHLO only");
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("503"), "before LHLO");
    assert!(l.cmd("LHLO").starts_with("501"));
    assert!(l.cmd("LHLO x").starts_with("250"));
    assert!(l.cmd("RCPT TO:<alice>").starts_with("503"), "before MAIL");
    assert!(l
        .cmd("MAIL FROM:<a@b> SIZE=999999999999")
        .starts_with("552 5.3.4"));
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("503"), "twice");
    assert!(l.cmd("DATA").starts_with("503"), "no recipient");
    assert!(l.cmd("RCPT TO:").starts_with("501"));
    assert!(l.cmd("BDAT 10 LAST").starts_with("500"));
    assert!(l.cmd("VRFY alice").starts_with("252"));
    assert!(l.cmd("RSET").starts_with("250"));
    assert!(l.cmd("NOOP").starts_with("250"));
    // A command line over the limit ends the connection, nothing more.
    // (The server may close before the line end is sent, or while it is:
    // the write may fail, the read then ends with a reset.)
    let _ = l.w.write_all(&vec![b'x'; 10_000]);
    let _ = l.w.write_all(b"\r\n");
    let mut rest = String::new();
    let _ = l.r.read_line(&mut rest);
    assert!(rest.is_empty(), "{rest}");
    // The server goes on.
    let (mut again, greeting) = Lmtp::connect(&s);
    assert!(greeting.starts_with("220"));
    assert!(again.cmd("QUIT").starts_with("221"));
}

#[test]
fn a_message_over_the_size_limit_is_refused_and_endless_data_cut_off() {
    let s = server()
        .config("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[limits]\nmax_message_size = 1048576")
        .start();
    let (mut l, _) = Lmtp::connect(&s);
    assert!(l.cmd("LHLO x").starts_with("250"));
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(l.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(l.cmd("DATA").starts_with("354"));
    let line = format!("{}\r\n", "z".repeat(998));
    for _ in 0..1100 {
        l.send(line.as_bytes());
    }
    l.send(b".\r\n");
    let r = l.reply();
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(l.cmd("NOOP").starts_with("250"), "the session goes on");
    // Data that never ends is cut off past twice the limit.
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("250"));
    assert!(l.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(l.cmd("DATA").starts_with("354"));
    let mut cut = false;
    for _ in 0..4000 {
        if l.w.write_all(line.as_bytes()).is_err() {
            cut = true;
            break;
        }
    }
    // Closed: the end of the stream or a reset, not a read that times out
    // while the server still reads.
    let mut rest = String::new();
    let closed = match l.r.read_line(&mut rest) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(cut || closed, "still reading after 4 MB: {rest}");
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").has("0 EXISTS"));
}

#[test]
fn over_quota_is_a_permanent_answer_and_other_recipients_still_get_it() {
    let s = server_with_lmtp("local_part_only = true");
    let (mut l, _) = Lmtp::connect(&s);
    assert!(l.cmd("LHLO x").starts_with("250"));
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("250"));
    // local_part_only: the domain is not part of the account name.
    assert_eq!(l.cmd("RCPT TO:<dave@example.org>"), "250 2.1.5 OK");
    assert_eq!(l.cmd("RCPT TO:<alice@example.org>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    let body = "y".repeat(30_000);
    l.send(format!("Subject: big\r\n\r\n{body}\r\n.\r\n").as_bytes());
    let d = l.reply();
    let a = l.reply();
    assert!(d.starts_with("552 5.2.2 <dave@example.org>"), "{d}");
    assert!(a.starts_with("250 2.0.0 <alice@example.org>"), "{a}");
    let mut dave = s.login("dave", "davepw");
    assert!(dave.cmd("SELECT INBOX").has("0 EXISTS"));
}

#[test]
fn deliveries_come_over_a_unix_socket_too() {
    // Postfix's `lmtp:unix:private/tern-lmtp`, as Dovecot's socket is used.
    let s = server()
        .config(
            "[lmtp]\nlisten = [\"127.0.0.1:0\"]\nsocket = \"lmtp.sock\"\nsocket_mode = \"0660\"",
        )
        .start();
    let path = s.path().join("lmtp.sock");
    let mut tries = 0;
    while !path.exists() && tries < 100 {
        std::thread::sleep(Duration::from_millis(20));
        tries += 1;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let sock = std::os::unix::net::UnixStream::connect(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    let mut w = sock;
    let mut line = String::new();
    let mut ask = |cmd: &str, r: &mut BufReader<std::os::unix::net::UnixStream>| -> String {
        w.write_all(cmd.as_bytes()).unwrap();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.trim_end().to_owned();
            }
        }
    };
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    assert!(ask("LHLO mx\r\n", &mut r).starts_with("250 "));
    assert!(ask("MAIL FROM:<a@b>\r\n", &mut r).starts_with("250"));
    assert!(ask("RCPT TO:<alice>\r\n", &mut r).starts_with("250"));
    assert!(ask("DATA\r\n", &mut r).starts_with("354"));
    let done = ask("Subject: over the socket\r\n\r\nx\r\n.\r\n", &mut r);
    assert!(done.starts_with("250 2.0.0 <alice>"), "{done}");
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    assert!(c
        .cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        .has("over the socket"));
}

/// A backend with an LMTP listener that takes XCLIENT from loopback, and a
/// server in front whose passwd-file sends dave there.
fn backend_and_front(dave_on_backend: &str) -> (Server, Server) {
    backend_and_front_with(dave_on_backend, "", "")
}

/// As [`backend_and_front`]; `before`: hosts dave's `mailhost` lists
/// ahead of the backend; `proxy`: more `[proxy]` settings of the front.
fn backend_and_front_with(dave_on_backend: &str, before: &str, proxy: &str) -> (Server, Server) {
    let backend = server()
        .users(dave_on_backend)
        .auth("login_trusted_networks = [\"127.0.0.0/8\"]\n")
        .config("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n")
        .log("info")
        .start();
    let front = server()
        .users(&format!(
            "dave:{{PLAIN}}davepw::::::mailhost={before}{}\n",
            backend.imap
        ))
        .config(&format!(
            "[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[proxy]\nlmtp_port = {}\nconnect_timeout_ms = 2000\n{proxy}",
            backend.lmtp.expect("the backend's LMTP").port()
        ))
        .start();
    (backend, front)
}

#[test]
fn a_recipient_another_server_holds_is_relayed_to_its_lmtp() {
    let (mut backend, front) = backend_and_front("dave:{PLAIN}davepw::::::quota=20480S,1C\n");
    // dave waits in IDLE on the backend: the relayed delivery reaches him.
    let mut idle = backend.login("dave", "davepw");
    assert!(idle.cmd("SELECT INBOX").ok());
    idle.send(b"i1 IDLE\r\n");
    assert!(idle.read_line().starts_with('+'));
    let (mut l, _) = Lmtp::connect(&front);
    let mta = l.w.local_addr().unwrap();
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
    assert_eq!(l.cmd("RCPT TO:<dave>"), "250 2.1.5 OK");
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: routed\r\n\r\n..dotted\r\nlast\r\n.\r\n");
    let d = l.reply();
    let a = l.reply();
    assert!(d.starts_with("250 2.0.0 <dave> Delivered"), "{d}");
    assert!(a.starts_with("250 2.0.0 <alice>"), "{a}");
    let line = idle.read_line();
    assert!(line.contains("EXISTS"), "{line}");
    idle.send(b"DONE\r\n");
    idle.read_until_tag("i1");
    let r = idle.cmd("FETCH 1 BODY.PEEK[]");
    assert!(r.has("Return-Path: <s@example.net>"), "{r:?}");
    assert!(r.has("Delivered-To: dave\r\n"), "{r:?}");
    assert!(
        r.has("\r\n\r\n.dotted\r\nlast\r\n"),
        "stuffing undone once: {r:?}"
    );
    assert!(
        !front.path().join("mail/dave").exists(),
        "written on the front server too"
    );
    // The backend logged the MTA's address (XCLIENT), not the front's.
    let log = backend.log();
    assert!(
        log.lines()
            .any(|l| l.contains("LMTP delivered") && l.contains(&mta.to_string())),
        "{mta}: {log}"
    );
    // The backend's answers are passed on: dave is now over his quota.
    assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
    assert_eq!(l.cmd("RCPT TO:<dave>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: second\r\n\r\nx\r\n.\r\n");
    let d = l.reply();
    assert!(d.starts_with("552 5.2.2"), "{d}");
    // The backend gone: dave's copy is kept by the MTA (451, at RCPT, as
    // the backend is asked then), alice's is stored.
    drop(idle);
    backend.terminate();
    assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
    let d = l.cmd("RCPT TO:<dave>");
    assert!(d.starts_with("451 4.4.1 <dave>"), "{d}");
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: third\r\n\r\nx\r\n.\r\n");
    let a = l.reply();
    assert!(a.starts_with("250 2.0.0 <alice>"), "{a}");
    assert!(
        !front.path().join("mail/dave").exists(),
        "written here when the backend was gone"
    );
}

/// dave's answer for one message given to `front`: at RCPT when it
/// refused him there, else after the data.
fn deliver_to_dave(front: &Server) -> String {
    let (mut l, _) = Lmtp::connect(front);
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
    let rcpt = l.cmd("RCPT TO:<dave>");
    if rcpt != "250 2.1.5 OK" {
        return rcpt;
    }
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    l.reply()
}

#[test]
fn a_relay_fails_over_to_the_next_host_and_only_in_the_clear_where_allowed() {
    // dave's first mailhost, 127.0.0.2, has no LMTP listening: the next,
    // the backend, takes the message.
    let (backend, front) =
        backend_and_front_with("dave:{PLAIN}davepw::::::\n", "127.0.0.2:143,", "");
    let d = deliver_to_dave(&front);
    assert!(d.starts_with("250 2.0.0 <dave>"), "{d}");
    let mut c = backend.login("dave", "davepw");
    assert!(c.cmd("STATUS INBOX (MESSAGES)").has("MESSAGES 1"));
    // A backend outside proxy.cleartext_networks gets no mail in the
    // clear: the MTA keeps it.
    let (backend, front) = backend_and_front_with(
        "dave:{PLAIN}davepw::::::\n",
        "",
        "cleartext_networks = [\"10.0.0.0/8\"]\n",
    );
    let d = deliver_to_dave(&front);
    assert!(d.starts_with("451 4.4.1 <dave>"), "{d}");
    let mut c = backend.login("dave", "davepw");
    assert!(c.cmd("STATUS INBOX (MESSAGES)").has("MESSAGES 0"));
}

#[test]
fn a_relay_fails_over_past_a_host_that_never_answers() {
    // dave's first mailhost, 127.0.0.2, takes connections on the LMTP port
    // and never greets (a host whose packets are dropped): the delivery
    // must still reach the next, the backend, within the connect timeout.
    let (backend, front) =
        backend_and_front_with("dave:{PLAIN}davepw::::::\n", "127.0.0.2:143,", "");
    let port = backend.lmtp.expect("the backend's LMTP").port();
    let _silent = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
    let d = deliver_to_dave(&front);
    assert!(d.starts_with("250 2.0.0 <dave>"), "no failover: {d}");
    let mut c = backend.login("dave", "davepw");
    assert!(c.cmd("STATUS INBOX (MESSAGES)").has("MESSAGES 1"));
}

#[test]
fn a_relay_loop_ends_with_a_temporary_answer() {
    // A server whose directory sends dave to 127.0.0.2, whose LMTP port
    // is this server's own: each hop relays to itself, XCLIENT TTL counts
    // down, and the last hop answers 451 4.4.6, passed back up.
    let mut s = server()
        .users("dave:{PLAIN}davepw::::::mailhost=127.0.0.2:143\n")
        .auth("login_trusted_networks = [\"127.0.0.0/8\"]\n")
        .config("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n")
        .start();
    let port = s.lmtp.expect("LMTP").port();
    let cfg_path = s.path().join("tern.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "[lmtp]\nlisten = [\"127.0.0.1:0\"]",
        &format!("[lmtp]\nlisten = [\"0.0.0.0:{port}\"]\n[proxy]\nlmtp_port = {port}"),
    );
    std::fs::write(&cfg_path, cfg).unwrap();
    s.restart();
    let d = deliver_to_dave(&s);
    assert!(d.starts_with("451 4.4.6"), "{d}");
    assert!(!s.path().join("mail/dave").exists());
}

#[test]
fn xclient_is_taken_from_trusted_relays_only() {
    // Not offered, and refused, to an address outside
    // auth.login_trusted_networks (the default: none).
    let s = server_with_lmtp("");
    let (mut l, _) = Lmtp::connect(&s);
    let caps = l.cmd("LHLO mx");
    assert!(!caps.contains("XCLIENT"), "{caps}");
    assert!(l.cmd("XCLIENT TTL=1").starts_with("550 5.7.0"));
    // A trusted relay says no hops are left: a recipient that would be
    // relayed gets 451 4.4.6 at RCPT; a local one is still delivered.
    let s = server()
        .users("frank:{PLAIN}fpw::::::mailhost=192.0.2.9:143\n")
        .auth("login_trusted_networks = [\"127.0.0.0/8\"]\n")
        .config("[lmtp]\nlisten = [\"127.0.0.1:0\"]\n")
        .start();
    let (mut l, _) = Lmtp::connect(&s);
    assert!(l.cmd("LHLO mx").contains("XCLIENT"));
    assert!(l.cmd("XCLIENT ADDR=bogus").starts_with("501"));
    // Answered with a new greeting; LHLO again before MAIL.
    assert!(l
        .cmd("XCLIENT TTL=1 ADDR=192.0.2.7 PORT=2525")
        .starts_with("220 "));
    assert!(l.cmd("MAIL FROM:<a@b>").starts_with("503"));
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<a@b>"), "250 2.1.0 OK");
    assert!(
        l.cmd("XCLIENT TTL=5").starts_with("503"),
        "inside a transaction"
    );
    assert!(l.cmd("RCPT TO:<frank>").starts_with("451 4.4.6"));
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    assert!(l.reply().starts_with("250 2.0.0 <alice>"));
}

#[test]
fn an_unreachable_directory_is_a_temporary_answer_at_rcpt() {
    // The passwd-file knows alice; anyone else is asked of an LDAP server
    // that is not there: 451, so the MTA keeps the mail (never 550).
    let s = server()
        .config(
            "[[auth.ldap]]\nuris = [\"ldap://127.0.0.1:1\"]\nbase = \"dc=x\"\nfilter = \"(uid=%u)\"\ntimeout_ms = 1000\n\
             [auth.ldap.attributes]\nmaildir = \"description\"\n\
             [lmtp]\nlisten = [\"127.0.0.1:0\"]\n",
        )
        .start();
    let (mut l, _) = Lmtp::connect(&s);
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<a@b>"), "250 2.1.0 OK");
    let r = l.cmd("RCPT TO:<zed@example.org>");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert_eq!(l.cmd("RCPT TO:<alice>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    assert!(l.reply().starts_with("250 2.0.0 <alice>"));
}

#[test]
fn a_file_at_the_socket_path_refuses_the_start() {
    // Not a stale socket: an operator's file, left alone, and no start.
    let s = server_with_lmtp("socket = \"lmtp.sock\"\n");
    let text = std::fs::read_to_string(s.path().join("tern.toml")).unwrap();
    assert!(text.contains("socket = \"lmtp.sock\""));
    std::fs::write(s.path().join("other.sock"), "keep me").unwrap();
    let bad = s.path().join("bad.toml");
    std::fs::write(&bad, text.replace("lmtp.sock", "other.sock")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.path().join("other.sock")).unwrap(),
        "keep me"
    );
}

/// How the fake LMTP backend of [`fake_backend`] misbehaves.
#[derive(Clone, Copy)]
enum Fake {
    /// Refuses DATA.
    RefusesData,
    /// Takes the data, answers for the first recipient, then hangs up.
    HangsUpAfterOneAnswer,
    /// Refuses erin at RCPT (its directory lacks her), stores dave's.
    KnowsOnlyDave,
}

/// A backend LMTP server of a few lines on 127.0.0.2 that takes one
/// connection, accepts every recipient and then misbehaves as `how` says:
/// its port, and the lines it was sent.
fn fake_backend(how: Fake) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = tcp.try_clone().unwrap();
        let mut r = BufReader::new(tcp);
        let mut seen = Vec::new();
        w.write_all(b"220 fake LMTP\r\n").unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return seen;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            seen.push(line.trim_end().to_owned());
            let reply: &[u8] = match verb.as_str() {
                "LHLO" => b"250-fake\r\n250-SIZE\r\n250 PIPELINING\r\n",
                "MAIL" => b"250 2.1.0 OK\r\n",
                "RCPT" if matches!(how, Fake::KnowsOnlyDave) && line.contains("<erin>") => {
                    b"550 5.1.1 <erin> User unknown here\r\n"
                }
                "RCPT" => b"250 2.1.5 OK\r\n",
                "DATA" => match how {
                    Fake::RefusesData => b"554 5.3.4 No data today\r\n",
                    Fake::KnowsOnlyDave => {
                        take_data(&mut w, &mut r);
                        b"250 2.0.0 <dave> stored\r\n"
                    }
                    Fake::HangsUpAfterOneAnswer => {
                        take_data(&mut w, &mut r);
                        w.write_all(b"250 2.0.0 first one stored\r\n").unwrap();
                        return seen;
                    }
                },
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n");
                    return seen;
                }
                _ => b"502 5.5.2 What?\r\n",
            };
            w.write_all(reply).unwrap();
        }
    });
    (port, t)
}

/// What the fake backend of [`storing_backend`] does after each message.
#[derive(Clone, Copy, PartialEq)]
enum AfterMessage {
    /// Waits for the next command.
    Waits,
    /// Closes the connection, as a backend restarting or timing out an
    /// idle client does.
    HangsUp,
    /// Sends a line no command asked for, and waits.
    Chatters,
}

/// A fake backend LMTP server on 127.0.0.2 that takes `connections`
/// connections one after the other and stores every message (one answer
/// per accepted recipient), then does as `after` says. Its port, and the
/// number of messages each connection carried.
fn storing_backend(
    connections: usize,
    after: AfterMessage,
) -> (u16, std::thread::JoinHandle<Vec<usize>>) {
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut carried = Vec::new();
        for _ in 0..connections {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut w = tcp.try_clone().unwrap();
            let mut r = BufReader::new(tcp);
            let (mut messages, mut rcpts) = (0, 0);
            w.write_all(b"220 fake LMTP\r\n").unwrap();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "LHLO" => w.write_all(b"250-fake\r\n250 PIPELINING\r\n").unwrap(),
                    "MAIL" => w.write_all(b"250 2.1.0 OK\r\n").unwrap(),
                    "RCPT" => {
                        rcpts += 1;
                        w.write_all(b"250 2.1.5 OK\r\n").unwrap();
                    }
                    "DATA" => {
                        take_data(&mut w, &mut r);
                        for _ in 0..std::mem::take(&mut rcpts) {
                            w.write_all(b"250 2.0.0 stored\r\n").unwrap();
                        }
                        messages += 1;
                        match after {
                            AfterMessage::Waits => {}
                            AfterMessage::HangsUp => break,
                            AfterMessage::Chatters => {
                                w.write_all(b"250 2.0.0 one more thing\r\n").unwrap()
                            }
                        }
                    }
                    _ => w.write_all(b"502 5.5.2 What?\r\n").unwrap(),
                }
            }
            carried.push(messages);
        }
        carried
    });
    (port, t)
}

#[test]
fn the_relay_keeps_its_connection_for_the_next_message() {
    // Three messages, each from its own MTA connection, go to the backend
    // over one relay connection: no connect, greeting, LHLO and XCLIENT
    // per message (as Postfix's connection cache saves them). The kept
    // connection is closed after its time (the fake's read then ends).
    let (port, fake) = storing_backend(1, AfterMessage::Waits);
    let front = front_to_fake(port);
    for _ in 0..3 {
        assert_eq!(deliver_to_dave(&front), "250 2.0.0 stored");
    }
    assert_eq!(fake.join().unwrap(), [3]);
}

#[test]
fn a_kept_connection_the_backend_closed_is_replaced_without_a_failure() {
    // The backend closes every connection after one message: the next
    // message finds its kept connection dead at MAIL, and goes over a new
    // one; the backend is not marked down for it (the third would then be
    // refused for the time of the mark).
    let (port, fake) = storing_backend(3, AfterMessage::HangsUp);
    let front = front_to_fake(port);
    for _ in 0..3 {
        assert_eq!(deliver_to_dave(&front), "250 2.0.0 stored");
    }
    assert_eq!(fake.join().unwrap(), [1, 1, 1]);
}

#[test]
fn a_kept_connection_with_unasked_bytes_is_not_reused() {
    // The backend sends a line after its answers: on that connection every
    // later answer would be one off (the next MAIL would take it, and a
    // refused DATA would pass for delivered). The next message goes over a
    // new connection instead, and each is answered as it should be.
    let (port, fake) = storing_backend(2, AfterMessage::Chatters);
    let front = front_to_fake(port);
    assert_eq!(deliver_to_dave(&front), "250 2.0.0 stored");
    // The line has arrived at the front before the next message.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(deliver_to_dave(&front), "250 2.0.0 stored");
    drop(front);
    assert_eq!(fake.join().unwrap(), [1, 1]);
}

/// The fake backend's side of DATA: `354`, then the message read to its
/// end line.
fn take_data(w: &mut TcpStream, r: &mut BufReader<TcpStream>) {
    w.write_all(b"354 go\r\n").unwrap();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
            return;
        }
    }
}

/// A front whose dave and erin live on the fake backend at `port`.
fn front_to_fake(port: u16) -> Server {
    server()
        .users(
            "dave:{PLAIN}davepw::::::mailhost=127.0.0.2:143\n\
             erin:{PLAIN}erinpw::::::mailhost=127.0.0.2:143\n",
        )
        .config(&format!(
            "[lmtp]\nlisten = [\"127.0.0.1:0\"]\n[proxy]\nlmtp_port = {port}\nconnect_timeout_ms = 2000\n"
        ))
        .start()
}

/// Delivers one message to dave and erin through `front`: their answers.
fn deliver_to_dave_and_erin(front: &Server) -> (String, String) {
    let (mut l, _) = Lmtp::connect(front);
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<s@example.net>"), "250 2.1.0 OK");
    assert_eq!(l.cmd("RCPT TO:<dave>"), "250 2.1.5 OK");
    assert_eq!(l.cmd("RCPT TO:<erin>"), "250 2.1.5 OK");
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    (l.reply(), l.reply())
}

#[test]
fn a_backend_that_refuses_the_data_has_its_answer_passed_on() {
    let (port, fake) = fake_backend(Fake::RefusesData);
    let front = front_to_fake(port);
    let (d, e) = deliver_to_dave_and_erin(&front);
    assert_eq!(d, "554 5.3.4 No data today");
    assert_eq!(e, "554 5.3.4 No data today");
    let seen = fake.join().unwrap();
    assert!(seen.iter().any(|l| l == "RCPT TO:<erin>"), "{seen:?}");
    assert!(seen.iter().any(|l| l == "DATA"), "{seen:?}");
}

#[test]
fn a_backend_lost_during_the_data_keeps_the_answers_it_gave() {
    // The backend stored the message for dave (its first answer) and hung
    // up before erin's: dave's 250 stands (a 451 would make the MTA
    // deliver to him twice), erin's is temporary, and nothing is sent to
    // another host after the data.
    let (port, fake) = fake_backend(Fake::HangsUpAfterOneAnswer);
    let front = front_to_fake(port);
    let (d, e) = deliver_to_dave_and_erin(&front);
    assert_eq!(d, "250 2.0.0 first one stored");
    assert!(e.starts_with("451 4.4.2 <erin>"), "{e}");
    let seen = fake.join().unwrap();
    assert_eq!(seen.iter().filter(|l| *l == "DATA").count(), 1, "{seen:?}");
}

#[test]
fn a_backends_refusal_of_a_recipient_comes_at_rcpt() {
    // The front's directory has erin on the backend; the backend's does
    // not: its 550 is the MTA's answer at RCPT (as Dovecot's LMTP proxy
    // gives it), so the MTA bounces her copy at once and sends the data
    // for dave alone.
    let (port, fake) = fake_backend(Fake::KnowsOnlyDave);
    let front = front_to_fake(port);
    let (mut l, _) = Lmtp::connect(&front);
    assert!(l.cmd("LHLO mx").starts_with("250"));
    assert_eq!(l.cmd("MAIL FROM:<s@example.net> SIZE=30"), "250 2.1.0 OK");
    assert_eq!(l.cmd("RCPT TO:<dave>"), "250 2.1.5 OK");
    assert_eq!(
        l.cmd("RCPT TO:<erin>"),
        "550 5.1.1 <erin> User unknown here"
    );
    assert!(l.cmd("DATA").starts_with("354"));
    l.send(b"Subject: x\r\n\r\nx\r\n.\r\n");
    assert_eq!(l.reply(), "250 2.0.0 <dave> stored");
    assert!(l.cmd("QUIT").starts_with("221"));
    let seen = fake.join().unwrap();
    // One connection for both, the MTA's SIZE passed on.
    assert!(
        seen.iter()
            .any(|l| l.starts_with("MAIL FROM:<s@example.net> SIZE=30")),
        "{seen:?}"
    );
}
