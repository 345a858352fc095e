//! Accounts in SQL databases: real PostgreSQL and MariaDB servers from
//! Debian's packages (started privately by `scripts/db.sh`) and SQLite,
//! logged into over IMAP and POP3 with TLS; injection attempts; a database
//! that stops answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::differential::free_port;
use crate::harness::*;

fn db_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/db.sh")
}

/// Runs `scripts/db.sh ARGS... DIR [PORT]`, feeding `input`; its output.
fn db_sh_run(args: &[&str], dir: &Path, port: Option<u16>, input: &str) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(db_sh()).args(args).arg(dir);
    if let Some(p) = port {
        cmd.arg(p.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "db.sh {args:?} failed ({input})");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private database server, stopped when dropped.
pub(crate) struct Db {
    kind: &'static str,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Db {
    pub(crate) fn start(kind: &'static str) -> Db {
        let (port, dir) = (free_port(), tempfile::tempdir().unwrap());
        db_sh_run(&[kind, "start"], &dir.path().join("db"), Some(port), "");
        Db { kind, dir, port }
    }

    pub(crate) fn sql(&self, sql: &str) -> String {
        db_sh_run(
            &[self.kind, "sql"],
            &self.dir.path().join("db"),
            Some(self.port),
            sql,
        )
    }

    fn url(&self) -> String {
        let scheme = if self.kind == "postgres" {
            "postgres"
        } else {
            "mysql"
        };
        format!("{scheme}://tern:ternpw@127.0.0.1:{}/mail", self.port)
    }

    fn stop(&self) {
        db_sh_run(&[self.kind, "stop"], &self.dir.path().join("db"), None, "");
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop();
    }
}

const SCHEMA: &str = "CREATE TABLE accounts (login VARCHAR(200) PRIMARY KEY, pw VARCHAR(300), \
                      maildir VARCHAR(300), quota VARCHAR(50), active INTEGER);";

fn rows(mail: &Path) -> String {
    let sha = tern_auth::scheme::hash_sha512_crypt("shapw").unwrap();
    format!(
        "INSERT INTO accounts VALUES ('ann@example.org', '{{PLAIN}}annpw', '{0}/ann', '1000000S', 1);\n\
         INSERT INTO accounts VALUES ('sam@example.org', '{sha}', '{0}/sam', NULL, 1);\n\
         INSERT INTO accounts VALUES ('off@example.org', '{{PLAIN}}offpw', '{0}/off', NULL, 0);\n",
        mail.display()
    )
}

const QUERY: &str = "SELECT login AS user, pw AS password, maildir, quota FROM accounts \
                     WHERE login = :user AND active = 1";

/// Everything a site's users do with accounts in `url`.
fn accounts_in(url: &str, mail: &Path, check_unchanged: impl Fn() -> String, stop: impl FnOnce()) {
    let s = server()
        .config(&format!(
            "[[auth.sql]]\nurl = \"{url}\"\npassword_query = \"{QUERY}\"\ntimeout_ms = 1500\n"
        ))
        .start();
    let before = check_unchanged();
    // IMAP over TLS: the SQL account logs in and gets its Maildir.
    let mut c = s.connect_tls();
    let r = c.cmd("LOGIN ann@example.org annpw");
    assert!(r.ok(), "{r:?}");
    assert!(c.append("INBOX", "()", &message("hello", "x")).ok());
    assert!(mail.join("ann/cur").is_dir() || mail.join("ann/new").is_dir());
    let r = c.cmd("GETQUOTAROOT INBOX");
    assert!(
        r.has("STORAGE") && (r.has(" 976)") || r.has(" 977)")),
        "the quota column: {r:?}"
    );
    // POP3 over TLS, a crypt hash.
    let mut p = Pop::tls(s.pop3s);
    assert!(p.login("sam@example.org", "shapw").starts_with("+OK"));
    // The passwd-file still answers for its own users, tried first.
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    // Wrong password, unknown user, an inactive row: no.
    for (u, pw) in [
        ("ann@example.org", "nope"),
        ("zed@example.org", "x"),
        ("off@example.org", "offpw"),
    ] {
        assert!(
            s.connect().cmd(&format!("LOGIN \"{u}\" \"{pw}\"")).no(),
            "{u}"
        );
    }
    // Injection attempts get no, reach no account, change nothing.
    for u in [
        "ann@example.org' OR '1'='1",
        "ann@example.org'--",
        "' UNION SELECT 'ann@example.org', '{PLAIN}x', '/tmp/evil', NULL --",
        "'; DROP TABLE accounts; --",
        "%",
        "ann@example.org\\",
    ] {
        let q = u.replace('\\', "\\\\").replace('"', "\\\"");
        for pw in ["annpw", "x"] {
            let r = s.connect().cmd(&format!("LOGIN \"{q}\" \"{pw}\""));
            assert!(r.no() || r.bad(), "{u:?} / {pw} was let in: {r:?}");
        }
        let mut p = Pop::tls(s.pop3s);
        assert!(p.login(u, "x").starts_with("-ERR"), "{u:?}");
    }
    assert!(!Path::new("/tmp/evil").exists());
    assert_eq!(check_unchanged(), before, "the database changed");
    // The database stops answering: a temporary failure, not "wrong
    // password", and the session survives it.
    stop();
    let mut c = s.connect();
    let r = c.cmd("LOGIN ann@example.org annpw");
    assert!(r.no() && r.tagged().contains("[UNAVAILABLE]"), "{r:?}");
    assert!(c.cmd("NOOP").ok(), "the connection survives");
    let mut p = Pop::tls(s.pop3s);
    let r = p.login("ann@example.org", "annpw");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    // A passwd-file user is not held up by the database being down.
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
}

/// The accounts test on a private server of `kind`.
fn server_accounts(kind: &'static str) {
    let db = Db::start(kind);
    let mail = tempfile::tempdir().unwrap();
    db.sql(SCHEMA);
    db.sql(&rows(mail.path()));
    let table = || db.sql("SELECT login, pw, maildir, quota, active FROM accounts ORDER BY login;");
    accounts_in(&db.url(), mail.path(), table, || db.stop());
}

#[test]
fn postgresql_accounts() {
    server_accounts("postgres");
}

#[test]
fn mariadb_accounts() {
    server_accounts("mariadb");
}

#[test]
fn sqlite_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let file = dir.path().join("accounts.db");
    let sqlite = |sql: &str| {
        let mut child = Command::new("python3")
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.executescript(sys.stdin.read()) if sys.argv[2]=='w' else None; print(list(c.execute('SELECT * FROM accounts ORDER BY login'))) if sys.argv[2]=='r' else None; c.commit()"])
            .arg(&file)
            .arg(if sql.is_empty() { "r" } else { "w" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), sql.as_bytes()).unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    sqlite(SCHEMA);
    sqlite(&rows(&mail));
    let url = format!("sqlite:{}", file.display());
    // "Stopping" SQLite: the file becomes unreadable garbage.
    accounts_in(
        &url,
        &mail,
        || sqlite(""),
        || std::fs::write(&file, vec![0xffu8; 4096]).unwrap(),
    );
}

#[test]
fn account_options_as_courier_authlib_has_them() {
    let s = server()
        .auth("default_options = \"disableinsecurepop3=1\"")
        .users(
            "dan:{PLAIN}danpw::::::disableimap=1\n\
             eve:{PLAIN}evepw::::::options=disableinsecureimap=1,disablepop3=1\n\
             fay:{PLAIN}faypw::::::disableinsecurepop3=0",
        )
        .start();
    // A disabled service, told only to the right password.
    let r = s.connect().cmd("LOGIN dan danpw");
    assert!(
        r.no() && r.tagged().contains("[AUTHORIZATIONFAILED]"),
        "{r:?}"
    );
    let r = s.connect().cmd("LOGIN dan wrong");
    assert!(
        r.no() && r.tagged().contains("[AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    assert!(Pop::tls(s.pop3s).login("dan", "danpw").starts_with("+OK"));
    // TLS only for IMAP; no POP3 at all.
    let r = s.connect().cmd("LOGIN eve evepw");
    assert!(r.no() && r.tagged().contains("[PRIVACYREQUIRED]"), "{r:?}");
    assert!(s.connect_tls().cmd("LOGIN eve evepw").ok());
    assert!(Pop::tls(s.pop3s).login("eve", "evepw").starts_with("-ERR"));
    // The site's default: POP3 over TLS only, unless the account says not.
    let r = Pop::plain(s.pop3).login("alice", ALICE_PW);
    assert!(r.starts_with("-ERR") && r.contains("TLS"), "{r}");
    assert!(Pop::tls(s.pop3s)
        .login("alice", ALICE_PW)
        .starts_with("+OK"));
    assert!(Pop::plain(s.pop3).login("fay", "faypw").starts_with("+OK"));
    assert!(
        s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok(),
        "IMAP in the clear is allowed"
    );
}

#[test]
fn cached_accounts_are_still_checked_and_expire() {
    let db = Db::start("postgres");
    let mail = tempfile::tempdir().unwrap();
    db.sql(SCHEMA);
    db.sql(&rows(mail.path()));
    let ttl = 4;
    let s = server()
        .config(&format!(
            "[[auth.sql]]\nurl = \"{}\"\npassword_query = \"{QUERY}\"\ncache_secs = {ttl}\n",
            db.url()
        ))
        .start();
    let login = |u: &str, p: &str| s.connect().cmd(&format!("LOGIN \"{u}\" \"{p}\""));
    assert!(login("ann@example.org", "annpw").ok());
    assert!(
        login("zed@example.org", "zedpw").no(),
        "unknown, and remembered so"
    );
    // A hit still checks the password.
    assert!(login("ann@example.org", "wrong").no());
    // Another spelling is another question, never answered from ann's entry.
    assert!(login("ANN@example.org", "annpw").no());
    db.sql("UPDATE accounts SET pw = '{PLAIN}newpw' WHERE login = 'ann@example.org';");
    db.sql(&format!(
        "INSERT INTO accounts VALUES ('zed@example.org', '{{PLAIN}}zedpw', '{}/zed', NULL, 1);",
        mail.path().display()
    ));
    // Past the lifetime the database is asked again: the old password no
    // longer works, the new one and the new account do.
    std::thread::sleep(std::time::Duration::from_millis(ttl * 1000 + 500));
    assert!(
        login("ann@example.org", "annpw").no(),
        "an old password outlived the cache"
    );
    assert!(login("ann@example.org", "newpw").ok());
    assert!(login("zed@example.org", "zedpw").ok());
}

/// A private OpenLDAP slapd (StartTLS on `port`, ldaps:// on `tls_port`,
/// its CA in `ca()`), stopped when dropped.
pub(crate) struct Slapd {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) tls_port: u16,
}

impl Slapd {
    pub(crate) fn start() -> Slapd {
        let (port, tls_port, dir) = (free_port(), free_port(), tempfile::tempdir().unwrap());
        let s = Slapd {
            dir,
            port,
            tls_port,
        };
        s.run("start");
        s
    }

    fn run(&self, action: &str) {
        let st = Command::new("bash")
            .arg(db_sh())
            .args(["ldap", action])
            .arg(self.dir.path())
            .args([self.port.to_string(), self.tls_port.to_string()])
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "db.sh ldap {action} failed");
    }

    /// Started again after a stop, with the same data and ports.
    pub(crate) fn restart(&self) {
        self.run("restart");
    }

    pub(crate) fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub(crate) fn add(&self, ldif: &str) {
        db_sh_run(&["ldap", "add"], self.dir.path(), Some(self.port), ldif);
    }

    fn stop(&self) {
        db_sh_run(&["ldap", "stop"], self.dir.path(), None, "");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn ldap_accounts() {
    let ldap = Slapd::start();
    let mail = tempfile::tempdir().unwrap();
    let ssha = Command::new("slappasswd")
        .args(["-s", "kimpw"])
        .output()
        .unwrap();
    let ssha = String::from_utf8(ssha.stdout).unwrap();
    assert!(ssha.starts_with("{SSHA}"), "{ssha}");
    let person = |uid: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.org\nuserPassword: {pw}\n\
             uidNumber: 5000\ngidNumber: 5000\nhomeDirectory: {}/{uid}\n\n",
            mail.path().display()
        )
    };
    ldap.add(&(person("lee", "leepw") + &person("kim", ssha.trim())));
    // The first URI refuses (nothing listens): the second is used.
    let dead = free_port();
    let s = server()
        .config(&format!(
            "[[auth.ldap]]\nuris = [\"ldap://127.0.0.1:{dead}\", \"ldap://127.0.0.1:{}\"]\n\
             base = \"ou=people,dc=example,dc=org\"\nfilter = \"(&(objectClass=inetOrgPerson)(mail=%u))\"\n\
             bind_dn = \"cn=admin,dc=example,dc=org\"\nbind_password = \"adminpw\"\ntimeout_ms = 1500\n\
             [auth.ldap.attributes]\nmaildir = \"homeDirectory\"\nuid = \"uidNumber\"\n",
            ldap.port
        ))
        .start();
    // The password is checked by a bind as the account's DN: a plain
    // userPassword, and one slapd hashed ({SSHA}), over IMAPS and POP3S.
    let mut c = s.connect_tls();
    assert!(c.cmd("LOGIN lee@example.org leepw").ok());
    assert!(c.append("INBOX", "()", &message("ldap", "x")).ok());
    assert!(mail.path().join("lee/cur").is_dir() || mail.path().join("lee/new").is_dir());
    assert!(Pop::tls(s.pop3s)
        .login("kim@example.org", "kimpw")
        .starts_with("+OK"));
    let no = |u: &str, p: &str| {
        let q = u.replace('\\', "\\\\").replace('"', "\\\"");
        s.connect().cmd(&format!("LOGIN \"{q}\" \"{p}\"")).no()
    };
    assert!(no("lee@example.org", "wrong"));
    assert!(
        no("lee@example.org", ""),
        "an empty password is no unauthenticated bind"
    );
    assert!(no("zed@example.org", "x"));
    // Filter injection: each value is escaped, so none widens the search.
    for u in [
        "*",
        "lee@example.org)(mail=*",
        "*)(|(mail=*",
        "lee*",
        "lee@example.org)(objectClass=*",
        "\\2a",
    ] {
        for p in ["leepw", "kimpw"] {
            assert!(no(u, p), "{u:?} with {p} was let in");
        }
    }
    // An unknown name costs about what a wrong password does: the medians
    // of interleaved samples within a factor of two. (On loopback the
    // decoy hash an unknown name cost before it got a decoy bind was close
    // to a bind already; against a remote directory a bind's round trip is
    // what the decoy bind matches.)
    let time_of = |u: &str| {
        let t = std::time::Instant::now();
        assert!(no(u, "wrong"));
        t.elapsed().as_secs_f64()
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..9 {
        known.push(time_of("lee@example.org"));
        unknown.push(time_of(&format!("nobody{i}@example.org")));
    }
    known.sort_by(f64::total_cmp);
    unknown.sort_by(f64::total_cmp);
    let (k, u) = (known[4], unknown[4]);
    assert!(
        u > k / 2.0 && u < k * 2.0,
        "median refusal: known {k:.4} s, unknown {u:.4} s"
    );
    // The directory goes away: a temporary failure, not a wrong password.
    ldap.stop();
    let r = s.connect().cmd("LOGIN lee@example.org leepw");
    assert!(r.no() && r.tagged().contains("[UNAVAILABLE]"), "{r:?}");
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
}

/// Established TCP connections from this machine to `port` (IPv4, from
/// /proc/net/tcp).
fn connections_to(port: u16) -> usize {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap();
    t.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "01" && f[2].rsplit(':').next() == Some(&format!("{port:04X}"))
        })
        .count()
}

#[test]
fn ldap_over_tls_with_kept_connections() {
    let ldap = Slapd::start();
    let mail = tempfile::tempdir().unwrap();
    ldap.add(&format!(
        "dn: uid=lee,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n\
         uid: lee\ncn: lee\nsn: lee\nmail: lee@example.org\nuserPassword: leepw\n\
         description: {}/lee\n\n",
        mail.path().display()
    ));
    let cfg = |uri: String, extra: &str| {
        format!(
            "[[auth.ldap]]\nuris = [\"{uri}\"]\n\
             base = \"ou=people,dc=example,dc=org\"\nfilter = \"(mail=%u)\"\n\
             bind_dn = \"cn=admin,dc=example,dc=org\"\nbind_password = \"adminpw\"\ntimeout_ms = 2000\n\
             {extra}\n[auth.ldap.attributes]\nmaildir = \"description\"\n"
        )
    };
    let ca = format!("ca = \"{}\"", ldap.ca().display());
    // ldaps:// and StartTLS, verified against the directory's CA.
    for (uri, extra) in [
        (format!("ldaps://127.0.0.1:{}", ldap.tls_port), ca.clone()),
        (
            format!("ldap://127.0.0.1:{}", ldap.port),
            format!("{ca}\nstarttls = true"),
        ),
    ] {
        let s = server().config(&cfg(uri.clone(), &extra)).start();
        let r = s.connect_tls().cmd("LOGIN lee@example.org leepw");
        assert!(r.ok(), "{uri} {extra}: {r:?}");
        assert!(s.connect().cmd("LOGIN lee@example.org wrong").no());
    }
    // Without the CA (the system's roots) the certificate does not verify:
    // a temporary failure, never a login, with ldaps:// and with StartTLS
    // (which shows StartTLS really happened).
    for (uri, extra) in [
        (format!("ldaps://127.0.0.1:{}", ldap.tls_port), ""),
        (format!("ldap://127.0.0.1:{}", ldap.port), "starttls = true"),
    ] {
        let s = server().config(&cfg(uri.clone(), extra)).start();
        let r = s.connect().cmd("LOGIN lee@example.org leepw");
        assert!(r.no() && r.has("[UNAVAILABLE]"), "{uri} {extra}: {r:?}");
    }
    // Kept connections: ten logins in a row leave one search and one bind
    // connection open, not twenty (nor none).
    let s = server()
        .config(&cfg(
            format!("ldaps://127.0.0.1:{}", ldap.tls_port),
            &format!("{ca}\nmax_connections = 2"),
        ))
        .start();
    for _ in 0..10 {
        assert!(s.connect().cmd("LOGIN lee@example.org leepw").ok());
    }
    let open = connections_to(ldap.tls_port);
    assert_eq!(open, 2, "connections kept to the directory");
    // Many at once never open more than the pool's two of each kind.
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let addr = s.imap;
            std::thread::spawn(move || {
                let mut c = Client::plain(addr);
                c.cmd("LOGIN lee@example.org leepw").ok()
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap());
    }
    assert!(connections_to(ldap.tls_port) <= 4);
    // The directory restarts: the kept connections are dead, the next
    // login notices, reconnects and succeeds.
    ldap.stop();
    ldap.restart();
    assert!(s.connect().cmd("LOGIN lee@example.org leepw").ok());
    assert!(s.connect().cmd("LOGIN lee@example.org wrong").no());
}

fn ldapmodify(ldap: &Slapd, ldif: &str) {
    let mut c = Command::new("ldapmodify")
        .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", ldap.port)])
        .args(["-D", "cn=admin,dc=example,dc=org", "-w", "adminpw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), ldif.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "ldapmodify {ldif}");
}

#[test]
fn ldap_answers_are_kept_for_their_lifetime_and_passwords_bound_every_time() {
    let ldap = Slapd::start();
    let mail = tempfile::tempdir().unwrap();
    let person = |uid: &str, pw: &str, md: &str| {
        format!(
            "dn: uid={uid},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.org\nuserPassword: {pw}\n\
             description: {}/{md}\n\n",
            mail.path().display()
        )
    };
    ldap.add(&person("lee", "leepw", "one"));
    let ttl = 2;
    let s = server()
        .config(&format!(
            "[[auth.ldap]]\nuris = [\"ldap://127.0.0.1:{}\"]\n\
             base = \"ou=people,dc=example,dc=org\"\nfilter = \"(mail=%u)\"\n\
             bind_dn = \"cn=admin,dc=example,dc=org\"\nbind_password = \"adminpw\"\n\
             cache_secs = {ttl}\n[auth.ldap.attributes]\nmaildir = \"description\"\n",
            ldap.port
        ))
        .start();
    let login = |u: &str, p: &str| s.connect().cmd(&format!("LOGIN {u} {p}"));
    let append_as = |u: &str, p: &str| {
        let mut c = s.connect();
        assert!(c.cmd(&format!("LOGIN {u} {p}")).ok());
        assert!(c.append("INBOX", "()", &message("cached", "x")).ok());
    };
    append_as("lee@example.org", "leepw");
    assert!(login("ann@example.org", "annpw").no(), "no ann yet");
    // The directory changes: lee's Maildir and password, and ann appears.
    ldapmodify(
        &ldap,
        &format!(
            "dn: uid=lee,ou=people,dc=example,dc=org\nchangetype: modify\n\
             replace: description\ndescription: {}/two\n-\nreplace: userPassword\nuserPassword: newpw\n",
            mail.path().display()
        ),
    );
    ldap.add(&person("ann", "annpw", "ann"));
    // The password is bound at every login: the old one fails at once, the
    // new one works, while the search's answer (the Maildir) is the kept one.
    assert!(login("lee@example.org", "leepw").no());
    append_as("lee@example.org", "newpw");
    let count = |d: &str| {
        ["new", "cur"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(mail.path().join(d).join(sub))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum::<usize>()
    };
    assert_eq!(count("one"), 2, "the kept answer's Maildir");
    assert_eq!(count("two"), 0);
    // The kept "no such account" for ann, too.
    assert!(login("ann@example.org", "annpw").no());
    // Past the lifetime, the directory is asked again.
    std::thread::sleep(std::time::Duration::from_millis(ttl * 1000 + 500));
    append_as("lee@example.org", "newpw");
    assert_eq!(count("two"), 1, "the directory's new answer");
    assert!(login("ann@example.org", "annpw").ok());
}

#[test]
fn courier_userdb_accounts() {
    let sha = tern_auth::scheme::hash_sha512_crypt("syspw").unwrap();
    let s = server()
        .auth("userdb = \"userdb\"")
        .before_start(move |dir| {
            let md = dir.join("mail/ann");
            std::fs::write(
                dir.join("userdb"),
                format!(
                    "ann@example.org\tuid=5000|gid=5000|home={0}|mail={0}/Maildir|systempw={sha}|pop3pw={{PLAIN}}poppw|quota=2000000S\n\
                     ned@example.org\thome={0}-ned|systempw={{PLAIN}}nedpw|options=disableimap=1\n",
                    md.display()
                ),
            )
            .unwrap();
        })
        .start();
    // systempw (a crypt string as userdbpw writes it) for IMAP, pop3pw for POP3.
    let mut c = s.connect_tls();
    assert!(c.cmd("LOGIN ann@example.org syspw").ok());
    assert!(c.cmd("GETQUOTAROOT INBOX").has("1953"), "the quota field");
    assert!(s.path().join("mail/ann/Maildir/cur").is_dir());
    assert!(Pop::tls(s.pop3s)
        .login("ann@example.org", "poppw")
        .starts_with("+OK"));
    assert!(Pop::tls(s.pop3s)
        .login("ann@example.org", "syspw")
        .starts_with("-ERR"));
    let r = s.connect().cmd("LOGIN ned@example.org nedpw");
    assert!(
        r.no() && r.tagged().contains("[AUTHORIZATIONFAILED]"),
        "{r:?}"
    );
}

#[test]
fn an_address_with_many_failed_logins_is_refused_for_a_while() {
    let s = server()
        .log("warn")
        .auth("block_after = 3\nblock_secs = 2\nblock_loopback = true")
        .start();
    // Reconnecting does not start the count again: it is the address's.
    for _ in 0..3 {
        assert!(s.connect().cmd("LOGIN alice wrong").no());
    }
    // Now even the right password is not checked, over IMAP and POP3.
    let r = s.connect().cmd(&format!("LOGIN alice {ALICE_PW}"));
    assert!(
        r.no() && r.tagged().contains("[UNAVAILABLE]") && r.tagged().contains("Too many"),
        "{r:?}"
    );
    assert!(Pop::plain(s.pop3)
        .login("alice", ALICE_PW)
        .contains("Too many failed logins"));
    assert!(s.log().contains("blocking logins from this address") && s.log().contains("127.0.0.1"));
    // After the block the address is forgiven, and a good login clears it.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    assert!(s.connect().cmd("LOGIN alice wrong").no());
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
}

#[test]
fn loopback_addresses_are_not_counted_unless_told_to() {
    let s = server().auth("block_after = 2\nblock_secs = 60").start();
    for _ in 0..4 {
        assert!(s.connect().cmd("LOGIN alice wrong").no());
    }
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
}

/// A checkpassword program as a site writes one: reads fd 3, accepts
/// `chk`/`chk pw "x"` and `dan`, says HOME and a Maildir, 111 for `temp`,
/// hangs for `slow`, refuses anyone else.
const CHECKPASSWORD: &str = r#"#!/bin/sh
input=$(head -c 512 <&3 | tr '\0' '\n')
user=$(printf '%s\n' "$input" | sed -n 1p)
pass=$(printf '%s\n' "$input" | sed -n 2p)
printf '%s|%s|%s\n' "$user" "$pass" "$SERVICE $TCPREMOTEIP" >> "$LOGFILE_DIR/seen"
case "$user" in
  temp) exit 111 ;;
  slow) sleep 30; exit 1 ;;
esac
if [ "$user" = chk ] && [ "$pass" = 'chk pw "x"' ]; then
  HOME="$LOGFILE_DIR/home/chk"; USER=chk; export HOME USER
  userdb_mail="maildir:$LOGFILE_DIR/maildirs/chk"; export userdb_mail
  exec "$@"
fi
if [ "$user" = dan ] && [ "$pass" = danpw ]; then
  HOME="$LOGFILE_DIR/home/dan"; USER=daniel; export HOME USER
  exec "$@"
fi
exit 1
"#;

#[test]
fn a_checkpassword_program_decides_and_describes_the_account() {
    let s = server()
        .auth("checkpassword = \"checkpw\"\ncheckpassword_timeout_ms = 700\n")
        .before_start(|dir| {
            let text = CHECKPASSWORD.replace("$LOGFILE_DIR", &dir.display().to_string());
            std::fs::write(dir.join("checkpw"), text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("checkpw"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        })
        .start();
    // A password with a space and quotes arrives whole, over fd 3.
    let mut c = s.connect_tls();
    let r = c.cmd("LOGIN chk \"chk pw \\\"x\\\"\"");
    assert!(r.ok(), "{r:?}");
    assert!(c.append("INBOX", "()", &message("checked", "x")).ok());
    assert!(
        s.path().join("maildirs/chk/cur").is_dir(),
        "the Maildir the program named"
    );
    // USER names the account; HOME places its Maildir ({home}/Maildir is
    // not the harness's template, which names mail/{user}).
    assert!(Pop::tls(s.pop3s).login("dan", "danpw").starts_with("+OK"));
    assert!(s.path().join("mail/daniel/Maildir").is_dir());
    // The passwd-file is tried first.
    assert!(s.connect().cmd(&format!("LOGIN alice {ALICE_PW}")).ok());
    // Wrong password; a temporary failure; a program that hangs is killed
    // at the timeout and the login told to try again.
    let r = s.connect().cmd("LOGIN chk wrong");
    assert!(r.no() && r.has("[AUTHENTICATIONFAILED]"), "{r:?}");
    let r = s.connect().cmd("LOGIN temp x");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    let t = std::time::Instant::now();
    let r = s.connect().cmd("LOGIN slow x");
    assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "not the 30 s the program sleeps"
    );
    // Names with shell metacharacters are data, never a command.
    let r = s.connect().cmd("LOGIN \"$(touch pwned);`touch pwned2`\" x");
    assert!(r.no(), "{r:?}");
    assert!(!s.path().join("pwned").exists() && !s.path().join("pwned2").exists());
    let seen = std::fs::read_to_string(s.path().join("seen")).unwrap();
    assert!(seen.contains("chk|chk pw \"x\"|imap 127.0.0.1"), "{seen}");
    assert!(seen.contains("dan|danpw|pop3 127.0.0.1"), "{seen}");
    assert!(seen.contains("$(touch pwned)"), "{seen}");
    // A delivery cannot ask the program whether an account exists.
    let mut d = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["deliver", "--user", "chk", "--config"])
        .arg(s.path().join("tern.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut d.stdin.take().unwrap(), &message("to chk", "x")).unwrap();
    assert_eq!(d.wait().unwrap().code(), Some(67), "unknown user");
}

#[test]
fn postgresql_over_tls_with_the_certificate_verified() {
    let db = Db::start("postgres");
    db.sql(SCHEMA);
    let mail = tempfile::tempdir().unwrap();
    db.sql(&rows(mail.path()));
    let ca = db.dir.path().join("db/data/ca.crt");
    let login = |url: &str| {
        let s = server()
            .config(&format!(
                "[[auth.sql]]\nurl = \"{url}\"\npassword_query = \"{QUERY}\"\ntimeout_ms = 3000\n"
            ))
            .start();
        let r = s.connect_tls().cmd("LOGIN ann@example.org annpw");
        // While the server runs, its pooled connection is open.
        let ssl = db.sql("SELECT 'tls=' || count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name <> 'psql';");
        (r.ok(), r, ssl)
    };
    // verify-full against the database's CA: logs in, over TLS.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        ca.display()
    );
    let (ok, r, ssl) = login(&url);
    assert!(ok, "{r:?}");
    assert!(ssl.contains("tls=1"), "tern's connection uses TLS: {ssl}");
    // Without sslmode (the default, "prefer": TLS when offered, no
    // verification) the same database answers too.
    let (ok, _, _) = login(&db.url());
    assert!(ok);
    // A certificate that does not verify: no login, a temporary failure.
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = other.path().join("ca.pem");
    tern_server::tls::generate_self_signed(&["x".into()], &wrong_ca, &other.path().join("k.pem"))
        .unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url(),
        wrong_ca.display()
    );
    let (ok, r, _) = login(&url);
    assert!(!ok && r.has("[UNAVAILABLE]"), "{r:?}");
}

/// Real system accounts, made for the test with useradd and chpasswd and
/// removed after it.
pub(crate) struct SystemUser(String);

impl SystemUser {
    pub(crate) fn create(name: &str, password: &str, extra: &[&str]) -> SystemUser {
        let _ = Command::new("userdel")
            .args(["-r", name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh"])
            .args(extra)
            .arg(name)
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        let mut c = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut c.stdin.take().unwrap(),
            format!("{name}:{password}\n").as_bytes(),
        )
        .unwrap();
        assert!(c.wait().unwrap().success(), "chpasswd {name}");
        SystemUser(name.to_owned())
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn system_accounts_log_in_with_their_shadow_passwords() {
    use std::os::unix::fs::MetadataExt;
    let pid = std::process::id() % 100_000;
    let (a, b, sys) = (
        format!("ternsa{pid}"),
        format!("ternsb{pid}"),
        format!("ternsr{pid}"),
    );
    let _ua = SystemUser::create(&a, "apw one", &[]);
    // chpasswd writes Debian's default (yescrypt); -c SHA512 for the other.
    let _ub = SystemUser::create(&b, "bpw", &[]);
    let mut c = Command::new("chpasswd")
        .args(["-c", "SHA512"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut c.stdin.take().unwrap(),
        format!("{b}:bpw\n").as_bytes(),
    )
    .unwrap();
    assert!(c.wait().unwrap().success());
    let _ur = SystemUser::create(&sys, "rpw", &["-r"]);
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let hash_of = |u: &str| {
        shadow
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{u}:")))
            .and_then(|r| r.split(':').next())
            .unwrap_or("")
            .to_owned()
    };
    assert!(hash_of(&a).starts_with("$y$"), "{}", hash_of(&a));
    assert!(hash_of(&b).starts_with("$6$"), "{}", hash_of(&b));
    let s = server()
        .auth("system_users = true\n")
        .mail("maildir = \"{home}/Maildir\"\n")
        .start();
    let mut imap = s.connect_tls();
    assert!(imap.cmd(&format!("LOGIN {a} \"apw one\"")).ok());
    assert!(imap.append("INBOX", "()", &message("system", "x")).ok());
    let md = format!("/home/{a}/Maildir");
    let owner = std::fs::metadata(format!("/home/{a}")).unwrap().uid();
    assert_ne!(owner, 0);
    for d in ["", "/cur", "/new", "/tmp"] {
        assert_eq!(
            std::fs::metadata(format!("{md}{d}")).unwrap().uid(),
            owner,
            "{md}{d} belongs to the account"
        );
    }
    assert!(Pop::tls(s.pop3s).login(&b, "bpw").starts_with("+OK"));
    // Wrong passwords; an account below system_min_uid.
    assert!(s.connect().cmd(&format!("LOGIN {a} wrong")).no());
    assert!(s.connect().cmd(&format!("LOGIN {sys} rpw")).no());
    // A password changed with chpasswd works at the next login.
    let mut c = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut c.stdin.take().unwrap(),
        format!("{a}:new pw\n").as_bytes(),
    )
    .unwrap();
    assert!(c.wait().unwrap().success());
    assert!(s.connect().cmd(&format!("LOGIN {a} \"new pw\"")).ok());
    assert!(s.connect().cmd(&format!("LOGIN {a} \"apw one\"")).no());
    // Dropping to one mail user would leave /etc/shadow unreadable: such a
    // configuration does not start.
    let text = std::fs::read_to_string(s.path().join("tern.toml")).unwrap();
    let bad = s.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("[mail]\n", "[mail]\nuser = \"nobody\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.system_users"));
}

/// A PAM service file of the test's (`/etc/pam.d/NAME`), removed after it.
struct PamService(std::path::PathBuf);

impl PamService {
    fn create(name: &str, text: &str) -> PamService {
        let p = std::path::Path::new("/etc/pam.d").join(name);
        std::fs::write(&p, text).unwrap();
        PamService(p)
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn pam_checks_system_accounts_through_a_real_service() {
    use std::os::unix::fs::MetadataExt;
    let pid = std::process::id() % 100_000;
    let (a, b) = (format!("ternpa{pid}"), format!("ternpb{pid}"));
    let _ua = SystemUser::create(&a, "apw one", &[]);
    let _ub = SystemUser::create(&b, "bpw", &[]);
    // pam_exec records what PAM was told (service, user, client address);
    // pam_unix checks the password and the account.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pam.log");
    let script = dir.path().join("record.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$PAM_SERVICE $PAM_USER $PAM_RHOST\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stack = format!(
        "auth required pam_exec.so quiet {}\nauth required pam_unix.so nodelay\naccount required pam_unix.so\n",
        script.display()
    );
    let svc = format!("ternt{pid}");
    let _imap = PamService::create(&format!("{svc}-imap"), &stack);
    // POP3's service refuses everyone.
    let _pop3 = PamService::create(
        &format!("{svc}-pop3"),
        "auth required pam_deny.so\naccount required pam_deny.so\n",
    );
    let s = server()
        .config(&format!("[auth.pam]\nservice = \"{svc}-%s\"\n"))
        .mail("maildir = \"{home}/Maildir\"\n")
        .start();
    let mut imap = s.connect_tls();
    assert!(imap.cmd(&format!("LOGIN {a} \"apw one\"")).ok());
    assert!(imap.append("INBOX", "()", &message("pam", "x")).ok());
    let owner = std::fs::metadata(format!("/home/{a}")).unwrap().uid();
    assert_ne!(owner, 0);
    assert_eq!(
        std::fs::metadata(format!("/home/{a}/Maildir/cur"))
            .unwrap()
            .uid(),
        owner
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("{svc}-imap {a} 127.0.0.1")),
        "{logged}"
    );
    // SASL PLAIN goes through PAM as well.
    let plain = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("\0{b}\0bpw"),
    );
    assert!(s.connect().cmd(&format!("AUTHENTICATE PLAIN {plain}")).ok());
    // Refusals are refusals, not temporary failures.
    for (u, p) in [(a.as_str(), "wrong"), ("nosuchuser", "x"), (a.as_str(), "")] {
        let r = s.connect().cmd(&format!("LOGIN {u} \"{p}\""));
        assert!(r.no() && !r.has("UNAVAILABLE"), "{u} {p}: {r:?}");
    }
    // The POP3 service's stack says no, whatever the password.
    assert!(Pop::tls(s.pop3s).login(&b, "bpw").starts_with("-ERR"));
    // pam_acct_mgmt: an expired account is refused with its right password;
    // a locked one too.
    assert!(Command::new("chage")
        .args(["-E", "0", &b])
        .status()
        .unwrap()
        .success());
    assert!(s.connect().cmd(&format!("LOGIN {b} bpw")).no());
    assert!(Command::new("usermod")
        .args(["-L", &a])
        .status()
        .unwrap()
        .success());
    assert!(s.connect().cmd(&format!("LOGIN {a} \"apw one\"")).no());
}
