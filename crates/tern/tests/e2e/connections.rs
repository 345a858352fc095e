//! Connection limits per account, and listeners behind a load balancer
//! that sends the client's address in HAProxy's PROXY protocol.

use std::io::{Read, Write};

use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

/// Connects to `addr` and sends `header` first.
fn with_header(addr: std::net::SocketAddr, header: &[u8]) -> TcpStream {
    let mut t = TcpStream::connect(addr).unwrap();
    t.write_all(header).unwrap();
    t
}

fn v1(src: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 {port} 143\r\n").into_bytes()
}

/// A v2 header; `tls`: with the TLV saying the client came over TLS the
/// balancer ended.
fn v2(src: [u8; 4], port: u16, tls: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, if tls { 20 } else { 12 }]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&143u16.to_be_bytes());
    if tls {
        h.extend_from_slice(&[0x20, 0, 5, 0x01, 0, 0, 0, 0]);
    }
    h
}

/// Whether the server closes `t` without a word.
fn closed_silently(mut t: TcpStream) -> bool {
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    matches!(t.read_to_end(&mut buf), Ok(0)) || buf.is_empty()
}

fn balanced(extra_limits: &str, extra_auth: &str) -> Server {
    server()
        .imap("haproxy_listen = [\"127.0.0.1:0\"]\nhaproxy_tls_listen = [\"127.0.0.1:0\"]\n")
        .pop3("haproxy_listen = [\"127.0.0.1:0\"]\n")
        .auth(extra_auth)
        .config(&format!(
            "[haproxy]\ntrusted_networks = [\"127.0.0.0/8\", \"::1\"]\ntimeout_secs = 1\n[limits]\n{extra_limits}"
        ))
        .log("info")
        .start()
}

#[test]
fn per_account_limits_refuse_one_session_too_many_and_free_its_place() {
    let s = server()
        .config("[limits]\nmax_connections_per_user_ip = 2\nmax_connections_per_user = 3\n")
        .log("info")
        .start();
    let mut a1 = s.alice();
    let _a2 = s.alice();
    let mut c = s.connect();
    let r = c.cmd(&format!("LOGIN alice {ALICE_PW}"));
    assert!(r.no() && r.has("[LIMIT]"), "{r:?}");
    // The session goes on, and another account is not held back.
    assert!(c.cmd("LOGIN bob bobpw").ok());
    // POP3 has its own count per address, but the account's total holds:
    // one POP3 session makes three.
    let mut p = s.pop();
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
    let mut p2 = s.pop();
    let l = p2.login("alice", ALICE_PW);
    assert!(l.starts_with("-ERR [IN-USE]"), "{l}");
    // A place freed by LOGOUT is free at once.
    assert!(a1.cmd("LOGOUT").ok());
    let mut again = s.connect();
    assert!(again.cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    // A failed login takes no place.
    for _ in 0..5 {
        assert!(s.connect().cmd("LOGIN bob wrong").no());
    }
    assert!(s.connect().cmd("LOGIN bob bobpw").ok());
    assert!(
        s.log()
            .contains("login refused: too many sessions of this account"),
        "{}",
        s.log()
    );
}

#[test]
fn a_proxy_header_gives_the_client_address_to_the_logs_and_limits() {
    let s = balanced("max_connections_per_ip = 1\n", "");
    let imap = s.haproxy["imap"];
    // Version 1 in the clear: the session is the client's, and the
    // client is not on loopback, so a cleartext password is refused.
    let mut c = Client::plain_over(with_header(imap, &v1("203.0.113.7", 5555)));
    assert!(c.greeting.starts_with("* OK"), "{}", c.greeting);
    let r = c.cmd(&format!("LOGIN alice {ALICE_PW}"));
    assert!(r.no() && r.has("[PRIVACYREQUIRED]"), "{r:?}");
    // Version 2 saying the client came over TLS the balancer ended: the
    // password may be sent.
    let mut b = Client::plain_over(with_header(imap, &v2([192, 0, 2, 50], 5050, true)));
    assert!(!b.cmd("CAPABILITY").has("STARTTLS"));
    assert!(b.cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    assert!(s.log().contains("peer=192.0.2.50:5050"), "{}", s.log());
    // The per-address limit counts that address, not the balancer's.
    let mut other = Client::plain_over(with_header(imap, &v1("203.0.113.8", 6000)));
    assert!(other.greeting.starts_with("* OK"), "{}", other.greeting);
    let same = Client::plain_over(with_header(imap, &v1("203.0.113.7", 5556)));
    assert!(
        same.greeting
            .starts_with("* BYE Too many connections from your address"),
        "{}",
        same.greeting
    );
    // Version 2 before a TLS handshake on the implicit-TLS listener.
    let mut t = Client::tls_over(with_header(
        s.haproxy["imaps"],
        &v2([198, 51, 100, 4], 4444, false),
    ));
    assert!(t.greeting.starts_with("* OK"), "{}", t.greeting);
    assert!(t.cmd("LOGIN bob bobpw").ok());
    assert!(s.log().contains("peer=198.51.100.4:4444"), "{}", s.log());
    // POP3.
    let p = with_header(s.haproxy["pop3"], &v2([192, 0, 2, 1], 1110, true));
    p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(p.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    (&p).write_all(format!("USER alice\r\nPASS {ALICE_PW}\r\n").as_bytes())
        .unwrap();
    for _ in 0..2 {
        line.clear();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        assert!(line.starts_with("+OK"), "{line}");
    }
    assert!(s.log().contains("peer=192.0.2.1:1110"), "{}", s.log());
    drop(c.cmd("LOGOUT"));
    drop(other.cmd("LOGOUT"));
    // The plain listeners still take connections without a header.
    assert!(s.alice().cmd("NOOP").ok());
}

#[test]
fn failed_logins_are_counted_for_the_real_client() {
    // Loopback addresses are never blocked; behind the balancer the client
    // is not loopback, and is.
    let s = balanced(
        "",
        "block_after = 2\nblock_secs = 60\ncleartext = \"always\"\n",
    );
    let imap = s.haproxy["imap"];
    for i in 0..2 {
        let mut c = Client::plain_over(with_header(imap, &v1("198.51.100.9", 7000 + i)));
        assert!(c.cmd("LOGIN alice wrong").no());
    }
    let mut c = Client::plain_over(with_header(imap, &v1("198.51.100.9", 7010)));
    let r = c.cmd(&format!("LOGIN alice {ALICE_PW}"));
    assert!(r.no() && r.has("Too many failed logins"), "{r:?}");
    let mut c = Client::plain_over(with_header(imap, &v1("198.51.100.10", 7011)));
    assert!(c.cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
}

#[test]
fn bad_or_missing_headers_and_untrusted_balancers_are_turned_away() {
    let s = balanced("", "");
    let imap = s.haproxy["imap"];
    // A client that talks IMAP straight away.
    assert!(closed_silently(with_header(
        imap,
        b"a1 LOGIN alice secret\r\n"
    )));
    // A forged v1 line.
    assert!(closed_silently(with_header(
        imap,
        b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n"
    )));
    // Nothing at all within the timeout.
    assert!(closed_silently(TcpStream::connect(imap).unwrap()));
    // A balancer that is not trusted.
    let untrusted = server()
        .imap("haproxy_listen = [\"127.0.0.1:0\"]\n")
        .config("[haproxy]\ntrusted_networks = [\"10.0.0.0/8\"]\n")
        .start();
    assert!(closed_silently(with_header(
        untrusted.haproxy["imap"],
        &v1("203.0.113.7", 5555)
    )));
    // A listener behind a balancer without trusted networks does not start.
    let d = server().start();
    let text = std::fs::read_to_string(d.path().join("tern.toml")).unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(
        &p,
        text.replace("[imap]\n", "[imap]\nhaproxy_listen = [\"127.0.0.1:0\"]\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("haproxy.trusted_networks"));
}

/// Each session holds a socket and each selected folder two directories:
/// the server takes the hard limit of open files, not the 1024 a shell or
/// systemd gives as the soft one.
#[test]
fn the_server_raises_its_open_files_limit_to_the_hard_one() {
    // Started with a soft limit below the hard one (prlimit execs tern,
    // so the pid is tern's).
    let s = server()
        .under(&["prlimit", "--nofile=1024:4096", "--"])
        .start();
    assert!(s.alice().cmd("NOOP").ok());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    // "Max open files  <soft>  <hard>  files"
    assert_eq!((v[3], v[4]), ("4096", "4096"), "{line}");
}
