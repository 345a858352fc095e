//! The login proxy, IMAP: two tern servers on loopback, a backend holding
//! the Maildirs and a proxy whose passwd-file says `mailhost` is the
//! backend; clients log in at the proxy and work in the backend's Maildir.

use std::io::Write;
use std::process::Command;

use crate::differential::free_port;
use crate::harness::*;

/// A backend with a PROXY protocol listener that trusts loopback, a
/// master user for the proxy, and its own APPENDLIMIT to be told apart.
fn backend() -> Server {
    backend_on(0)
}

/// [`backend`] with its PROXY listener on `port` (0: any).
fn backend_on(port: u16) -> Server {
    server()
        .users("dave:{PLAIN}davepw::::::\nerin:{PLAIN}erinpw::::::\n")
        .imap(&format!(
            "haproxy_listen = [\"127.0.0.1:{port}\"]\nhaproxy_tls_listen = [\"127.0.0.1:0\"]\n"
        ))
        .pop3("haproxy_listen = [\"127.0.0.1:0\"]\n")
        .auth("master_passwd_file = \"masters\"\n")
        .before_start(|dir| {
            std::fs::write(dir.join("masters"), "proxymaster:{PLAIN}mpw::::::\n").unwrap();
        })
        .config("[haproxy]\ntrusted_networks = [\"127.0.0.1\"]\n[limits]\nmax_message_size = 12345678\n")
        .log("info")
        .start()
}

/// `tern proxy [flags] --socket SOCK ARGS...`: its exit code and output.
fn tern_proxy_at(sock: &std::path::Path, flags: &[&str], args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("proxy")
        .args(flags)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn proxy_for(mailhost_dave: &str, mailhost_erin: &str) -> Server {
    proxy_with(mailhost_dave, mailhost_erin, "")
}

fn proxy_with(mailhost_dave: &str, mailhost_erin: &str, extra: &str) -> Server {
    server()
        .users(&format!(
            "dave:{{PLAIN}}davepw::::::mailhost={mailhost_dave}\nerin:{{PLAIN}}erinpw::::::mailhost={mailhost_erin}\n"
        ))
        .auth("mechanisms = [\"PLAIN\", \"LOGIN\", \"SCRAM-SHA-256\"]\n")
        .config(
            &format!("[proxy]\nsend_proxy_header = true\nmaster_user = \"proxymaster\"\nmaster_password = \"mpw\"\nconnect_timeout_ms = 2000\ndown_secs = 60\n{extra}"),
        )
        .log("info")
        .start()
}

#[test]
fn a_proxied_session_works_in_the_backends_maildir() {
    let b = backend();
    b.deliver_raw(
        "dave",
        "1700000000.M1P1.backend",
        &message("on the backend", "x"),
    );
    let at = b.haproxy["imap"].to_string();
    let dead = format!("127.0.0.1:{}", free_port());
    let p = proxy_for(&at, &format!("{dead},{at}"));
    let mut c = p.connect();
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.ok(), "{r:?}");
    assert!(
        r.has("APPENDLIMIT=12345678"),
        "the backend's capabilities: {r:?}"
    );
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    assert!(c
        .append("INBOX", "()", &message("through the proxy", "y"))
        .ok());
    let r = c.cmd("FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)])");
    assert!(
        r.has("on the backend") && r.has("through the proxy"),
        "{r:?}"
    );
    assert!(c.cmd("LOGOUT").ok());
    assert!(
        !p.maildir("dave").exists(),
        "nothing of dave's on the proxy"
    );
    let new = std::fs::read_dir(b.maildir("dave").join("cur"))
        .unwrap()
        .chain(std::fs::read_dir(b.maildir("dave").join("new")).unwrap())
        .count();
    assert_eq!(new, 2, "both messages in the backend's Maildir");
    // The backend saw the client's address (and port), not the proxy's.
    let plog = p.log();
    let peer = plog
        .lines()
        .find(|l| l.contains("login proxied"))
        .and_then(|l| l.split("peer=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{plog}"))
        .to_owned();
    assert!(
        b.log()
            .lines()
            .any(|l| l.contains(&format!("peer={peer}")) && l.contains("login")),
        "{peer} in {}",
        b.log()
    );
    // Pipelined commands after the LOGIN reach the backend.
    let mut c = p.connect();
    c.send(b"a1 LOGIN dave davepw\r\na2 SELECT INBOX\r\na3 LOGOUT\r\n");
    let r = c.read_until_tag("a2");
    assert!(r.has("* 2 EXISTS"), "{r:?}");
    // A mechanism that reveals no password: the proxy logs in as master.
    let out = Command::new("gsasl")
        .args(["--imap", "--connect", &p.imap.to_string(), "--no-starttls"])
        .args(["-a", "dave", "-p", "davepw", "-m", "SCRAM-SHA-256"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Logged in"), "{text}");
    assert!(b.log().contains("master user login"), "{}", b.log());
    // Failover: the first mailhost of erin refuses, the second serves.
    let mut e = p.connect();
    assert!(e.cmd("LOGIN erin erinpw").ok());
    assert!(e.cmd("SELECT INBOX").ok());
    assert!(p.log().contains("marked down"), "{}", p.log());
    // A local account of the proxy is served by the proxy.
    assert!(p.alice().cmd("SELECT INBOX").ok());
}

#[test]
fn a_backend_that_is_gone_gives_unavailable_at_once() {
    let mut b = backend();
    let at = b.haproxy["imap"].to_string();
    let p = proxy_for(&at, &at);
    assert!(p.connect().cmd("LOGIN dave davepw").ok());
    b.kill9();
    let t = std::time::Instant::now();
    let r = p.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // A wrong password is still a wrong password, checked by the proxy.
    let r = p.connect().cmd("LOGIN dave wrong");
    assert!(r.no() && r.has("[AUTHENTICATIONFAILED]"), "{r:?}");
    // The proxy's own accounts are not affected.
    assert!(p.alice().cmd("NOOP").ok());
    // A backend that greets with garbage is no backend.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
        }
    });
    let p2 = proxy_for(&garbage.to_string(), &garbage.to_string());
    let r = p2.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    let mut c = p2.connect();
    assert!(c.cmd("NOOP").ok(), "the session survives");
}

/// A backend host that vanished: connections are taken (by a listener
/// nobody serves) and never greeted, as when its packets are dropped.
fn silent_backend() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap().to_string();
    (l, at)
}

#[test]
fn a_silent_first_backend_leaves_time_to_fail_over_to_the_next() {
    let b = backend();
    b.deliver_raw("dave", "1700000000.M1P1.backend", &message("here", "x"));
    let (_silent, gone) = silent_backend();
    let at = b.haproxy["imap"].to_string();
    // dave's first choice never answers: the login must still reach the
    // second within the connect timeout (2 s for the whole login).
    let p = proxy_for(&format!("{gone},{at}"), &at);
    let mut c = p.connect();
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.ok(), "no failover within the login: {r:?}\n{}", p.log());
    assert!(c.cmd("SELECT INBOX").has("* 1 EXISTS"));
    assert!(p.log().contains("did not answer in time"), "{}", p.log());
}

/// A fake IMAP backend that greets at once and answers every command
/// `TAG OK ... slow backend`, the LOGIN only after `login_delay`.
fn slow_login_backend(login_delay: std::time::Duration) -> String {
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let _ = w.write_all(b"* OK slow backend ready\r\n");
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { return };
                    let mut words = line.split(' ');
                    let (tag, cmd) = (words.next().unwrap_or("*"), words.next().unwrap_or(""));
                    if cmd.eq_ignore_ascii_case("LOGIN") {
                        std::thread::sleep(login_delay);
                    }
                    let answer = format!("{tag} OK [CAPABILITY IMAP4rev1] slow backend\r\n");
                    if w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    at
}

#[test]
fn a_backend_that_greets_may_take_the_rest_of_the_time_to_log_in() {
    // Two candidates and 2 s: the first must greet within 1 s, but once
    // it has, its login may take longer; the user is not sent to the
    // second server for a slow login on a live one.
    // Without PROXY headers: the fake backend reads lines.
    let b = server().users("dave:{PLAIN}davepw::::::\n").start();
    let slow = slow_login_backend(std::time::Duration::from_millis(1300));
    let p = server()
        .users(&format!(
            "dave:{{PLAIN}}davepw::::::mailhost={slow},{}\n",
            b.imap
        ))
        .config("[proxy]\nconnect_timeout_ms = 2000\n")
        .log("info")
        .start();
    let mut c = p.connect();
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.ok(), "{r:?}\n{}", p.log());
    let r = c.cmd("NOOP");
    assert!(r.has("slow backend"), "served by the second: {r:?}");
}

#[test]
fn the_client_id_and_the_login_reach_the_backend_in_one_round_trip() {
    // A fake backend that answers the ID only once the LOGIN has come
    // too: a proxy that waited for the ID's answer before sending the
    // login would wait until its connect timeout.
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = l.local_addr().unwrap().to_string();
    let (seen_tx, seen) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen_tx = seen_tx.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let _ = w.write_all(b"* OK pipelining backend\r\n");
                let mut lines = BufReader::new(s).lines();
                let Some(Ok(id)) = lines.next() else { return };
                let Some(Ok(login)) = lines.next() else {
                    return;
                };
                let _ = seen_tx.send(format!("{id}\n{login}"));
                let id_tag = id.split(' ').next().unwrap_or("*").to_owned();
                let login_tag = login.split(' ').next().unwrap_or("*").to_owned();
                let _ = w.write_all(
                    format!("* ID NIL\r\n{id_tag} OK ID done\r\n{login_tag} OK [CAPABILITY IMAP4rev1 X-FAKE] in\r\n")
                        .as_bytes(),
                );
                for line in lines {
                    let Ok(line) = line else { return };
                    let tag = line.split(' ').next().unwrap_or("*");
                    if w.write_all(format!("{tag} OK fake backend\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let p = server()
        .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={at}\n"))
        .config("[proxy]\nconnect_timeout_ms = 2000\n")
        .log("info")
        .start();
    let mut c = p.connect();
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.ok() && r.has("X-FAKE"), "{r:?}\n{}", p.log());
    let lines = seen
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert!(
        lines.contains(" ID (\"x-originating-ip\" \"127.0.0.1\"")
            && lines.contains(" LOGIN \"dave\" \"davepw\""),
        "{lines}"
    );
    assert!(c.cmd("NOOP").has("fake backend"));
}

#[test]
fn a_backend_marked_down_is_brought_back_by_the_health_check() {
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    // Three proxies, each with down_secs = 60: one checks by greeting every
    // second, one by a login that the backend refuses, one does not check.
    let checked = proxy_with(&at, &at, "check_secs = 1\n");
    let bad_login = proxy_with(
        &at,
        &at,
        "check_secs = 1\ncheck_user = \"dave\"\ncheck_password = \"wrong\"\n",
    );
    let unchecked = proxy_with(&at, &at, "check_secs = 0\n");
    // The backend is not there: each proxy marks it down.
    for p in [&checked, &bad_login, &unchecked] {
        let r = p.connect().cmd("LOGIN dave davepw");
        assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    }
    let _b = backend_on(port);
    let t = std::time::Instant::now();
    let mut back = false;
    while t.elapsed() < std::time::Duration::from_secs(15) {
        if checked.connect().cmd("LOGIN dave davepw").ok() {
            back = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(back, "the checked proxy never brought the backend back");
    assert!(t.elapsed() < std::time::Duration::from_secs(15));
    assert!(checked.log().contains("backend answers again"));
    // The others still skip it: one's login check fails, the other waits
    // out its 60 s.
    for p in [&bad_login, &unchecked] {
        let r = p.connect().cmd("LOGIN dave davepw");
        assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    }
}

#[test]
fn a_proxied_pop3_session_reads_the_backends_maildrop() {
    let b = backend();
    b.deliver_raw("dave", "1700000000.M1P1.backend", &message("pop me", "x"));
    let imap_at = b.haproxy["imap"];
    let pop_port = b.haproxy["pop3"].port();
    // The mailhost names the backend's IMAP port; POP3 goes to its POP3
    // port on the same host.
    let p = proxy_with(
        &imap_at.to_string(),
        &imap_at.to_string(),
        &format!("pop3_port = {pop_port}\n"),
    );
    let mut c = p.pop();
    assert!(c.login("dave", "davepw").starts_with("+OK"));
    assert!(
        c.cmd("STAT").starts_with("+OK 1 "),
        "the backend's maildrop"
    );
    let (first, body) = c.multi("RETR 1");
    assert!(first.starts_with("+OK"));
    assert!(String::from_utf8_lossy(&body).contains("pop me"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(!p.maildir("dave").exists());
    assert!(p.log().contains("POP3 login proxied"), "{}", p.log());
    // AUTH PLAIN: the client's password is passed on as well.
    let mut c = p.pop();
    let ir = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "\0dave\0davepw");
    assert!(c.cmd(&format!("AUTH PLAIN {ir}")).starts_with("+OK"));
    assert!(c.cmd("STAT").starts_with("+OK 1 "));
    // The proxy's own POP3 accounts stay here.
    assert!(p.pop_alice().cmd("STAT").starts_with("+OK"));
}

#[test]
fn the_backend_leg_is_tls_verified_or_cleartext_only_where_allowed() {
    let b = backend();
    b.deliver_raw("dave", "1700000000.M1P1.backend", &message("over tls", "x"));
    let ca = b.path().join("cert.pem").display().to_string();
    // The backend's certificate names localhost: the mailhost must too.
    let tls_at = format!("localhost:{}", b.haproxy["imaps"].port());
    let plain_at = format!("localhost:{}", b.haproxy["imap"].port());
    for (mode, at) in [("tls", &tls_at), ("starttls", &plain_at)] {
        let p = proxy_with(
            at,
            at,
            &format!("backend_tls = \"{mode}\"\nbackend_ca = \"{ca}\"\ncleartext_networks = []\n"),
        );
        let mut c = p.connect();
        let r = c.cmd("LOGIN dave davepw");
        assert!(r.ok(), "{mode}: {r:?}");
        assert!(c.cmd("SELECT INBOX").has("* 1 EXISTS"), "{mode}");
        // The backend saw a TLS connection.
        assert!(
            b.log()
                .lines()
                .any(|l| l.contains("user=\"dave\"") && l.contains("tls=true")),
            "{mode}: {}",
            b.log()
        );
    }
    // A CA that did not sign the backend's certificate: no session.
    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("ca.pem");
    tern_server::tls::generate_self_signed(
        &["localhost".into()],
        &wrong,
        &other.path().join("k.pem"),
    )
    .unwrap();
    let p = proxy_with(
        &tls_at,
        &tls_at,
        &format!(
            "backend_tls = \"tls\"\nbackend_ca = \"{}\"\n",
            wrong.display()
        ),
    );
    let r = p.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    // Cleartext to an address the operator did not list: refused.
    let p = proxy_with(
        &plain_at,
        &plain_at,
        "cleartext_networks = [\"10.0.0.0/8\"]\n",
    );
    let r = p.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    assert!(p.log().contains("cleartext_networks"), "{}", p.log());
}

#[test]
fn a_pool_keeps_each_user_on_one_backend_and_fails_over() {
    let b1 = backend();
    let mut b2 = backend();
    let (a1, a2) = (
        b1.haproxy["imap"].to_string(),
        b2.haproxy["imap"].to_string(),
    );
    let p = server()
        .users("dave:{PLAIN}davepw::::::mailhost=pool:main\nerin:{PLAIN}erinpw::::::mailhost=pool:main\n")
        .config(&format!(
            "[proxy]\nsend_proxy_header = true\nconnect_timeout_ms = 2000\n\
             [proxy.pools.main]\nservers = [\"{a1}\", \"{a2}\"]\n"
        ))
        .log("info")
        .start();
    let logins = |s: &Server, u: &str| {
        s.log()
            .lines()
            .filter(|l| l.contains(&format!("user=\"{u}\"")) && l.contains(": login"))
            .count()
    };
    for _ in 0..3 {
        assert!(p.connect().cmd("LOGIN dave davepw").ok());
        assert!(p.connect().cmd("LOGIN erin erinpw").ok());
    }
    // Each user went to one backend, every time.
    for u in ["dave", "erin"] {
        let (n1, n2) = (logins(&b1, u), logins(&b2, u));
        assert!(
            (n1, n2) == (3, 0) || (n1, n2) == (0, 3),
            "{u}: {n1} and {n2}"
        );
    }
    // The backend of one of them goes: that user moves to the other one,
    // at once.
    let dave_on_b2 = logins(&b2, "dave") == 3;
    if dave_on_b2 {
        b2.kill9();
        assert!(p.connect().cmd("LOGIN dave davepw").ok());
        assert_eq!(logins(&b1, "dave"), 1);
    } else {
        drop(b1);
        assert!(p.connect().cmd("LOGIN dave davepw").ok());
        assert_eq!(logins(&b2, "dave"), 1);
    }
}

#[test]
fn the_client_address_travels_in_pop3_xclient_to_a_backend_that_trusts_the_proxy() {
    let b = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .auth("login_trusted_networks = [\"127.0.0.1\"]\nblock_after = 2\nblock_secs = 60\ncleartext = \"always\"\n")
        .log("info")
        .start();
    let p = server()
        .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={}\n", b.imap))
        .config(&format!(
            "[proxy]\nconnect_timeout_ms = 2000\npop3_port = {}\n",
            b.pop3.port()
        ))
        .log("info")
        .start();
    let mut c = Pop::plain(p.pop3);
    assert!(c.login("dave", "davepw").starts_with("+OK"));
    assert!(c.cmd("STAT").starts_with("+OK"));
    drop(c);
    // The proxy's client port is the one the backend logs as the client.
    backend_logged_the_proxys_port(&p.log(), "proto=\"pop3\"", &b.log());
    // A trusted proxy is offered XCLIENT and its word decides whose
    // failures count: two failures "from" 198.51.100.7 block it.
    let mut c = Pop::plain(b.pop3);
    let (capa, body) = c.multi("CAPA");
    assert!(capa.starts_with("+OK") && String::from_utf8_lossy(&body).contains("XCLIENT"));
    for _ in 0..2 {
        let mut c = Pop::plain(b.pop3);
        assert!(c
            .cmd("XCLIENT ADDR=198.51.100.7 PORT=4000")
            .starts_with("+OK"));
        assert!(c.login("dave", "wrong").starts_with("-ERR"));
    }
    let mut c = Pop::plain(b.pop3);
    assert!(c
        .cmd("XCLIENT ADDR=198.51.100.7 PORT=4001")
        .starts_with("+OK"));
    let r = c.login("dave", "davepw");
    assert!(
        r.starts_with("-ERR") && r.contains("Too many failed logins"),
        "{r}"
    );
    // Once named, the client cannot be renamed; a bad ADDR is refused.
    let mut c = Pop::plain(b.pop3);
    assert!(c.cmd("XCLIENT PORT=1").starts_with("-ERR"));
    assert!(c.cmd("XCLIENT ADDR=192.0.2.1").starts_with("+OK"));
    assert!(c.cmd("XCLIENT ADDR=127.0.0.1").starts_with("-ERR"));
    // Without XCLIENT the loopback client is not blocked.
    assert!(Pop::plain(b.pop3)
        .login("dave", "davepw")
        .starts_with("+OK"));
    // An untrusted sender is refused XCLIENT, and not offered it.
    let u = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .auth("login_trusted_networks = [\"10.0.0.0/8\"]\n")
        .start();
    let mut c = Pop::plain(u.pop3);
    let (_, body) = c.multi("CAPA");
    assert!(!String::from_utf8_lossy(&body).contains("XCLIENT"));
    assert!(c.cmd("XCLIENT ADDR=198.51.100.7").starts_with("-ERR"));
}

#[test]
fn the_client_address_travels_in_id_to_a_backend_that_trusts_the_proxy() {
    // A backend without PROXY listeners: the address comes in ID.
    let b = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .auth("login_trusted_networks = [\"127.0.0.1\"]\nblock_after = 2\nblock_secs = 60\ncleartext = \"always\"\n")
        .log("info")
        .start();
    let at = b.imap.to_string();
    let p = server()
        .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={at}\n"))
        .config("[proxy]\nconnect_timeout_ms = 2000\n")
        .log("info")
        .start();
    assert!(p.connect().cmd("LOGIN dave davepw").ok());
    backend_logged_the_proxys_port(&p.log(), "login proxied", &b.log());
    // A trusted proxy's word decides whose failures are counted: two
    // failures "from" 198.51.100.7 block it (loopback never is).
    let id = "ID (\"x-originating-ip\" \"198.51.100.7\" \"x-originating-port\" \"4000\")";
    for _ in 0..2 {
        let mut c = b.connect();
        assert!(c.cmd(id).ok());
        assert!(c.cmd("LOGIN dave wrong").no());
    }
    let mut c = b.connect();
    assert!(c.cmd(id).ok());
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("Too many failed logins"), "{r:?}");
    // Without the ID the loopback client is not blocked.
    assert!(b.connect().cmd("LOGIN dave davepw").ok());
    // An untrusted sender's ID is ignored.
    let u = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .auth("login_trusted_networks = [\"10.0.0.0/8\"]\nblock_after = 1\nblock_secs = 60\ncleartext = \"always\"\n")
        .log("info")
        .start();
    for _ in 0..3 {
        let mut c = u.connect();
        assert!(c.cmd(id).ok());
        assert!(c.cmd("LOGIN dave wrong").no());
    }
    assert!(u.connect().cmd("LOGIN dave davepw").ok());
    assert!(
        u.log().contains("untrusted address, ignored"),
        "{}",
        u.log()
    );
}

/// A [`backend`] where dave has one message of `lines` numbered lines; its
/// PROXY listener's address, and the message's body.
fn backend_with_one_message_of_lines(lines: usize) -> (Server, String, String) {
    let b = backend();
    let body: String = (0..lines)
        .map(|i| format!("line {i:07} of the body\r\n"))
        .collect();
    b.deliver_raw("dave", "1700000000.M1P1.backend", &message("big", &body));
    let at = b.haproxy["imap"].to_string();
    (b, at, body)
}

#[test]
fn a_cleartext_relay_splices_bulk_data_and_every_byte_arrives() {
    // 1.5 MB with a pattern, so a lost or reordered piece shows.
    let (_b, at, body) = backend_with_one_message_of_lines(60_000);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("strace.log");
    let log_s = log.to_str().unwrap().to_owned();
    let p = server()
        .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={at}\n"))
        .config("[proxy]\nsend_proxy_header = true\nconnect_timeout_ms = 2000\n")
        .under(&["strace", "-f", "-qq", "-e", "trace=splice", "-o", &log_s])
        .start();
    let fetch = |c: &mut Client| {
        assert!(c.cmd("LOGIN dave davepw").ok());
        assert!(c.cmd("SELECT INBOX").has("* 1 EXISTS"));
        let r = c.cmd("FETCH 1 BODY.PEEK[TEXT]");
        assert!(r.ok(), "{:?}", r.lines.last());
        let text = String::from_utf8_lossy(&r.raw).into_owned();
        assert!(text.contains(&body), "the body did not arrive whole");
        // And the session goes on after the bulk.
        assert!(c.cmd("NOOP").ok());
    };
    fetch(&mut p.connect());
    let spliced = std::fs::read_to_string(&log).unwrap();
    let calls = spliced.lines().filter(|l| l.contains("splice(")).count();
    assert!(calls >= 2, "no splice(2) in the cleartext relay: {spliced}");
    // With TLS on the client leg the bytes are copied (they must be
    // decrypted): no more splices, and the same bytes.
    fetch(&mut p.connect_tls());
    let after = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        after.lines().filter(|l| l.contains("splice(")).count(),
        calls,
        "a TLS leg was spliced"
    );
}

#[test]
fn a_login_a_trusted_proxy_routed_here_is_served_here() {
    // dave's directory entry names another server, where nothing listens.
    let users = "dave:{PLAIN}davepw::::::mailhost=127.0.0.1:1\n";
    let routed = "ID (\"x-originating-ip\" \"192.0.2.1\" \"x-tern-route\" \"here\")";
    let trusting_only = |net: &str| {
        server()
            .users(users)
            .auth(&format!("login_trusted_networks = [\"{net}\"]\n"))
            .config("[proxy]\nconnect_timeout_ms = 1000\n")
            .start()
    };
    let trusting = trusting_only("127.0.0.1");
    // A proxy it trusts chose this server: the login is served here.
    let mut c = trusting.connect();
    assert!(c.cmd(routed).ok());
    assert!(c.cmd("LOGIN dave davepw").ok());
    assert!(c.cmd("SELECT INBOX").ok(), "dave's Maildir here");
    // POP3 alike, by XCLIENT.
    let mut p = trusting.pop();
    let x = p.cmd("XCLIENT ADDR=192.0.2.1 PORT=4000 TERN-ROUTE=here");
    assert!(x.starts_with("+OK"), "{x}");
    assert!(p.login("dave", "davepw").starts_with("+OK"));
    assert!(p.cmd("STAT").starts_with("+OK 0 "));
    // Without the word, the directory's route (nothing there).
    let r = trusting.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    // From an address it does not trust, the word is ignored.
    let other = trusting_only("10.0.0.0/8");
    let mut c = other.connect();
    assert!(c.cmd(routed).ok());
    let r = c.cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
}

/// A fake IMAP backend that greets and answers every login with the
/// `NO [REFERRAL ...]` line `referral` makes of its own address.
fn referring_backend(referral: impl Fn(std::net::SocketAddr) -> String) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let referral = referral(addr);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let referral = referral.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let _ = w.write_all(b"* OK fake\r\n");
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    let tag = line.split(' ').next().unwrap_or("*").to_owned();
                    let answer = if line.contains(" ID ") {
                        format!("{tag} OK ID done\r\n")
                    } else {
                        format!("{tag} {}\r\n", referral.replace("TAG ", ""))
                    };
                    let _ = w.write_all(answer.as_bytes());
                }
            });
        }
    });
    addr
}

#[test]
fn a_login_referral_is_followed_and_a_loop_is_not() {
    let b = backend();
    let real = b.imap.to_string();
    let referrer =
        referring_backend(|_| format!("NO [REFERRAL imap://dave;AUTH=*@{real}/] Try there"));
    // No PROXY headers here: the fake backend and the plain listener
    // would not read them.
    let plain_proxy = |at: String| {
        server()
            .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={at}\n"))
            .config("[proxy]\nconnect_timeout_ms = 2000\n")
            .log("info")
            .start()
    };
    let p = plain_proxy(referrer.to_string());
    let mut c = p.connect();
    assert!(c.cmd("LOGIN dave davepw").ok(), "the referral was followed");
    assert!(c.cmd("SELECT INBOX").ok());
    assert!(p.log().contains("login referred"), "{}", p.log());
    // A backend that refers to itself (reached by another's referral):
    // refused, not followed forever.
    let looping = referring_backend(|me| format!("NO [REFERRAL imap://dave@{me}/] Loop"));
    let again = referring_backend(move |_| format!("NO [REFERRAL imap://dave@{looping}/] Loop"));
    let p2 = plain_proxy(again.to_string());
    let t = std::time::Instant::now();
    let r = p2.connect().cmd("LOGIN dave davepw");
    assert!(r.no(), "{r:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(p2.log().contains("referral loop"), "{}", p2.log());
}

#[test]
fn a_backend_that_wants_tls_takes_the_proxys_word_for_the_client_leg() {
    // The backend refuses passwords in the clear from anyone.
    let b = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .imap("haproxy_listen = [\"127.0.0.1:0\"]\n")
        .auth("cleartext = \"never\"\n")
        .config("[haproxy]\ntrusted_networks = [\"127.0.0.1\"]\n")
        .start();
    let at = b.haproxy["imap"].to_string();
    let p = proxy_with(&at, &at, "");
    // The client's leg is TLS: the PROXY header says so, the backend
    // takes the password.
    let r = p.connect_tls().cmd("LOGIN dave davepw");
    assert!(r.ok(), "{r:?}");
    // In the clear (allowed by the proxy's policy on loopback), the
    // backend still refuses: its policy holds.
    let r = p.connect().cmd("LOGIN dave davepw");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    // A backend that trusts the proxy by ID takes the proxy as secured,
    // as Dovecot takes login_trusted_networks.
    let b2 = server()
        .users("dave:{PLAIN}davepw::::::\n")
        .auth("cleartext = \"never\"\nlogin_trusted_networks = [\"127.0.0.1\"]\n")
        .start();
    let at2 = b2.imap.to_string();
    let p2 = server()
        .users(&format!("dave:{{PLAIN}}davepw::::::mailhost={at2}\n"))
        .config("[proxy]\nconnect_timeout_ms = 2000\n")
        .start();
    assert!(p2.connect().cmd("LOGIN dave davepw").ok());
    // Its own direct clients in the clear are still refused.
    assert!(b2.connect().cmd("LOGIN dave davepw").no());
}

#[test]
fn a_relayed_session_ends_after_its_idle_time_and_not_while_it_works() {
    // limits.auth_timeout_secs on the proxy bounds the relayed session's
    // silence: a client that keeps talking stays past it (the relay's one
    // timer is moved on), one that goes quiet gets BYE once it has been
    // quiet that long.
    let b = backend();
    let at = b.haproxy["imap"].to_string();
    let p = proxy_with(&at, &at, "[limits]\nauth_timeout_secs = 2\n");
    let mut c = p.connect();
    assert!(c.cmd("LOGIN dave davepw").ok());
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        assert!(c.cmd("NOOP").ok(), "cut off while working");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let quiet = std::time::Instant::now();
    let line = c.read_line();
    let waited = quiet.elapsed();
    assert_eq!(line, "* BYE Idle for too long");
    assert!(
        waited >= std::time::Duration::from_millis(1500)
            && waited < std::time::Duration::from_secs(10),
        "BYE after {waited:?} of silence"
    );
}

#[test]
fn a_kicked_client_that_reads_nothing_does_not_keep_its_relay() {
    // 17 MB: more than the socket buffers between backend and client hold.
    let (_b, at, _) = backend_with_one_message_of_lines(700_000);
    let p = proxy_with(&at, &at, "control_socket = \"control.sock\"\n");
    let sock = p.path().join("control.sock");
    let mut c = p.connect();
    assert!(c.cmd("LOGIN dave davepw").ok());
    assert!(c.cmd("SELECT INBOX").ok());
    // The client asks for the message and never reads it.
    c.send(b"f1 FETCH 1 BODY.PEEK[]\r\n");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        tern_proxy_at(&sock, &[], &["kick", "dave"]),
        (Some(0), "OK 1\n".to_owned())
    );
    // Its farewell cannot be written; the relay ends anyway.
    let t = std::time::Instant::now();
    loop {
        let (_, list) = tern_proxy_at(&sock, &[], &["list"]);
        if !list.lines().any(|l| l.starts_with("dave\t")) {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "the kicked relay is still there: {list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(c);
}

#[test]
fn tern_proxy_lists_and_kicks_relayed_sessions() {
    let b = backend();
    let at = b.haproxy["imap"].to_string();
    let p = proxy_with(
        &at,
        &at,
        &format!(
            "control_socket = \"control.sock\"\npop3_port = {}\n",
            b.haproxy["pop3"].port()
        ),
    );
    let sock = p.path().join("control.sock");
    let tern_proxy = |args: &[&str]| tern_proxy_at(&sock, &[], args);
    let mut dave = p.connect();
    assert!(dave.cmd("LOGIN dave davepw").ok());
    let mut erin = p.connect();
    assert!(erin.cmd("LOGIN erin erinpw").ok());
    let (code, list) = tern_proxy(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("dave\t{at}\t127.0.0.1:"))),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("erin\t")), "{list}");
    // Kick one user: told to log in again, and closed; the other goes on.
    assert_eq!(
        tern_proxy(&["kick", "dave"]),
        (Some(0), "OK 1\n".to_owned())
    );
    let bye = dave.read_line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    assert!(dave.closed());
    assert!(erin.cmd("NOOP").ok());
    // Kick every session of a backend.
    assert_eq!(
        tern_proxy(&["kick", "--host", &at]),
        (Some(0), "OK 1\n".to_owned())
    );
    assert!(erin.read_line().starts_with("* BYE"));
    let (_, list) = tern_proxy(&["list"]);
    assert!(list.trim().is_empty(), "{list}");
    // A kicked user logs in again at once.
    assert!(p.connect().cmd("LOGIN dave davepw").ok());
    // A kicked POP3 session is told in POP3's words.
    let mut pop = p.pop();
    assert!(pop.login("erin", "erinpw").starts_with("+OK"));
    assert_eq!(
        tern_proxy(&["kick", "erin"]),
        (Some(0), "OK 1\n".to_owned())
    );
    let l = pop.line();
    assert!(l.starts_with("-ERR [SYS/TEMP]"), "{l}");
}

/// Two backends and their PROXY listeners' addresses; dave has one
/// message on the first, none on the second.
fn two_backends_dave_on_the_first() -> (Server, Server, String, String) {
    let (b1, b2) = (backend(), backend());
    let (at1, at2) = (
        b1.haproxy["imap"].to_string(),
        b2.haproxy["imap"].to_string(),
    );
    let mut c = b1.connect();
    assert!(c.cmd("LOGIN dave davepw").ok());
    assert!(c.append("INBOX", "()", &message("on b1", "x")).ok());
    drop(c);
    (b1, b2, at1, at2)
}

#[test]
fn tern_proxy_move_holds_logins_ends_sessions_and_routes_to_the_new_backend() {
    let (_b1, _b2, at1, at2) = two_backends_dave_on_the_first();
    let p = proxy_with(&at1, &at1, "control_socket = \"control.sock\"\n");
    let sock = p.path().join("control.sock");
    let tern_proxy = |args: &[&str]| tern_proxy_at(&sock, &[], args);
    let exists = |c: &mut Client| {
        let r = c.cmd("SELECT INBOX");
        assert!(r.ok(), "{r:?}");
        r.lines
            .iter()
            .find_map(|l| l.strip_suffix(" EXISTS"))
            .and_then(|l| l.strip_prefix("* "))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap()
    };
    let (mut s1, mut s2) = (p.connect(), p.connect());
    for s in [&mut s1, &mut s2] {
        assert!(s.cmd("LOGIN dave davepw").ok());
        assert_eq!(exists(s), 1, "on b1");
    }
    // The move: both sessions end at once, told why.
    let (code, out) = tern_proxy(&["move", "dave", &at2, "--hold-secs", "2"]);
    assert_eq!((code, out.as_str()), (Some(0), "OK 2\n"));
    for s in [&mut s1, &mut s2] {
        let bye = s.read_line();
        assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
        assert!(s.closed());
    }
    // A login during the hold waits it out, then lands on b2.
    let t = std::time::Instant::now();
    let mut c = p.connect();
    assert!(c.cmd("LOGIN dave davepw").ok());
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(1500),
        "the login was not held: {:?}",
        t.elapsed()
    );
    assert_eq!(exists(&mut c), 0, "on b2 now");
    let (_, list) = tern_proxy(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("dave\t{at2}\t"))),
        "{list}"
    );
    // erin is not moved.
    let mut e = p.connect();
    assert!(e.cmd("LOGIN erin erinpw").ok());
    let (_, list) = tern_proxy(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("erin\t{at1}\t"))),
        "{list}"
    );
    // A bad request is refused.
    let (code, out) = tern_proxy(&["move", "dave", "b3", "--hold-secs", "x"]);
    assert_ne!(code, Some(0), "{out}");
    // The directory moves erin instead (her mailhost changes): her next
    // login goes to b2, and her session on b1 ends, so that she is never
    // on both at once.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(
        p.path().join("users"),
        format!(
            "dave:{{PLAIN}}davepw::::::mailhost={at1}\nerin:{{PLAIN}}erinpw::::::mailhost={at2}\n"
        ),
    )
    .unwrap();
    let mut e2 = p.connect();
    assert!(e2.cmd("LOGIN erin erinpw").ok());
    let bye = e.read_line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    assert!(e2.cmd("NOOP").ok());
    let (_, list) = tern_proxy(&["list"]);
    assert!(
        !list
            .lines()
            .any(|l| l.starts_with(&format!("erin\t{at1}\t"))),
        "{list}"
    );
}

#[test]
fn a_move_survives_a_restart_of_the_proxy_until_it_is_ended() {
    let (_b1, _b2, at1, at2) = two_backends_dave_on_the_first();
    let mut p = proxy_with(
        &at1,
        &at1,
        "control_socket = \"control.sock\"\nmoves_file = \"moves\"\n",
    );
    let sock = p.path().join("control.sock");
    // The control socket is made once the server runs: wait for it.
    let tern_proxy = |args: &[&str]| {
        let t = std::time::Instant::now();
        loop {
            let (code, out) = tern_proxy_at(&sock, &[], args);
            if code != Some(69) || t.elapsed() > std::time::Duration::from_secs(5) {
                return (code, out);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let messages = |p: &Server| {
        let mut c = p.connect();
        assert!(c.cmd("LOGIN dave davepw").ok());
        let r = c.cmd("STATUS INBOX (MESSAGES)");
        assert!(c.cmd("LOGOUT").ok());
        let _ = c.read_to_close();
        number_after(&r.lines[0], "MESSAGES ").unwrap()
    };
    assert_eq!(messages(&p), 1, "on b1, as the directory says");
    // (Its count of ended sessions may include the one just closed, if
    // the proxy has not yet seen it end.)
    let (code, out) = tern_proxy(&["move", "dave", &at2, "--hold-secs", "0"]);
    assert!(code == Some(0) && out.starts_with("OK "), "{code:?} {out}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("moves")).unwrap(),
        format!("dave\t{at2}\n")
    );
    // A restart (even kill -9) keeps the move: dave stays on b2.
    p.restart();
    assert_eq!(messages(&p), 0, "back on b1 after a restart");
    // Ended, the directory decides again, also after a restart.
    assert_eq!(
        tern_proxy(&["unmove", "dave"]),
        (Some(0), "OK 1\n".to_owned())
    );
    assert_eq!(
        tern_proxy(&["unmove", "dave"]),
        (Some(0), "OK 0\n".to_owned())
    );
    p.restart();
    assert_eq!(messages(&p), 1, "on b1 again");
    assert_eq!(std::fs::read_to_string(p.path().join("moves")).unwrap(), "");
}

#[test]
fn tern_proxy_pool_lists_kicks_and_moves_on_every_proxy() {
    let (b1, b2) = (backend(), backend());
    let (at1, at2) = (
        b1.haproxy["imap"].to_string(),
        b2.haproxy["imap"].to_string(),
    );
    let (c1, c2) = (free_port(), free_port());
    let secret = "a-pool-secret-of-some-length";
    let proxy = |me: u16, peer: u16| {
        proxy_with(
            &at1,
            &at1,
            &format!(
                "control_socket = \"control.sock\"\ncontrol_listen = \"127.0.0.1:{me}\"\n\
                 control_secret = \"{secret}\"\npeers = [\"127.0.0.1:{peer}\"]\n"
            ),
        )
    };
    let (p1, p2) = (proxy(c1, c2), proxy(c2, c1));
    let tern_proxy = |p: &Server, args: &[&str]| {
        tern_proxy_at(&p.path().join("control.sock"), &["--pool"], args)
    };
    let (mut d1, mut d2) = (p1.connect(), p2.connect());
    assert!(d1.cmd("LOGIN dave davepw").ok());
    assert!(d2.cmd("LOGIN dave davepw").ok());
    // One list of the pool: each line says which proxy relays it.
    let (code, list) = tern_proxy(&p1, &["list"]);
    assert_eq!(code, Some(0), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("here\tdave\t{at1}\t"))),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("127.0.0.1:{c2}\tdave\t{at1}\t"))),
        "{list}"
    );
    // Moved on every proxy: both sessions end, and both proxies route the
    // next logins to b2.
    let (code, out) = tern_proxy(&p1, &["move", "dave", &at2, "--hold-secs", "0"]);
    assert_eq!((code, out.as_str()), (Some(0), "OK 2\n"));
    for d in [&mut d1, &mut d2] {
        assert!(d.read_line().starts_with("* BYE [UNAVAILABLE]"));
    }
    let mut kept = Vec::new();
    for p in [&p1, &p2] {
        let mut c = p.connect();
        assert!(c.cmd("LOGIN dave davepw").ok());
        assert!(c.cmd("NOOP").ok());
        kept.push(c);
    }
    let (_, list) = tern_proxy(&p2, &["list"]);
    assert_eq!(
        list.lines()
            .filter(|l| l.contains(&format!("\tdave\t{at2}\t")))
            .count(),
        2,
        "{list}"
    );
    // Kicked on every proxy.
    assert_eq!(
        tern_proxy(&p2, &["kick", "dave"]),
        (Some(0), "OK 2\n".to_owned())
    );
    // The control listener wants the secret, and never forwards.
    let ask = |text: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", c1)).unwrap();
        s.write_all(text.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    assert!(ask("SECRET wrong\nLIST\n").starts_with("ERR"));
    assert!(ask("LIST\n").starts_with("ERR"));
    assert!(ask(&format!("SECRET {secret}\nPOOL KICK USER dave\n")).starts_with("ERR"));
    assert_eq!(
        ask(&format!("SECRET {secret}\nKICK USER nobody\n")),
        "OK 0\n"
    );
    // A peer that is gone is named; the rest is done.
    drop(p2);
    let (_, out) = tern_proxy(&p1, &["kick", "dave"]);
    assert!(
        out.contains(&format!("ERR 127.0.0.1:{c2}")) && out.ends_with("OK 0\n"),
        "{out}"
    );
}

/// The proxy's port towards the client, from the `peer=` of the first
/// line of its log holding `marker`, is what the backend logs as the
/// client (`client=`): the address travelled in the proxy's ID or XCLIENT.
fn backend_logged_the_proxys_port(proxy_log: &str, marker: &str, backend_log: &str) {
    let peer = proxy_log
        .lines()
        .filter(|l| l.contains(marker))
        .find_map(|l| l.split("peer=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(
        backend_log.contains(&format!("client={peer}")),
        "{peer}: {backend_log}"
    );
}
