//! POP3: every command and error, over TCP, STLS and implicit TLS; UIDLs
//! kept from Courier; POP3 and IMAP on one mailbox.

use crate::harness::*;

/// Three messages with LF line ends, as an MTA delivers them; the second
/// has lines starting with dots, the third no final newline.
fn deliver_three(s: &Server) -> Vec<Vec<u8>> {
    let msgs: Vec<Vec<u8>> = vec![
        b"From: a@example.org\nSubject: one\n\nfirst body\nline 2\n".to_vec(),
        b"From: b@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\nafter\n".to_vec(),
        b"From: c@example.org\nSubject: three\n\nno final newline".to_vec(),
    ];
    for (i, m) in msgs.iter().enumerate() {
        s.deliver_raw("alice", &format!("100000000{i}.M1P1Q{i}.host"), m);
    }
    msgs
}

fn crlf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in m {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn numbers(body: &[u8]) -> Vec<(u32, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), v.to_owned())
        })
        .collect()
}

#[test]
fn pop3_commands_sizes_dot_stuffing_and_update() {
    let s = server().start();
    let msgs = deliver_three(&s);
    let mut p = s.pop();
    assert!(p.greeting.starts_with("+OK"), "{}", p.greeting);
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));

    // Sizes are exact octet counts with CRLF line ends.
    let sizes: Vec<usize> = msgs.iter().map(|m| crlf(m).len()).collect();
    let total: usize = sizes.iter().sum();
    assert_eq!(p.cmd("STAT"), format!("+OK 3 {total}"));
    let (st, body) = p.multi("LIST");
    assert!(st.starts_with("+OK"), "{st}");
    let list = numbers(&body);
    assert_eq!(list.len(), 3);
    for (i, (n, size)) in list.iter().enumerate() {
        assert_eq!(*n as usize, i + 1);
        assert_eq!(size, &sizes[i].to_string());
    }
    assert_eq!(p.cmd("LIST 2"), format!("+OK 2 {}", sizes[1]));
    assert!(p.cmd("LIST 4").starts_with("-ERR"));
    assert!(p.cmd("LIST 0").starts_with("-ERR"));
    assert!(p.cmd("LIST x").starts_with("-ERR"));

    // RETR gives the message byte for byte (CRLF, dots unstuffed by the
    // client); a message without a final newline gets one.
    for (i, m) in msgs.iter().enumerate() {
        let (st, body) = p.multi(&format!("RETR {}", i + 1));
        assert!(st.starts_with("+OK"), "{st}");
        let mut want = crlf(m);
        if !want.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&want)
        );
    }
    // TOP: the header, the blank line and n body lines.
    let (st, body) = p.multi("TOP 1 0");
    assert!(st.starts_with("+OK"), "{st}");
    assert_eq!(body, b"From: a@example.org\r\nSubject: one\r\n\r\n");
    let (_, body) = p.multi("TOP 2 2");
    assert_eq!(
        body,
        b"From: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n"
    );
    let (_, body) = p.multi("TOP 1 100");
    assert_eq!(body, crlf(&msgs[0]));
    assert!(p.cmd("TOP 1").starts_with("-ERR"));
    assert!(p.cmd("TOP 1 -1").starts_with("-ERR"));

    // UIDLs: unique, stable, and of Courier's form.
    let (_, body) = p.multi("UIDL");
    let uidls = numbers(&body);
    assert_eq!(uidls.len(), 3);
    for (_, u) in &uidls {
        assert!(u.starts_with("UID"), "{u}");
    }
    assert_ne!(uidls[0].1, uidls[1].1);
    assert_eq!(p.cmd("UIDL 3"), format!("+OK 3 {}", uidls[2].1));

    // DELE marks, RSET unmarks, QUIT removes.
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("DELE 2").starts_with("-ERR"));
    assert!(p.cmd("RETR 2").starts_with("-ERR"));
    assert!(p.cmd("LIST 2").starts_with("-ERR"));
    assert_eq!(p.cmd("STAT"), format!("+OK 2 {}", total - sizes[1]));
    let (_, body) = p.multi("LIST");
    assert_eq!(
        numbers(&body).iter().map(|x| x.0).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(p.cmd("RSET").starts_with("+OK"));
    assert_eq!(p.cmd("STAT"), format!("+OK 3 {total}"));
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("NOOP").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert!(p.closed());

    // Only message 1 is gone; the others keep their UIDLs.
    let mut p = s.pop_alice();
    let (_, body) = p.multi("UIDL");
    let after: Vec<String> = numbers(&body).into_iter().map(|x| x.1).collect();
    assert_eq!(after, vec![uidls[1].1.clone(), uidls[2].1.clone()]);
    let (_, body) = p.multi("RETR 1");
    assert!(String::from_utf8_lossy(&body).contains("Subject: dots"));
    p.cmd("QUIT");
}

#[test]
fn pop3_dropped_connection_deletes_nothing() {
    let s = server().start();
    deliver_three(&s);
    let mut p = s.pop_alice();
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    drop(p);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut p = s.pop_alice();
    assert!(p.cmd("STAT").starts_with("+OK 3 "));
}

#[test]
fn pop3_and_imap_see_one_mailbox() {
    let s = server().start();
    deliver_three(&s);
    let mut imap = s.alice();
    let r = imap.cmd("SELECT INBOX");
    assert!(r.has("* 3 EXISTS"), "{r:?}");
    let mut p = s.pop_alice();
    let (st, _) = p.multi("RETR 1");
    assert!(st.starts_with("+OK"));
    // RETR marked it seen; TOP does not.
    let (st, _) = p.multi("TOP 2 0");
    assert!(st.starts_with("+OK"));
    let r = imap.cmd("NOOP");
    assert!(r.has("FLAGS (\\Seen \\Recent))"), "{r:?}");
    assert!(r.untagged("1 FETCH").len() == 1, "{r:?}");
    let r = imap.cmd("FETCH 1:3 (FLAGS)");
    assert!(r.has("* 1 FETCH (FLAGS (\\Seen \\Recent))"), "{r:?}");
    assert!(r.has("* 2 FETCH (FLAGS (\\Recent))"), "{r:?}");
    // A message APPENDed over IMAP after the POP3 login is not in this
    // POP3 session (its list is fixed at login), but is in the next.
    let r = imap.append("INBOX", "()", &message("late", "x"));
    assert!(r.ok(), "{r:?}");
    assert!(p.cmd("STAT").starts_with("+OK 3 "));
    assert!(p.cmd("DELE 3").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    let r = imap.cmd("NOOP");
    assert!(r.has("* 3 EXPUNGE"), "{r:?}");
    let mut p = s.pop_alice();
    let (_, body) = p.multi("UIDL");
    assert_eq!(numbers(&body).len(), 3);
    let (_, body) = p.multi("RETR 3");
    assert!(String::from_utf8_lossy(&body).contains("Subject: late"));
}

#[test]
fn pop3_login_errors_and_sasl() {
    let s = server().start();
    let mut p = s.pop();
    assert!(p.cmd("STAT").starts_with("-ERR"));
    assert!(p.cmd("PASS x").starts_with("-ERR"));
    assert!(p.cmd("BOGUS").starts_with("-ERR"));
    assert!(p.cmd("USER alice").starts_with("+OK"));
    assert!(p.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    // SASL PLAIN with an initial response.
    let ir = b64("\0alice\0secret");
    assert!(
        p.cmd(&format!("AUTH PLAIN {ir}")).starts_with("+OK"),
        "plain"
    );
    assert!(p.cmd("USER alice").starts_with("-ERR"));
    p.cmd("QUIT");

    // SASL PLAIN without it, and LOGIN.
    let mut p = s.pop();
    assert_eq!(p.cmd("AUTH PLAIN"), "+ ");
    assert!(p.cmd(&b64("\0alice\0secret")).starts_with("+OK"));
    let mut p = s.pop();
    assert_eq!(p.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6");
    assert_eq!(p.cmd(&b64("alice")), "+ UGFzc3dvcmQ6");
    assert!(p.cmd(&b64("secret")).starts_with("+OK"));
    // Cancelled, bad base64, unknown mechanism, listing.
    let mut p = s.pop();
    assert_eq!(p.cmd("AUTH PLAIN"), "+ ");
    assert!(p.cmd("*").starts_with("-ERR"));
    assert_eq!(p.cmd("AUTH PLAIN"), "+ ");
    assert!(p.cmd("!!!").starts_with("-ERR"));
    assert!(p.cmd("AUTH CRAM-MD5").starts_with("-ERR"));
    let (st, body) = p.multi("AUTH");
    assert!(st.starts_with("+OK"));
    assert_eq!(body, b"PLAIN\r\nLOGIN\r\n");
    // An overlong line is refused and the session goes on.
    let long = format!("NOOP {}", "x".repeat(20_000));
    assert!(p.cmd(&long).starts_with("-ERR"));
    assert!(p.cmd("CAPA").starts_with("+OK"));
    p.body();

    // Failures end the connection after the configured number.
    let mut p = s.pop();
    for _ in 0..3 {
        p.cmd("USER alice");
        assert!(p.cmd("PASS nope").starts_with("-ERR [AUTH]"));
    }
    assert!(p.closed());
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn pop3_capa_stls_and_implicit_tls() {
    let s = server().start();
    deliver_three(&s);
    let (caps, mut p) = Pop::stls(s.pop3);
    for c in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "USER",
        "SASL PLAIN LOGIN",
        "STLS",
        "UTF8",
    ] {
        assert!(caps.iter().any(|l| l == c), "{c} missing from {caps:?}");
    }
    // Over TLS, STLS is no longer offered.
    let (_, caps) = p.multi("CAPA");
    assert!(!String::from_utf8_lossy(&caps).contains("STLS"));
    assert!(p.cmd("STLS").starts_with("-ERR"));
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
    assert!(p.cmd("STAT").starts_with("+OK 3 "));
    p.cmd("QUIT");

    let mut p = Pop::tls(s.pop3s);
    assert!(p.greeting.starts_with("+OK"));
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
    let (st, body) = p.multi("RETR 2");
    assert!(st.starts_with("+OK"));
    assert!(body.starts_with(b"From: b@example.org\r\n"));
    // UTF8 (RFC 6856) belongs to the authorization state.
    assert!(p.cmd("UTF8").starts_with("-ERR"));
    p.cmd("QUIT");
}

#[test]
fn pop3_refuses_passwords_in_the_clear_when_told_to() {
    let s = server().auth("cleartext = \"never\"").start();
    let mut p = s.pop();
    let (_, caps) = p.multi("CAPA");
    let caps = String::from_utf8_lossy(&caps).into_owned();
    assert!(!caps.contains("USER\r\n"), "{caps}");
    assert!(!caps.contains("SASL"), "{caps}");
    assert!(caps.contains("STLS"), "{caps}");
    assert!(p.cmd("USER alice").starts_with("-ERR [AUTH]"));
    assert!(p
        .cmd(&format!("AUTH PLAIN {}", b64("\0alice\0secret")))
        .starts_with("-ERR [AUTH]"));
    let (_, mut p) = Pop::stls(s.pop3);
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
}

#[test]
fn pop3_pipelining_and_login_delay() {
    let s = server()
        .pop3("login_delay_secs = 3600\nexpire = \"NEVER\"")
        .start();
    deliver_three(&s);
    let mut p = s.pop();
    let (_, caps) = p.multi("CAPA");
    let caps = String::from_utf8_lossy(&caps).into_owned();
    assert!(caps.contains("LOGIN-DELAY 3600\r\n"), "{caps}");
    assert!(caps.contains("EXPIRE NEVER\r\n"), "{caps}");
    // Everything in one write; answers come in order.
    p.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nUIDL 1\r\nLIST\r\nNOOP\r\n");
    assert!(p.line().starts_with("+OK"));
    assert!(p.line().starts_with("+OK"));
    assert!(p.line().starts_with("+OK 3 "));
    assert!(p.line().starts_with("+OK 1 UID"));
    assert!(p.line().starts_with("+OK"));
    assert_eq!(numbers(&p.body()).len(), 3);
    assert!(p.line().starts_with("+OK"));
    p.cmd("QUIT");
    // A second login within the delay is refused with the code.
    let mut p = s.pop();
    assert!(p.login("alice", ALICE_PW).starts_with("-ERR [LOGIN-DELAY]"));
    // Another user is not affected.
    let mut p = s.pop();
    assert!(p.login("bob", "bobpw").starts_with("+OK"));
}

#[test]
fn pop3_keeps_uidls_from_courier_sizelist() {
    let s = server().start();
    deliver_three(&s);
    // Courier served this Maildir: its list knows two of the messages
    // (one under a name with other flags) and one that is gone.
    let md = s.maildir("alice");
    std::fs::write(
        md.join("courierpop3dsizelist"),
        "/3 41 1600000000\n\
         1000000000.M1P1Q0.host:2,S 57 17:1600000000:0\n\
         1000000001.M1P1Q1.host 82 40:1600000000:0\n\
         999.gone.host 10 3:1600000000:0\n",
    )
    .unwrap();
    let mut p = s.pop_alice();
    let (_, body) = p.multi("UIDL");
    let u = numbers(&body);
    assert_eq!(u[0].1, "UID17-1600000000");
    assert_eq!(u[1].1, "UID40-1600000000");
    assert_eq!(u[2].1, "UID41-1600000000");
    // Sizes come from the list where it has them (Courier counted them).
    assert_eq!(p.cmd("LIST 2"), "+OK 2 82");
    p.cmd("QUIT");
    let text = std::fs::read_to_string(md.join("courierpop3dsizelist")).unwrap();
    assert!(text.starts_with("/3 42 1600000000\n"), "{text}");
    assert!(!text.contains("999.gone"), "{text}");
    assert!(text.contains(" 41:1600000000:0\n"), "{text}");
}

#[test]
fn pop3_headerless_list_keeps_name_uidls() {
    let s = server().start();
    deliver_three(&s);
    let md = s.maildir("alice");
    std::fs::write(
        md.join("courierpop3dsizelist"),
        "1000000000.M1P1Q0.host 57\n",
    )
    .unwrap();
    let mut p = s.pop_alice();
    assert_eq!(p.cmd("UIDL 1"), "+OK 1 1000000000.M1P1Q0.host");
    assert!(p.cmd("UIDL 2").starts_with("+OK 2 UID1-"));
}

#[test]
fn pop3_clients_that_quit_and_reconnect_at_once_find_their_places_free() {
    // As for IMAP's LOGOUT: the place is given back before +OK goes out.
    let s = server()
        .config("[limits]\nmax_connections_per_ip = 3")
        .start();
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let mut p = s.pop();
                for _ in 0..100 {
                    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
                    assert!(p.cmd("QUIT").starts_with("+OK"));
                    p = s.pop();
                    if !p.greeting.starts_with("+OK") {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    assert_eq!(refused.into_inner(), 0, "reconnections refused");
}

#[test]
fn pop3_retr_of_a_huge_one_line_message_holds_no_copy_of_it() {
    // RETR read the whole file and built its answer line by line: a
    // message of one 96 MB line cost its size twice in server memory (the
    // peak grew by 196 MB); read and sent in 64 KiB pieces, by 0.4 MB.
    let s = server().start();
    let cur = s.maildir("alice").join("cur");
    std::fs::create_dir_all(&cur).unwrap();
    let size = 96usize << 20;
    let mut m = b"Subject: huge\n\n.".to_vec();
    m.resize(size, b'x');
    std::fs::write(cur.join("1700000000.M1P1.host:2,"), &m).unwrap();
    drop(m);
    let mut p = s.pop();
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
    let before = s.peak_rss_kib();
    let ok = p.cmd("RETR 1");
    assert!(ok.starts_with("+OK"), "{ok}");
    let body = p.body();
    // CRLF line ends; the one body line started with a dot (stuffed on the
    // wire, undone by the reader) and got its line end.
    assert_eq!(body.len(), size + 2 + 2);
    assert!(body.starts_with(b"Subject: huge\r\n\r\n.xxx"));
    assert!(body.ends_with(b"xxx\r\n"));
    let grown = s.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 24 * 1024,
        "peak grew by {grown} KiB for a 96 MB message"
    );
    assert!(p.cmd("TOP 1 0").starts_with("+OK"));
    assert_eq!(p.body(), b"Subject: huge\r\n\r\n");
    assert!(p.cmd("QUIT").starts_with("+OK"));
}
