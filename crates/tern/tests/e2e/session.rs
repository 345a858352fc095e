//! Greeting, capabilities, login, TLS, limits, bad input, shutdown, config.

use std::process::Command;

use crate::harness::*;

#[test]
fn greeting_and_capabilities() {
    let s = server().start();
    let mut c = s.connect();
    assert!(
        c.greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{}",
        c.greeting
    );
    assert!(c.greeting.contains("STARTTLS"));
    let r = c.cmd("CAPABILITY");
    assert!(r.ok());
    let caps = r.untagged("CAPABILITY")[0];
    for cap in [
        "IMAP4rev1",
        "STARTTLS",
        "AUTH=PLAIN",
        "SASL-IR",
        "LITERAL+",
        "ID",
        "IDLE",
        "NAMESPACE",
    ] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} missing in {caps}");
    }
    let r = c.cmd("LOGIN alice secret");
    assert!(r.ok());
    assert!(
        r.tagged().contains("[CAPABILITY IMAP4rev1"),
        "{}",
        r.tagged()
    );
    let r = c.cmd("CAPABILITY");
    let caps = r.untagged("CAPABILITY")[0];
    for cap in ["CHILDREN", "UIDPLUS", "UNSELECT", "MOVE", "NAMESPACE"] {
        assert!(caps.split(' ').any(|c| c == cap), "{cap} missing in {caps}");
    }
    assert!(!caps.contains("STARTTLS"));
    let r = c.cmd("LOGOUT");
    assert!(r.ok() && r.has("* BYE"));
}

#[test]
fn the_login_phase_hands_pipelined_commands_to_the_session() {
    // Commands of a logged-in session are refused before login (without
    // touching the Maildir); commands pipelined behind the LOGIN in one
    // write, a literal among them, are served by the logged-in session.
    let s = server().start();
    let mut c = s.connect();
    for cmd in [
        "SELECT INBOX",
        "CREATE INBOX.x",
        "ENABLE UTF8=ACCEPT",
        "SEARCH $",
    ] {
        let r = c.cmd(cmd);
        assert!(r.bad(), "{cmd}: {}", r.tagged());
    }
    let r = c.cmd("CREATE {3+}\r\nabc");
    assert!(r.bad(), "{}", r.tagged());
    assert!(!s.maildir("alice").join(".abc").exists());
    assert!(!s.maildir("alice").join(".x").exists());
    c.send(b"p1 LOGIN alice secret\r\np2 CREATE {7+}\r\nINBOX.y\r\np3 SELECT INBOX.y\r\n");
    let r = c.read_until_tag("p1");
    assert!(
        r.ok() && r.tagged().contains("[CAPABILITY IMAP4rev1"),
        "{}",
        r.tagged()
    );
    assert!(c.read_until_tag("p2").ok());
    let r = c.read_until_tag("p3");
    assert!(
        r.ok() && r.tagged().contains("[READ-WRITE]"),
        "{}",
        r.tagged()
    );
    assert!(s.maildir("alice").join(".y").is_dir());
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let s = server().auth("max_failures = 5").start();
    let mut c = s.connect();
    let a = c.cmd("LOGIN alice wrong");
    let b = c.cmd("LOGIN nobody secret");
    assert!(a.no() && b.no());
    assert!(
        a.tagged().contains("[AUTHENTICATIONFAILED]"),
        "{}",
        a.tagged()
    );
    assert_eq!(
        a.tagged().split_once(' ').unwrap().1,
        b.tagged().split_once(' ').unwrap().1
    );
    assert!(c.cmd("LOGIN alice secret").ok());
}

#[test]
fn too_many_failures_close_the_connection() {
    let s = server().auth("max_failures = 2").start();
    let mut c = s.connect();
    assert!(c.cmd("LOGIN alice x").no());
    let r = c.cmd("LOGIN alice y");
    assert!(r.no());
    assert!(r.has("* BYE"));
    assert!(c.closed());
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let s = server().start();
    let mut c = s.connect();
    // "\0alice\0secret"
    let r = c.cmd("AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==");
    assert!(r.ok(), "{r:?}");
    let mut c = s.connect();
    c.send(b"a1 AUTHENTICATE PLAIN\r\n");
    let cont = c.read_line();
    assert!(cont.starts_with('+'), "{cont}");
    c.send(b"AGFsaWNlAHNlY3JldA==\r\n");
    assert!(c.read_until_tag("a1").ok());
    // LOGIN mechanism.
    let mut c = s.connect();
    c.send(b"a1 AUTHENTICATE LOGIN\r\n");
    assert_eq!(c.read_line(), "+ VXNlcm5hbWU6");
    c.send(b"YWxpY2U=\r\n");
    assert_eq!(c.read_line(), "+ UGFzc3dvcmQ6");
    c.send(b"c2VjcmV0\r\n");
    assert!(c.read_until_tag("a1").ok());
    // Cancelled exchange.
    let mut c = s.connect();
    c.send(b"a1 AUTHENTICATE PLAIN\r\n");
    c.read_line();
    c.send(b"*\r\n");
    assert!(c.read_until_tag("a1").bad());
    assert!(c.cmd("NOOP").ok(), "session survives");
}

#[test]
fn user_with_domain_logs_in() {
    let s = server().start();
    let mut c = s.login("carol@example.org", "c");
    assert!(c.cmd("SELECT INBOX").ok());
    assert!(s.maildir("carol@example.org").join("cur").is_dir());
}

#[test]
fn implicit_tls_and_starttls() {
    let s = server().auth("cleartext = \"never\"").start();
    // Cleartext: LOGINDISABLED, LOGIN refused.
    let mut c = s.connect();
    assert!(c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
    assert!(!c.greeting.contains("AUTH=PLAIN"));
    let r = c.cmd("LOGIN alice secret");
    assert!(r.no() && r.tagged().contains("PRIVACYREQUIRED"), "{r:?}");
    // AUTHENTICATE PLAIN carries the password in the clear too.
    let r = c.cmd("AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==");
    assert!(r.no() && r.tagged().contains("PRIVACYREQUIRED"), "{r:?}");
    // Implicit TLS.
    let mut t = s.connect_tls();
    assert!(t.greeting.starts_with("* OK"));
    assert!(!t.greeting.contains("STARTTLS"));
    assert!(t.cmd("LOGIN alice secret").ok());
    assert!(t.cmd("SELECT INBOX").ok());
    // STARTTLS.
    let (caps, mut t) = Client::starttls_from_addr(s.imap);
    assert!(caps.contains("STARTTLS"));
    let r = t.cmd("CAPABILITY");
    assert!(!r.has("STARTTLS") && r.has("AUTH=PLAIN"), "{r:?}");
    assert!(t.cmd("LOGIN alice secret").ok());
}

#[test]
fn bad_input_gets_bad_and_the_session_survives() {
    let s = server().start();
    let mut c = s.connect();
    for line in [
        "a1 FROBNICATE",
        "a2 LOGIN",
        "a3 SELECT",
        "a4 FETCH 1 (FLAGS)",
        "a5 LIST \"\"",
        "a6 \"unterminated",
    ] {
        let tag = line.split(' ').next().unwrap();
        c.send(format!("{line}\r\n").as_bytes());
        let r = c.read_until_tag(tag);
        assert!(r.bad(), "{line}: {r:?}");
    }
    c.send(b"\r\n");
    assert!(c.read_line().starts_with("* BAD"));
    c.send(b"(((\r\n");
    assert!(c.read_line().starts_with("* BAD"));
    c.send(b"a7 NOOP \x00\xff\r\n");
    assert!(c.read_until_tag("a7").bad());
    let mut c = s.alice();
    assert!(c.cmd("FETCH 1 (FLAGS)").bad(), "no mailbox selected");
    c.cmd("SELECT INBOX");
    assert!(
        c.cmd("FETCH 1 (FLAGS)").bad(),
        "sequence number beyond EXISTS"
    );
    assert!(c.cmd("FETCH 1 (NOSUCHITEM)").bad());
    assert!(c.cmd("STORE 1:* +FLAGS (\\Bogus)").bad() || c.cmd("NOOP").ok());
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn overlong_line_and_literal_limits() {
    let s = server()
        .config("[limits]\nmax_line_length = 2048\nmax_message_size = 1000")
        .start();
    let mut c = s.alice();
    let long = format!("a1 LIST \"\" \"{}\"\r\n", "x".repeat(5000));
    c.send(long.as_bytes());
    let l = c.read_line();
    assert!(l.contains("BAD") && l.contains("LIMIT"), "{l}");
    assert!(c.cmd("NOOP").ok());
    // A sync literal above the message limit is refused before any data.
    c.send(b"a2 APPEND INBOX {5000}\r\n");
    let l = c.read_line();
    assert!(l.starts_with("a2 NO [TOOBIG]"), "{l}");
    // A non-sync one is read and refused.
    let mut data = b"a3 APPEND INBOX {2000+}\r\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 2000));
    data.extend_from_slice(b"\r\n");
    c.send(&data);
    let r = c.read_until_tag("a3");
    assert!(r.no() && r.tagged().contains("TOOBIG"), "{r:?}");
    assert!(c.cmd("NOOP").ok());
    // A literal in another command above the line limit.
    c.send(b"a4 LOGIN {4000}\r\n");
    assert!(c.read_line().starts_with("a4 BAD"));
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn sigterm_sends_bye_and_exits_cleanly() {
    let mut s = server().start();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let l = c.read_line();
    assert!(l.starts_with("* BYE"), "{l}");
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "a:{PLAIN}b\n").unwrap();
    let serve = |toml: &str| {
        std::fs::write(dir.path().join("t.toml"), toml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["serve", "--config"])
            .arg(dir.path().join("t.toml"))
            .output()
            .unwrap()
    };
    let out = serve("[imap]\nlisten=[\"127.0.0.1:0\"]\nlisen=[]\n[auth]\npasswd_file=\"users\"\n[mail]\nmaildir=\"{user}\"\n");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen") && err.contains("t.toml"), "{err}");
    let out = serve("[imap]\nlisten=[\"127.0.0.1:0\"]\n[auth]\npasswd_file=\"missing\"\n[mail]\nmaildir=\"{user}\"\n");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.passwd_file"));
    let out = serve("[imap]\nlisten=[\"127.0.0.1:0\"]\n[pop3]\nuidl_format=\"%08Xv\"\n[auth]\npasswd_file=\"users\"\n[mail]\nmaildir=\"{user}\"\n");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pop3.uidl_format"), "{err}");
}

#[test]
fn id_namespace_enable_noop() {
    let s = server().start();
    let mut c = s.connect();
    let r = c.cmd("ID (\"name\" \"test\")");
    assert!(r.ok() && r.untagged("ID (")[0].contains("tern"));
    let long = format!("ID (\"x\" \"{}\")", "v".repeat(1024));
    assert!(c.cmd(&long).ok(), "ID values up to 1024 octets (RFC 2971)");
    let mut c = s.alice();
    let r = c.cmd("NAMESPACE");
    assert_eq!(
        r.untagged("NAMESPACE")[0],
        "NAMESPACE ((\"INBOX.\" \".\")) NIL NIL"
    );
    assert!(c.cmd("ENABLE CONDSTORE").ok());
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn pw_hashes_verify() {
    // The line end of a password typed in is not part of it.
    let h = tern_pw(&[], "hunter2\n");
    assert!(h.starts_with("{ARGON2ID}$argon2id$"), "{h}");
    assert!(tern_auth_verify(&h, "hunter2"));
}

/// What `tern pw ARGS...` writes for `password` given on its stdin.
fn tern_pw(args: &[&str], password: &str) -> String {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("pw")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "tern pw {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn every_hash_tern_pw_writes_is_read_by_dovecot_and_by_tern() {
    // A site moving between Dovecot and tern keeps its passwd-file: each
    // scheme `tern pw` offers is one Dovecot's `doveadm pw -t` verifies
    // (dovecot-core, installed by scripts/setup.sh), and a wrong password
    // is refused by both.
    for scheme in [
        "ARGON2ID",
        "SHA512-CRYPT",
        "SSHA512",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
    ] {
        let h = tern_pw(&["--scheme", scheme], "hunter2");
        assert!(h.starts_with(&format!("{{{scheme}}}")), "{h}");
        let doveadm = |pw: &str| {
            Command::new("doveadm")
                .args(["pw", "-t", &h, "-p", pw])
                .output()
                .expect("doveadm (dovecot-core) is not installed: run scripts/setup.sh")
        };
        let ok = doveadm("hunter2");
        assert!(
            ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("(verified)"),
            "Dovecot does not verify {h}: {ok:?}"
        );
        assert!(!doveadm("hunter3").status.success(), "{scheme}");
        assert!(tern_auth_verify(&h, "hunter2"), "{scheme}");
        assert!(!tern_auth_verify(&h, "hunter3"), "{scheme}");
    }
}

fn tern_auth_verify(hash: &str, pw: &str) -> bool {
    // Use the server itself: a passwd-file with the hash, then LOGIN.
    let s = server().start();
    std::fs::write(s.path().join("users"), format!("dave:{hash}::::::\n")).unwrap();
    // The passwd-file is re-read when its mtime changes.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut c = s.connect();
    c.cmd(&format!("LOGIN dave {pw}")).ok()
}

#[test]
fn connections_per_ip_are_limited() {
    let s = server()
        .config("[limits]\nmax_connections_per_ip = 2")
        .start();
    let a = s.connect();
    let b = s.connect();
    let c = s.connect();
    assert!(a.greeting.starts_with("* OK") && b.greeting.starts_with("* OK"));
    assert!(
        c.greeting.starts_with("* BYE") && c.greeting.contains("Too many connections"),
        "{}",
        c.greeting
    );
    drop(a);
    // The slot is given back when a connection ends.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let d = s.connect();
    assert!(d.greeting.starts_with("* OK"), "{}", d.greeting);
}

#[test]
fn idle_timeout_before_login() {
    let s = server()
        .config("[limits]\npreauth_timeout_secs = 1")
        .start();
    let mut c = s.connect();
    let l = c.read_line();
    assert!(l.starts_with("* BYE") && l.contains("Autologout"), "{l}");
    assert!(c.closed());
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed & 0xff) as u8
        })
        .collect()
}

#[test]
fn random_garbage_never_kills_the_server() {
    let s = server().start();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let fragments: [&[u8]; 12] = [
        b"a FETCH ",
        b"1:* ",
        b"(BODY[",
        b"] ",
        b"{5}",
        b"\"",
        b"(",
        b")",
        b"UID ",
        b"SEARCH ",
        b"STORE ",
        b"\\Seen",
    ];
    for round in 0..40 {
        let mut c = if round % 2 == 0 {
            s.alice()
        } else {
            s.connect()
        };
        if round % 2 == 0 {
            c.append("INBOX", "()", &message("g", "x"));
            c.cmd("SELECT INBOX");
        }
        let mut line = Vec::new();
        for _ in 0..(noise(&mut seed, 1)[0] % 8 + 1) {
            let pick = noise(&mut seed, 1)[0] as usize % (fragments.len() + 1);
            if pick == fragments.len() {
                let n = noise(&mut seed, 1)[0] as usize % 20;
                line.extend(
                    noise(&mut seed, n)
                        .into_iter()
                        .filter(|b| *b != b'\n' && *b != b'{'),
                );
            } else {
                line.extend_from_slice(fragments[pick]);
            }
        }
        line.extend_from_slice(b"\r\n");
        // Whatever the server makes of the garbage, a NOOP with a fresh tag
        // must still be answered (after at most a literal's worth of bytes).
        c.send(&line);
        c.send(b"zz1 NOOP\r\n");
        c.send(&[b'x'; 8]);
        c.send(b"\r\nzz2 NOOP\r\n");
        let r = c.read_until_tag("zz2");
        assert!(
            r.ok(),
            "round {round}: {:?} -> {r:?}",
            String::from_utf8_lossy(&line)
        );
    }
    // The server is still there for everyone.
    let mut c = s.alice();
    assert!(c.cmd("NOOP").ok());
}

/// Lines ended by a bare LF are taken as if they ended in CRLF (as Dovecot
/// takes them), literals included; LOGIN after login says why it is
/// refused.
#[test]
fn bare_lf_line_ends_are_accepted() {
    let s = server().start();
    let mut c = s.connect();
    c.send(b"a1 LOGIN alice {6}\n");
    assert!(c.read_line().starts_with('+'));
    c.send(b"secret\n");
    let r = c.read_until_tag("a1");
    assert!(r.ok(), "{r:?}");
    c.send(b"a2 SELECT INBOX\n");
    assert!(c.read_until_tag("a2").ok());
    c.send(b"a3 LOGIN alice secret\r\n");
    let r = c.read_until_tag("a3");
    assert!(
        r.bad() && r.tagged().contains("not allowed after login"),
        "{r:?}"
    );
}

#[test]
fn bad_arguments_of_every_command_are_not_unknown_commands() {
    // A hand-kept list had drifted: `SORT (BOGUS) UTF-8 ALL` got
    // "Unknown command SORT" while SORT was advertised.
    let s = server().start();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    for (name, args) in [
        ("SORT", "(BOGUS) UTF-8 ALL"),
        ("UID SORT", "(BOGUS) UTF-8 ALL"),
        ("THREAD", "BOGUS"),
        ("UID THREAD", "REFERENCES"),
        ("GETQUOTAROOT", "(x"),
        ("GETQUOTA", "(x"),
        ("SETQUOTA", "x (STORAGE"),
        ("ENABLE", "(x"),
        ("ID", "(\"a\""),
        ("FETCH", "x"),
        ("UID FETCH", "x"),
        ("STORE", "1 FLAGS"),
        ("COPY", "1"),
        ("MOVE", "1"),
        ("UID EXPUNGE", "x"),
        ("SEARCH", "BOGUS"),
        ("STATUS", "INBOX (BOGUS)"),
        ("LIST", "\"\""),
        ("APPEND", "INBOX (\\Bogus"),
        ("SELECT", ""),
        ("EXAMINE", ""),
        ("CREATE", ""),
        ("RENAME", "x"),
    ] {
        let r = c.cmd(&format!("{name} {args}"));
        assert!(r.bad(), "{name}: {r:?}");
        assert!(
            r.tagged()
                .contains(&format!("Error in IMAP command {name}: invalid arguments")),
            "{name}: {}",
            r.tagged()
        );
    }
    let r = c.cmd("FROBNICATE 1");
    assert!(
        r.bad() && r.tagged().contains("Unknown command FROBNICATE"),
        "{r:?}"
    );
}

#[test]
fn every_log_line_of_a_session_names_it() {
    let s = server().log("info,tern_server=debug").start();
    let mut c = s.connect();
    assert!(c.cmd("LOGIN alice wrong").no());
    assert!(c.cmd("LOGIN alice secret").ok());
    let mut p = s.pop();
    assert!(p.login("bob", "bobpw").starts_with("+OK"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = s.log();
        if log.contains("POP3 login") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = |needle: &str| -> String {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {log}"))
            .to_owned()
    };
    let failed = line("authentication failed");
    let login = line(" login");
    let pop = line("POP3 login");
    for l in [&failed, &login, &pop] {
        assert!(l.contains("session{id="), "{l}");
        assert!(l.contains("peer=127.0.0.1:"), "{l}");
    }
    assert!(
        login.contains("proto=\"imap\"") || login.contains("proto=imap"),
        "{login}"
    );
    assert!(
        login.contains("user=\"alice\"") || login.contains("user=alice"),
        "{login}"
    );
    assert!(
        pop.contains("user=\"bob\"") || pop.contains("user=bob"),
        "{pop}"
    );
    // The same session id on both lines of the IMAP connection.
    let id = |l: &str| {
        l.split("session{id=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(&failed), id(&login));
    assert_ne!(id(&login), id(&pop));
}

/// Sends one byte every 300 ms for at most `for_secs` seconds; returns what
/// the server sent and whether it closed the connection meanwhile.
fn trickle(addr: std::net::SocketAddr, for_secs: u64) -> (String, bool) {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    let bytes = b"a1 LOGIN alice secretsecretsecretsecretsecret";
    let mut i = 0;
    while start.elapsed().as_secs() < for_secs {
        if t.write_all(&bytes[i % bytes.len()..][..1]).is_err() {
            return (String::from_utf8_lossy(&got).into_owned(), true);
        }
        i += 1;
        let mut buf = [0u8; 512];
        match t.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[test]
fn a_login_trickled_in_byte_by_byte_ends_at_the_login_deadline() {
    // Slowloris: a byte every 300 ms kept the connection open forever,
    // since each byte restarted the pre-login timeout. The login now has
    // one deadline (here 2 s) for IMAP and POP3 alike.
    let s = server()
        .config("[limits]\npreauth_timeout_secs = 2")
        .start();
    let (got, closed) = trickle(s.imap, 10);
    assert!(closed, "IMAP connection still open after 10 s: {got}");
    assert!(got.contains("* BYE"), "{got}");
    let (got, closed) = trickle(s.pop3, 10);
    assert!(closed, "POP3 connection still open after 10 s: {got}");
    assert!(got.contains("-ERR"), "{got}");
}

#[test]
fn a_storm_of_wrong_passwords_against_argon2_stays_within_memory() {
    // Argon2id (what `tern pw` writes) takes 19 MiB a check. Ten clients
    // sending wrong passwords as fast as they may: the checks queue for a
    // few password threads (one per core) that keep their working memory,
    // instead of running ten at once on as many blocking-pool threads that
    // each allocate it anew (2.1 GB after 60 s was measured so).
    let hash = argon2_hash_of("right");
    let s = server()
        .users(&format!("dave:{}::::::", hash.trim()))
        .config("[limits]\nmax_connections_per_ip = 1000\nmax_connections_per_user_ip = 1000\nmax_connections_per_user = 1000")
        .start();
    let before = s.peak_rss_kib();
    let stop = std::time::Instant::now() + std::time::Duration::from_secs(8);
    std::thread::scope(|scope| {
        for _ in 0..10 {
            scope.spawn(|| {
                while std::time::Instant::now() < stop {
                    let mut c = s.connect();
                    for _ in 0..3 {
                        if c.cmd("LOGIN dave wrong").ok() {
                            panic!("a wrong password was taken");
                        }
                    }
                }
            });
        }
    });
    let grown = s.peak_rss_kib().saturating_sub(before);
    // Two cores here: two checks at a time, each thread keeping its 19 MiB
    // of Argon2 memory (55 MB measured for the whole process; 440 MB when
    // each check allocated and freed its own, which glibc's malloc kept).
    assert!(grown < 120 * 1024, "peak grew by {grown} KiB");
    let rss = s.rss_kib();
    assert!(rss < 150 * 1024, "{rss} KiB resident after the storm");
    // The right password still works, and promptly enough for a test.
    assert!(s.login("dave", "right").cmd("NOOP").ok());
}

#[test]
fn an_idle_logged_in_connection_holds_no_buffer_of_its_login() {
    // A session that has just logged in gives back what reading and
    // answering its LOGIN took (it kept about 4 KiB a connection when the
    // login phase returned without doing so).
    let s = server()
        .config("[limits]\nmax_connections_per_ip = 1000\nmax_connections_per_user_ip = 1000\nmax_connections_per_user = 1000")
        .start();
    let mut warm: Vec<Client> = (0..20).map(|_| s.alice()).collect();
    warm.iter_mut().for_each(|c| assert!(c.cmd("NOOP").ok()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = s.rss_kib();
    let idle: Vec<Client> = (0..400).map(|_| s.alice()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let per = (s.rss_kib().saturating_sub(before)) as f64 / idle.len() as f64;
    eprintln!("{per:.1} KiB per idle logged-in connection");
    assert!(per < 8.0, "{per:.1} KiB per idle logged-in connection");
}

#[test]
fn a_session_waiting_in_idle_holds_a_small_read_buffer() {
    // IDLE reads its `DONE` outside any command; the read buffer grew to
    // 16 KiB there because little room was left in the 512 bytes, not
    // because the client sent much (13.7 KiB resident per IDLE session
    // against 5.6 KiB now, release build). It grows only after a read that
    // filled it.
    let s = server()
        .config("[limits]\nmax_connections_per_ip = 1000\nmax_connections_per_user_ip = 1000\nmax_connections_per_user = 1000")
        .start();
    let idle_one = |s: &Server| -> Client {
        let mut c = s.alice();
        assert!(c.cmd("SELECT INBOX").ok());
        c.send(b"i IDLE\r\n");
        assert!(c.read_line().starts_with('+'));
        c
    };
    let warm: Vec<Client> = (0..20).map(|_| idle_one(&s)).collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = s.rss_kib();
    let idle: Vec<Client> = (0..400).map(|_| idle_one(&s)).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let per = (s.rss_kib().saturating_sub(before)) as f64 / idle.len() as f64;
    eprintln!("{per:.1} KiB per session in IDLE");
    assert!(per < 10.0, "{per:.1} KiB per session in IDLE");
    // And they still end their IDLE as they should.
    for mut c in idle.into_iter().chain(warm).take(3) {
        c.send(b"DONE\r\n");
        assert!(c.read_until_tag("i").ok());
    }
}

#[test]
fn unknown_users_take_as_long_to_refuse_as_wrong_passwords() {
    // User enumeration by timing: an unknown user was checked against a
    // cheap SHA512-crypt decoy while known users' Argon2id hashes cost
    // several times more. Now the decoy is a hash of the site's usual
    // scheme and cost. Interleaved samples; the medians must be within a
    // factor two of each other (the old gap was far wider), a comparison
    // noise does not cross, not a fixed time.
    let hash = argon2_hash_of("right");
    let users: String = (0..5)
        .map(|i| format!("user{i}:{}::::::\n", hash.trim()))
        .collect();
    let s = server().users(&users).start();
    let time_of = |user: &str| {
        let mut c = s.connect();
        let t = std::time::Instant::now();
        let r = c.cmd(&format!("LOGIN {user} wrong"));
        let d = t.elapsed();
        assert!(r.no(), "{r:?}");
        d
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..7 {
        known.push(time_of(&format!("user{}", i % 5)));
        unknown.push(time_of(&format!("nobody{i}")));
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[3].as_secs_f64(), unknown[3].as_secs_f64());
    assert!(
        u > k / 2.0 && u < k * 2.0,
        "median refusal: known user {k:.4} s, unknown user {u:.4} s"
    );
}

/// What `tern pw` writes for `password` (Argon2id, its default).
fn argon2_hash_of(password: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("pw")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{password}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
