//! SASL beyond PLAIN and LOGIN: CRAM-MD5, SCRAM-SHA-1/256 with and without
//! channel binding, and master users, over IMAP and POP3. GNU SASL's
//! `gsasl` (from Debian's package, an implementation of its own) is the real
//! client for the exchanges that should succeed; a small SCRAM client here,
//! written from RFC 5802, sends what gsasl never would (a wrong binding, a
//! downgrade, a cancelled exchange).

use std::process::{Command, Stdio};

use base64::Engine as _;
use hmac::Mac as _;
use sha2::Digest as _;

use crate::harness::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// SCRAM-SHA-256 keys of `dave` (password `pw1`) as `tern pw` writes them,
/// SCRAM-SHA-256 keys of `eve` (password `pw2`) as `gsasl --mkpasswd` does,
/// an Argon2 account `hank`, and the master user `admin` in a file of its
/// own.
fn sasl_server(mechanisms: &str) -> Server {
    let tern_pw = |scheme: &str, pw: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["pw", "--scheme", scheme])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut c.stdin.take().unwrap(), pw.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let dave = tern_pw("SCRAM-SHA-256", "pw1");
    assert!(dave.starts_with("{SCRAM-SHA-256}4096,"), "{dave}");
    let hank = tern_pw("ARGON2ID", "pw3");
    let out = Command::new("gsasl")
        .args([
            "--mkpasswd",
            "-m",
            "SCRAM-SHA-256",
            "-p",
            "pw2",
            "--iteration-count",
            "4096",
        ])
        .output()
        .expect("gsasl (scripts/setup.sh installs it)");
    let eve = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(eve.starts_with("{SCRAM-SHA-256}4096,"), "{eve}");
    server()
        .users(&format!(
            "dave:{dave}::::::\neve:{eve}::::::\nhank:{hank}::::::\n"
        ))
        .auth(&format!(
            "mechanisms = [{mechanisms}]\nmaster_passwd_file = \"masters\"\n"
        ))
        .before_start(|dir| {
            std::fs::write(dir.join("masters"), "admin:{PLAIN}masterpw::::::\n").unwrap();
        })
        .start()
}

const ALL: &str = r#""PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256""#;

/// Runs gsasl as an IMAP client (STARTTLS unless `--no-starttls` is
/// given); whether it logged in, and what it printed.
fn gsasl(s: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new("gsasl")
        .args([
            "--imap",
            "--connect",
            &s.imap.to_string(),
            "--x509-ca-file=",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("gsasl (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let logged_in = out.status.success() && text.contains("] Logged in");
    (logged_in, text)
}

#[test]
fn gsasl_logs_in_by_every_mechanism_it_should_and_by_none_it_should_not() {
    let s = sasl_server(ALL);
    for (user, pw, mech, extra) in [
        // Keys from `tern pw`, bound to the TLS channel (tls-exporter).
        ("dave", "pw1", "SCRAM-SHA-256-PLUS", &[][..]),
        // The same without binding.
        ("dave", "pw1", "SCRAM-SHA-256", &["--no-cb"][..]),
        // Keys from gsasl's own --mkpasswd.
        ("eve", "pw2", "SCRAM-SHA-256-PLUS", &[][..]),
        // A password stored in the clear serves every mechanism.
        ("alice", ALICE_PW, "SCRAM-SHA-1-PLUS", &[][..]),
        ("alice", ALICE_PW, "SCRAM-SHA-256-PLUS", &[][..]),
        ("alice", ALICE_PW, "CRAM-MD5", &[][..]),
        ("alice", ALICE_PW, "CRAM-MD5", &["--no-starttls"][..]),
        ("alice", ALICE_PW, "PLAIN", &[][..]),
        ("dave", "pw1", "LOGIN", &[][..]),
        ("hank", "pw3", "PLAIN", &[][..]),
    ] {
        let mut args = vec!["-a", user, "-p", pw, "-m", mech];
        args.extend_from_slice(extra);
        let (ok, text) = gsasl(&s, &args);
        assert!(ok, "{user} {mech} {extra:?}:\n{text}");
        if mech.starts_with("SCRAM") {
            // gsasl checked the server's signature (v=) too.
            assert!(text.contains("server trusted"), "{text}");
        }
    }
    for (user, pw, mech) in [
        ("dave", "wrong", "SCRAM-SHA-256-PLUS"),
        // SHA-256 keys cannot answer SHA-1.
        ("dave", "pw1", "SCRAM-SHA-1-PLUS"),
        // No cleartext password: no CRAM-MD5.
        ("dave", "pw1", "CRAM-MD5"),
        // An Argon2 hash makes no SCRAM keys.
        ("hank", "pw3", "SCRAM-SHA-256-PLUS"),
        ("nobody", "x", "SCRAM-SHA-256-PLUS"),
        ("alice", "wrong", "CRAM-MD5"),
    ] {
        let (ok, text) = gsasl(&s, &["-a", user, "-p", pw, "-m", mech]);
        assert!(!ok, "{user} {mech} logged in:\n{text}");
        assert!(
            text.contains("NO [AUTHENTICATIONFAILED]"),
            "{user} {mech}:\n{text}"
        );
    }
}

#[test]
fn master_users_log_in_as_the_user_with_their_own_password() {
    let s = sasl_server(ALL);
    let mut a = s.alice();
    assert!(a.append("INBOX", "()", &message("for alice", "x")).ok());
    // LOGIN as user*master.
    let mut m = s.connect();
    let r = m.cmd("LOGIN \"alice*admin\" masterpw");
    assert!(r.ok(), "{r:?}");
    let r = m.cmd("SELECT INBOX");
    assert!(r.has("* 1 EXISTS"), "the session is alice's: {r:?}");
    // PLAIN and SCRAM with the user as authorization identity (gsasl -z).
    for mech in ["PLAIN", "SCRAM-SHA-256-PLUS"] {
        let (ok, text) = gsasl(
            &s,
            &["-a", "admin", "-z", "alice", "-p", "masterpw", "-m", mech],
        );
        assert!(ok, "{mech}: {text}");
    }
    let (ok, _) = gsasl(
        &s,
        &["-a", "alice*admin", "-p", "masterpw", "-m", "CRAM-MD5"],
    );
    assert!(ok);
    // POP3 too.
    let mut p = s.pop();
    assert!(p.login("alice*admin", "masterpw").starts_with("+OK"));
    // Refusals: the user's own password, a wrong master password, an
    // unknown user, an unknown master; none of them logs in.
    for (user, pw) in [
        ("alice*admin", ALICE_PW),
        ("alice*admin", "wrong"),
        ("nobody*admin", "masterpw"),
        ("alice*root", "masterpw"),
    ] {
        let r = s.connect().cmd(&format!("LOGIN \"{user}\" {pw}"));
        assert!(r.no() && r.has("[AUTHENTICATIONFAILED]"), "{user}: {r:?}");
    }
    // The master's password is not an account's: admin is no user.
    let r = s.connect().cmd("LOGIN admin masterpw");
    assert!(r.no(), "{r:?}");
}

#[test]
fn without_master_users_an_authorization_identity_is_refused() {
    let s = server().auth("mechanisms = [\"PLAIN\"]\n").start();
    let mut c = s.connect();
    let ir = B64.encode(b"bob\0alice\0secret");
    let r = c.cmd(&format!("AUTHENTICATE PLAIN {ir}"));
    assert!(r.no() && r.has("[AUTHORIZATIONFAILED]"), "{r:?}");
    // A name with a `*` is just a name.
    let r = c.cmd("LOGIN \"alice*bob\" secret");
    assert!(r.no(), "{r:?}");
    assert!(c.cmd("LOGIN alice secret").ok());
}

#[test]
fn capabilities_offer_what_can_work_on_the_connection() {
    // The default: PLAIN and LOGIN, nothing that needs a stored secret.
    let d = server().start();
    let caps = d.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(caps.contains("AUTH=PLAIN AUTH=LOGIN"), "{caps}");
    assert!(!caps.contains("SCRAM") && !caps.contains("CRAM"), "{caps}");
    let s = sasl_server(ALL);
    let plain = s.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(
        plain.contains("AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-1 AUTH=CRAM-MD5 AUTH=PLAIN AUTH=LOGIN"),
        "{plain}"
    );
    assert!(!plain.contains("-PLUS"), "no channel to bind to: {plain}");
    let tls = s.connect_tls().cmd("CAPABILITY").lines.join(" ");
    assert!(
        tls.contains(
            "AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-1-PLUS AUTH=SCRAM-SHA-1"
        ),
        "{tls}"
    );
    // After STARTTLS as well.
    let (_, mut st) = Client::starttls_from_addr(s.imap);
    let after = st.cmd("CAPABILITY").lines.join(" ");
    assert!(after.contains("AUTH=SCRAM-SHA-256-PLUS"), "{after}");
    // POP3: CAPA's SASL line and AUTH's list.
    let mut p = s.pop();
    let (_, capa) = p.multi("CAPA");
    let capa = String::from_utf8_lossy(&capa).into_owned();
    assert!(
        capa.contains("SASL SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN\r\n"),
        "{capa}"
    );
    let mut pt = Pop::tls(s.pop3s);
    let (_, capa) = pt.multi("CAPA");
    let capa = String::from_utf8_lossy(&capa).into_owned();
    assert!(
        capa.contains("SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS"),
        "{capa}"
    );
    // Where cleartext is refused, only the mechanisms that send no password.
    let strict = sasl_server_with(ALL, "cleartext = \"never\"\n");
    let caps = strict.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(
        caps.contains("LOGINDISABLED") && caps.contains("AUTH=SCRAM-SHA-256"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    // A mechanism not configured is not accepted either.
    let r = d.connect().cmd("AUTHENTICATE CRAM-MD5");
    assert!(r.no(), "{r:?}");
    // And an unknown name in the configuration stops the start.
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(bad_config(&d, "mechanisms = [\"GSSAPI\"]"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.mechanisms"));
}

fn sasl_server_with(mechanisms: &str, auth: &str) -> Server {
    server()
        .auth(&format!("mechanisms = [{mechanisms}]\n{auth}"))
        .start()
}

/// The server's configuration with `line` added to `[auth]`, in a file.
fn bad_config(s: &Server, line: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(s.path().join("tern.toml")).unwrap();
    let p = s.path().join("bad.toml");
    std::fs::write(&p, text.replace("[auth]\n", &format!("[auth]\n{line}\n"))).unwrap();
    p
}

// ---- A SCRAM-SHA-256 client from RFC 5802, to send what gsasl would not.

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hi(pw: &[u8], salt: &[u8], n: u32) -> Vec<u8> {
    let mut u = hmac(pw, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u.clone();
    for _ in 1..n {
        u = hmac(pw, &u);
        out.iter_mut().zip(&u).for_each(|(o, b)| *o ^= b);
    }
    out
}

/// The client-final message for `server_first`.
fn client_final(pw: &str, bare: &str, gs2: &str, cb: &[u8], server_first: &str) -> String {
    let mut f = server_first.split(',');
    let nonce = f.next().unwrap().strip_prefix("r=").unwrap();
    let salt = B64
        .decode(f.next().unwrap().strip_prefix("s=").unwrap())
        .unwrap();
    let n: u32 = f
        .next()
        .unwrap()
        .strip_prefix("i=")
        .unwrap()
        .parse()
        .unwrap();
    let salted = hi(pw.as_bytes(), &salt, n);
    let client_key = hmac(&salted, b"Client Key");
    let stored = sha2::Sha256::digest(&client_key);
    let without = format!("c={},r={nonce}", B64.encode([gs2.as_bytes(), cb].concat()));
    let sig = hmac(
        &stored,
        format!("{bare},{server_first},{without}").as_bytes(),
    );
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    format!("{without},p={}", B64.encode(proof))
}

/// Reads a `+ base64` continuation; its decoded text.
fn challenge(c: &mut Client) -> String {
    let l = c.read_line();
    let data = l
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("not a challenge: {l}"));
    String::from_utf8(B64.decode(data.trim()).unwrap()).unwrap()
}

/// A SCRAM-SHA-256 exchange with `gs2` and binding data `cb`; the tagged
/// answer.
fn scram(c: &mut Client, mech: &str, user: &str, pw: &str, gs2: &str, cb: &[u8]) -> Resp {
    let bare = format!("n={user},r=clientnonce123");
    let first = format!("{gs2}{bare}");
    let tag = c.next_tag();
    c.send(format!("{tag} AUTHENTICATE {mech} {}\r\n", B64.encode(&first)).as_bytes());
    let l = c.read_line();
    let Some(data) = l.strip_prefix("+ ") else {
        return Resp {
            lines: vec![l],
            raw: Vec::new(),
        };
    };
    let server_first = String::from_utf8(B64.decode(data.trim()).unwrap()).unwrap();
    let fin = client_final(pw, &bare, gs2, cb, &server_first);
    c.send(format!("{}\r\n", B64.encode(&fin)).as_bytes());
    let l = c.read_line();
    if let Some(v) = l.strip_prefix("+ ") {
        let v = String::from_utf8(B64.decode(v.trim()).unwrap()).unwrap();
        assert!(v.starts_with("v="), "{v}");
        c.send(b"\r\n");
        return c.read_until_tag(&tag);
    }
    Resp {
        lines: vec![l],
        raw: Vec::new(),
    }
}

#[test]
fn channel_binding_is_checked_and_a_downgrade_is_refused() {
    let s = sasl_server(ALL);
    // tls-exporter, computed by this client's TLS library.
    let (mut c, exporter) = Client::tls_with_exporter(s.imaps);
    let r = scram(
        &mut c,
        "SCRAM-SHA-256-PLUS",
        "dave",
        "pw1",
        "p=tls-exporter,,",
        &exporter,
    );
    assert!(r.ok(), "{r:?}");
    // Another connection's binding (a man in the middle relaying).
    let (mut c2, other) = Client::tls_with_exporter(s.imaps);
    let (mut c3, _) = Client::tls_with_exporter(s.imaps);
    let r = scram(
        &mut c3,
        "SCRAM-SHA-256-PLUS",
        "dave",
        "pw1",
        "p=tls-exporter,,",
        &other,
    );
    assert!(r.no() && r.has("[AUTHENTICATIONFAILED]"), "{r:?}");
    drop(c2.cmd("LOGOUT"));
    // tls-server-end-point: the SHA-256 of the certificate (rcgen signs
    // with ECDSA-SHA256).
    let pem = std::fs::read_to_string(s.path().join("cert.pem")).unwrap();
    let der = B64
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let (mut c4, _) = Client::tls_with_exporter(s.imaps);
    let r = scram(
        &mut c4,
        "SCRAM-SHA-256-PLUS",
        "dave",
        "pw1",
        "p=tls-server-end-point,,",
        &sha2::Sha256::digest(&der),
    );
    assert!(r.ok(), "{r:?}");
    // An unknown binding type.
    let (mut c5, exporter5) = Client::tls_with_exporter(s.imaps);
    let r = scram(
        &mut c5,
        "SCRAM-SHA-256-PLUS",
        "dave",
        "pw1",
        "p=tls-unique,,",
        &exporter5,
    );
    assert!(r.no(), "{r:?}");
    // "y": the client could bind but was told the server cannot. Over TLS
    // the server offers -PLUS, so someone removed it: refused.
    let (mut c6, _) = Client::tls_with_exporter(s.imaps);
    let r = scram(&mut c6, "SCRAM-SHA-256", "dave", "pw1", "y,,", b"");
    assert!(r.no(), "{r:?}");
    // In the clear there is nothing to bind to: "y" is right.
    let mut c7 = s.connect();
    let r = scram(&mut c7, "SCRAM-SHA-256", "dave", "pw1", "y,,", b"");
    assert!(r.ok(), "{r:?}");
    // -PLUS without a binding request, or a binding with plain SCRAM.
    let (mut c8, _) = Client::tls_with_exporter(s.imaps);
    let r = scram(&mut c8, "SCRAM-SHA-256-PLUS", "dave", "pw1", "n,,", b"");
    assert!(!r.ok(), "{r:?}");
    let r = scram(
        &mut c8,
        "SCRAM-SHA-256",
        "dave",
        "pw1",
        "p=tls-exporter,,",
        b"",
    );
    assert!(r.bad(), "{r:?}");
    // -PLUS is not accepted where it is not offered.
    let mut c9 = s.connect();
    let r = scram(
        &mut c9,
        "SCRAM-SHA-256-PLUS",
        "dave",
        "pw1",
        "p=tls-exporter,,",
        b"",
    );
    assert!(r.no(), "{r:?}");
}

#[test]
fn an_unknown_user_gets_a_salt_as_stable_as_a_real_one() {
    let s = sasl_server(ALL);
    let first_of = |user: &str| {
        let mut c = s.connect();
        let tag = c.next_tag();
        let msg = B64.encode(format!("n,,n={user},r=abc"));
        c.send(format!("{tag} AUTHENTICATE SCRAM-SHA-256 {msg}\r\n").as_bytes());
        let sf = challenge(&mut c);
        c.send(b"*\r\n");
        assert!(c.read_until_tag(&tag).bad());
        let mut f = sf.split(',').skip(1);
        (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
    };
    let (salt_a, iter_a) = first_of("nobody");
    assert_eq!(first_of("nobody"), (salt_a.clone(), iter_a.clone()));
    assert_ne!(first_of("somebody").0, salt_a);
    // A real account stored in the clear looks the same: 16 bytes, 4096.
    let (salt_alice, iter_alice) = first_of("alice");
    assert_eq!(iter_a, iter_alice);
    assert_eq!(salt_a.len(), salt_alice.len());
    assert_eq!(first_of("alice").0, salt_alice);
}

#[test]
fn bad_exchanges_get_a_clear_answer_and_the_session_goes_on() {
    let s = sasl_server(ALL);
    let mut c = s.connect();
    let send = |c: &mut Client, line: &str| {
        c.send(format!("{line}\r\n").as_bytes());
    };
    // Cancelled at the first challenge.
    let tag = c.next_tag();
    send(&mut c, &format!("{tag} AUTHENTICATE SCRAM-SHA-256"));
    assert_eq!(challenge(&mut c), "");
    send(&mut c, "*");
    let r = c.read_until_tag(&tag);
    assert!(r.bad() && r.has("cancelled"), "{r:?}");
    // Not base64.
    let tag = c.next_tag();
    send(&mut c, &format!("{tag} AUTHENTICATE CRAM-MD5"));
    assert!(challenge(&mut c).starts_with('<'));
    send(&mut c, "!!!not base64");
    let r = c.read_until_tag(&tag);
    assert!(r.bad() && r.has("base64"), "{r:?}");
    // A malformed first message; a mandatory extension.
    for first in ["x,,n=a,r=b", "n,,m=ext,n=dave,r=b", "n,,n=dave"] {
        let r = c.cmd(&format!("AUTHENTICATE SCRAM-SHA-256 {}", B64.encode(first)));
        assert!(r.bad() && r.has("Invalid SASL message"), "{first}: {r:?}");
    }
    // A final message with another nonce.
    let tag = c.next_tag();
    send(
        &mut c,
        &format!(
            "{tag} AUTHENTICATE SCRAM-SHA-256 {}",
            B64.encode("n,,n=dave,r=abc")
        ),
    );
    let _ = challenge(&mut c);
    send(&mut c, &B64.encode("c=biws,r=abcOTHER,p=AAAA"));
    assert!(c.read_until_tag(&tag).bad());
    // CRAM-MD5 takes no initial response; an unknown mechanism.
    let r = c.cmd(&format!("AUTHENTICATE CRAM-MD5 {}", B64.encode("alice 00")));
    assert!(r.bad(), "{r:?}");
    let r = c.cmd("AUTHENTICATE GSSAPI");
    assert!(r.no(), "{r:?}");
    // An over-long response.
    let tag = c.next_tag();
    send(&mut c, &format!("{tag} AUTHENTICATE SCRAM-SHA-256"));
    let _ = challenge(&mut c);
    c.send(&vec![b'A'; 200_000]);
    send(&mut c, "");
    let r = c.read_until_tag(&tag);
    assert!(r.bad() && r.has("[LIMIT]"), "{r:?}");
    // After all of it the session logs in.
    let r = scram(&mut c, "SCRAM-SHA-256", "alice", ALICE_PW, "n,,", b"");
    assert!(r.ok(), "{r:?}");
    assert!(c.cmd("SELECT INBOX").ok());
}

#[test]
fn pop3_auth_speaks_scram_and_cram_md5() {
    let s = sasl_server(ALL);
    let mut p = Pop::tls(s.pop3s);
    let bare = "n=dave,r=popnonce";
    let first = format!("n,,{bare}");
    let l = p.cmd(&format!("AUTH SCRAM-SHA-256 {}", B64.encode(&first)));
    let sf = String::from_utf8(B64.decode(l.strip_prefix("+ ").unwrap()).unwrap()).unwrap();
    let fin = client_final("pw1", bare, "n,,", b"", &sf);
    let l = p.cmd(&B64.encode(&fin));
    let v = String::from_utf8(B64.decode(l.strip_prefix("+ ").unwrap()).unwrap()).unwrap();
    assert!(v.starts_with("v="), "{v}");
    assert!(p.cmd("").starts_with("+OK"));
    assert!(p.cmd("STAT").starts_with("+OK 0 0"));
    // CRAM-MD5 with a wrong digest, then a right one.
    let mut p = s.pop();
    let l = p.cmd("AUTH CRAM-MD5");
    let ch = B64.decode(l.strip_prefix("+ ").unwrap()).unwrap();
    let l = p.cmd(&B64.encode("alice 00000000000000000000000000000000"));
    assert!(l.starts_with("-ERR [AUTH]"), "{l}");
    let l = p.cmd("AUTH CRAM-MD5");
    let ch2 = B64.decode(l.strip_prefix("+ ").unwrap()).unwrap();
    assert_ne!(ch, ch2, "a challenge is never reused");
    let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(ALICE_PW.as_bytes()).unwrap();
    m.update(&ch2);
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let l = p.cmd(&B64.encode(format!("alice {hex}")));
    assert!(l.starts_with("+OK"), "{l}");
    // A cancelled AUTH leaves the session usable.
    let mut p = s.pop();
    let _ = p.cmd("AUTH SCRAM-SHA-1");
    assert!(p.cmd("*").starts_with("-ERR"));
    assert!(p.login("alice", ALICE_PW).starts_with("+OK"));
}

/// A CA, and a client certificate for `cn` it signed, written to `dir` as
/// `ca.pem`, `NAME.pem` and `NAME.key`.
fn client_cert(
    dir: &std::path::Path,
    ca: &(rcgen::Certificate, rcgen::KeyPair),
    name: &str,
    cn: &str,
) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.0, &ca.1).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

fn new_ca(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

#[test]
fn external_logs_in_as_the_name_in_a_verified_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let ca = new_ca("tern test CA");
    std::fs::write(certs.path().join("ca.pem"), ca.0.pem()).unwrap();
    client_cert(certs.path(), &ca, "alice", "alice");
    client_cert(certs.path(), &ca, "ghost", "nobody-here");
    // The same name from a CA the server does not trust.
    let rogue = new_ca("rogue CA");
    client_cert(certs.path(), &rogue, "forged", "alice");
    let s = server()
        .tls(&format!(
            "client_ca = \"{}\"\n",
            certs.path().join("ca.pem").display()
        ))
        .auth("mechanisms = [\"PLAIN\", \"EXTERNAL\"]\n")
        .start();
    let with_cert = |name: &str, extra: &[&str]| {
        let cert = certs.path().join(format!("{name}.pem"));
        let key = certs.path().join(format!("{name}.key"));
        let mut args = vec![
            "-m".to_owned(),
            "EXTERNAL".to_owned(),
            format!("--x509-cert-file={}", cert.display()),
            format!("--x509-key-file={}", key.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        gsasl(&s, &args)
    };
    let (ok, text) = with_cert("alice", &["-z", ""]);
    assert!(ok, "{text}");
    assert!(
        text.contains("AUTH=EXTERNAL"),
        "offered with a verified certificate: {text}"
    );
    // Asking to act as the certificate's own name is the same.
    let (ok, text) = with_cert("alice", &["-z", "alice"]);
    assert!(ok, "{text}");
    // Another name is refused.
    let (ok, text) = with_cert("alice", &["-z", "bob"]);
    assert!(!ok && text.contains("[AUTHORIZATIONFAILED]"), "{text}");
    // A certificate naming no account.
    let (ok, text) = with_cert("ghost", &["-z", ""]);
    assert!(!ok && text.contains("NO [AUTHENTICATIONFAILED]"), "{text}");
    // A certificate from an untrusted CA fails the handshake: no session.
    let (ok, text) = with_cert("forged", &["-z", ""]);
    assert!(!ok && !text.contains("Logged in"), "{text}");
    // Without a certificate EXTERNAL is neither offered nor accepted, and
    // a password still works.
    let mut c = s.connect_tls();
    let caps = c.cmd("CAPABILITY").lines.join(" ");
    assert!(!caps.contains("EXTERNAL"), "{caps}");
    assert!(c.cmd("AUTHENTICATE EXTERNAL =").no());
    assert!(c.cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    // Nor in the clear.
    let caps = s.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(!caps.contains("EXTERNAL"), "{caps}");
}

/// A token introspection endpoint (RFC 7662) on loopback: `good-alice`
/// and `good-bob` are active for their users, `expired` is active with a
/// past `exp`, `slow` takes ten seconds, anything else is inactive; a
/// request without the server's client credentials gets 401. The tokens
/// it was asked about, in order.
fn introspection_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let (mut len, mut auth) = (0usize, String::new());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert!(line.starts_with("POST /introspect "), "{line}");
                loop {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap();
                    }
                    if let Some(v) = l.strip_prefix("Authorization: ") {
                        auth = v.to_owned();
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let token = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push(token.clone());
                let expected = format!("Basic {}", B64.encode("tern:tsecret"));
                let (status, json) = if auth != expected {
                    ("401 Unauthorized", "{}".to_owned())
                } else {
                    match token.as_str() {
                        "good-alice" => {
                            ("200 OK", r#"{"active":true,"username":"alice"}"#.to_owned())
                        }
                        "good-bob" => ("200 OK", r#"{"active":true,"username":"bob"}"#.to_owned()),
                        "expired" => (
                            "200 OK",
                            r#"{"active":true,"username":"alice","exp":1}"#.to_owned(),
                        ),
                        "slow" => {
                            std::thread::sleep(std::time::Duration::from_secs(10));
                            ("200 OK", r#"{"active":false}"#.to_owned())
                        }
                        _ => ("200 OK", r#"{"active":false}"#.to_owned()),
                    }
                };
                let mut w = s;
                let _ = write!(
                    w,
                    "HTTP/1.0 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                );
            });
        }
    });
    (addr, seen)
}

fn oauth_server(endpoint: std::net::SocketAddr, secret: &str) -> Server {
    server()
        .auth(&format!(
            "mechanisms = [\"PLAIN\", \"OAUTHBEARER\", \"XOAUTH2\"]\n\
             [auth.oauth]\nintrospection_url = \"http://{endpoint}/introspect\"\n\
             client_id = \"tern\"\nclient_secret = \"{secret}\"\ntimeout_ms = 1000\n"
        ))
        .start()
}

/// curl, a real client with OAUTHBEARER and XOAUTH2: lists the mailboxes
/// of `user` with `token`; whether it could.
fn curl_bearer(s: &Server, mech: &str, user: &str, token: &str) -> bool {
    Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            &format!("imap://127.0.0.1:{}/", s.imap.port()),
        ])
        .args(["--login-options", &format!("AUTH={mech}")])
        .args(["--oauth2-bearer", token, "-u", &format!("{user}:")])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn bearer_tokens_are_checked_by_the_introspection_endpoint() {
    let (endpoint, seen) = introspection_server();
    let s = oauth_server(endpoint, "tsecret");
    let caps = s.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(caps.contains("AUTH=OAUTHBEARER AUTH=XOAUTH2"), "{caps}");
    for mech in ["OAUTHBEARER", "XOAUTH2"] {
        assert!(curl_bearer(&s, mech, "alice", "good-alice"), "{mech}");
        // Bob's token is no good for alice, an inactive or expired one for
        // anyone.
        assert!(!curl_bearer(&s, mech, "alice", "good-bob"), "{mech}");
        assert!(!curl_bearer(&s, mech, "alice", "not-a-token"), "{mech}");
        assert!(!curl_bearer(&s, mech, "alice", "expired"), "{mech}");
    }
    assert!(seen.lock().unwrap().iter().any(|t| t == "good-alice"));
    // By hand: the failure JSON comes as a challenge, then NO.
    let mut c = s.connect();
    let tag = c.next_tag();
    let ir = B64.encode("n,a=alice,\x01auth=Bearer nope\x01\x01");
    c.send(format!("{tag} AUTHENTICATE OAUTHBEARER {ir}\r\n").as_bytes());
    let ch = challenge(&mut c);
    assert!(ch.contains("invalid_token"), "{ch}");
    c.send(format!("{}\r\n", B64.encode("\x01")).as_bytes());
    let r = c.read_until_tag(&tag);
    assert!(r.no() && r.has("[AUTHENTICATIONFAILED]"), "{r:?}");
    // A token naming no user logs in as its owner.
    let r = c.cmd(&format!(
        "AUTHENTICATE OAUTHBEARER {}",
        B64.encode("n,,\x01auth=Bearer good-bob\x01\x01")
    ));
    assert!(r.ok(), "{r:?}");
    // Malformed messages.
    for m in ["n,,\x01auth=Basic x\x01\x01", "user=alice\x01\x01", "x"] {
        let r = s
            .connect()
            .cmd(&format!("AUTHENTICATE XOAUTH2 {}", B64.encode(m)));
        assert!(r.bad() || r.no(), "{m:?}: {r:?}");
    }
}

/// An EC P-256 key of a pretend identity provider: its key set (JWKS text,
/// public half only) and its signing key.
fn idp_key(kid: &str) -> (String, jsonwebtoken::EncodingKey) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let jwks = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","use":"sig","kid":"{kid}","x":"{}","y":"{}"}}]}}"#,
        b64.encode(&raw[1..33]),
        b64.encode(&raw[33..65])
    );
    let key = jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    (jwks, key)
}

fn jwt(key: &jsonwebtoken::EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

#[test]
fn jwt_bearer_tokens_are_checked_locally_against_the_configured_keys() {
    let (endpoint, seen) = introspection_server();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwks.json");
    let (set, key) = idp_key("k1");
    std::fs::write(&keys, &set).unwrap();
    let s = server()
        .auth(&format!(
            "mechanisms = [\"PLAIN\", \"OAUTHBEARER\", \"XOAUTH2\"]\n\
             [auth.oauth]\nintrospection_url = \"http://{endpoint}/introspect\"\n\
             client_id = \"tern\"\nclient_secret = \"tsecret\"\n\
             jwt_keys = \"{}\"\n\
             jwt_issuer = \"https://idp.example\"\njwt_audience = \"imap\"\njwt_leeway_secs = 0\n",
            keys.display()
        ))
        .start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |email: &str, exp: u64, iss: &str, aud: &str| serde_json::json!({"username": email, "exp": exp, "iss": iss, "aud": aud, "sub": "1234"});
    let good = jwt(
        &key,
        "k1",
        claims("alice", now + 300, "https://idp.example", "imap"),
    );
    for mech in ["OAUTHBEARER", "XOAUTH2"] {
        assert!(curl_bearer(&s, mech, "alice", &good), "{mech}");
        // Alice's token is no good for bob.
        assert!(!curl_bearer(&s, mech, "bob", &good), "{mech}");
    }
    for bad in [
        jwt(
            &key,
            "k1",
            claims("alice", now - 5, "https://idp.example", "imap"),
        ),
        jwt(
            &key,
            "k1",
            claims("alice", now + 300, "https://evil.example", "imap"),
        ),
        jwt(
            &key,
            "k1",
            claims("alice", now + 300, "https://idp.example", "web"),
        ),
        jwt(
            &idp_key("k1").1,
            "k1",
            claims("alice", now + 300, "https://idp.example", "imap"),
        ),
    ] {
        assert!(!curl_bearer(&s, "OAUTHBEARER", "alice", &bad));
    }
    // No JWT went to the endpoint; an opaque token still does.
    assert!(seen.lock().unwrap().is_empty());
    assert!(curl_bearer(&s, "OAUTHBEARER", "alice", "good-alice"));
    // The provider rotates its key: the file is read again, the old key's
    // tokens stop working, the new key's start.
    let (set2, key2) = idp_key("k2");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&keys, &set2).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = jwt(
        &key2,
        "k2",
        claims("alice", now + 300, "https://idp.example", "imap"),
    );
    assert!(curl_bearer(&s, "OAUTHBEARER", "alice", &new));
    assert!(!curl_bearer(&s, "OAUTHBEARER", "alice", &good));
    // A broken key file keeps the last good keys.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&keys, "{not json").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(curl_bearer(&s, "OAUTHBEARER", "alice", &new));
}

#[test]
fn an_endpoint_that_refuses_or_hangs_is_a_temporary_failure() {
    let (endpoint, _) = introspection_server();
    // Wrong client secret: the endpoint answers 401.
    let s = oauth_server(endpoint, "wrong");
    let r = s.connect().cmd(&format!(
        "AUTHENTICATE OAUTHBEARER {}",
        B64.encode("n,,\x01auth=Bearer good-alice\x01\x01")
    ));
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    // A hanging endpoint: the answer within the timeout (1 s), not 10 s.
    let s = oauth_server(endpoint, "tsecret");
    let t = std::time::Instant::now();
    let r = s.connect().cmd(&format!(
        "AUTHENTICATE OAUTHBEARER {}",
        B64.encode("n,,\x01auth=Bearer slow\x01\x01")
    ));
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(8));
    // Nothing listens: the same.
    let dead = crate::differential::free_port();
    let s = oauth_server(format!("127.0.0.1:{dead}").parse().unwrap(), "tsecret");
    let r = s.connect().cmd(&format!(
        "AUTHENTICATE XOAUTH2 {}",
        B64.encode("user=alice\x01auth=Bearer good-alice\x01\x01")
    ));
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    // Without [auth.oauth] the mechanisms are not offered.
    let plain = server()
        .auth("mechanisms = [\"PLAIN\", \"OAUTHBEARER\"]\n")
        .start();
    let caps = plain.connect().cmd("CAPABILITY").lines.join(" ");
    assert!(!caps.contains("OAUTHBEARER"), "{caps}");
}
