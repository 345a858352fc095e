//! `tern import courier-authlib`: the configuration files Debian's
//! courier-authlib packages install (unpacked by scripts/courier-authlib.sh),
//! edited as a site would, converted, and the accounts of each backend
//! logged into over IMAP and POP3 with TLS: a userdb, MariaDB with
//! courier-authlib's field settings and a default domain, PostgreSQL with a
//! `PGSQL_SELECT_CLAUSE`, and OpenLDAP.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::accounts::{Db, Slapd};
use crate::harness::*;

/// Debian's /etc/courier, unpacked.
fn debian_files() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/courier-authlib.sh");
    let out = Command::new("bash").arg(script).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Sets `key` to `value` in a courier-authlib rc file: its line replaced
/// (with any continuation lines), or one added, as an operator edits it.
fn set(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut found = false;
    let mut skipping = false;
    for line in text.lines() {
        if skipping {
            skipping = line.ends_with('\\');
            continue;
        }
        let is_key = line
            .strip_prefix(key)
            .is_some_and(|r| r.starts_with([' ', '\t', '=']));
        if is_key {
            skipping = line.ends_with('\\');
            if !found {
                out.push(format!("{key}\t{value}"));
            }
            found = true;
        } else {
            out.push(line.to_owned());
        }
    }
    if !found {
        out.push(format!("{key}\t{value}"));
    }
    std::fs::write(path, out.join("\n") + "\n").unwrap();
}

fn import(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["import", "courier-authlib"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn debians_courier_authlib_files_convert_to_a_working_configuration() {
    let mysql = Db::start("mariadb");
    let pg = Db::start("postgres");
    let ldap = Slapd::start();
    let mail = tempfile::tempdir().unwrap();
    let m = mail.path().display().to_string();
    let etc = tempfile::tempdir().unwrap();
    let dir = etc.path().join("courier");
    std::fs::create_dir(&dir).unwrap();
    for f in ["authdaemonrc", "authmysqlrc", "authpgsqlrc", "authldaprc"] {
        std::fs::copy(debian_files().join(f), dir.join(f)).unwrap();
    }
    // The site's edits.
    let daemon = std::fs::read_to_string(dir.join("authdaemonrc")).unwrap();
    assert!(
        daemon.contains("authmodulelist=\"authpam\""),
        "Debian's default"
    );
    std::fs::write(
        dir.join("authdaemonrc"),
        daemon
            .replace(
                "authmodulelist=\"authpam\"",
                "authmodulelist=\"authuserdb authmysql authpgsql authldap\"",
            )
            .replace("DEFAULTOPTIONS=\"\"", "DEFAULTOPTIONS=\"disablewebmail=1\""),
    )
    .unwrap();
    let my = dir.join("authmysqlrc");
    for (k, v) in [
        ("MYSQL_SERVER", "127.0.0.1".to_owned()),
        ("MYSQL_PORT", mysql.port.to_string()),
        ("MYSQL_USERNAME", "tern".into()),
        ("MYSQL_PASSWORD", "ternpw".into()),
        ("MYSQL_DATABASE", "mail".into()),
        ("MYSQL_CLEAR_PWFIELD", "clear".into()),
        ("MYSQL_DEFAULT_DOMAIN", "example.org".into()),
        ("MYSQL_MAILDIR_FIELD", "maildir".into()),
        ("MYSQL_QUOTA_FIELD", "quota".into()),
        ("MYSQL_WHERE_CLAUSE", "active=1".into()),
    ] {
        set(&my, k, &v);
    }
    mysql.sql(&format!(
        "CREATE TABLE passwd (id VARCHAR(128) PRIMARY KEY, crypt VARCHAR(128), clear VARCHAR(128), \
         name VARCHAR(128), uid INT, gid INT, home VARCHAR(255), maildir VARCHAR(255), quota VARCHAR(64), active INT);\n\
         INSERT INTO passwd VALUES ('mia@example.org', '', 'miapw', 'Mia', 5000, 5000, '{m}/mia', '{m}/mia/Maildir', '2000000S', 1);\n\
         INSERT INTO passwd VALUES ('max@example.org', '{}', NULL, 'Max', 5000, 5000, '{m}/max', NULL, NULL, 1);\n\
         INSERT INTO passwd VALUES ('old@example.org', '', 'oldpw', 'Old', 5000, 5000, '{m}/old', NULL, NULL, 0);\n",
        tern_auth::scheme::hash_sha512_crypt("maxpw").unwrap().trim_start_matches("{SHA512-CRYPT}")
    ));
    let pgrc = dir.join("authpgsqlrc");
    set(
        &pgrc,
        "PGSQL_CONNECTION",
        &format!("host=127.0.0.1 port={} user=tern password=ternpw", pg.port),
    );
    set(&pgrc, "PGSQL_DATABASE", "mail");
    set(
        &pgrc,
        "PGSQL_SELECT_CLAUSE",
        "SELECT local || '@' || domain, '', pw, 5000, 5000, home, '', '' \\\n\
         \t\tFROM mailbox WHERE local = '$(local_part)' \\\n\
         \t\tAND domain = '$(domain)'",
    );
    pg.sql(&format!(
        "CREATE TABLE mailbox (local TEXT, domain TEXT, pw TEXT, home TEXT);\n\
         INSERT INTO mailbox VALUES ('pat', 'example.net', 'patpw', '{m}/pat');\n"
    ));
    let lrc = dir.join("authldaprc");
    for (k, v) in [
        ("LDAP_URI", format!("ldap://127.0.0.1:{}", ldap.port)),
        ("LDAP_BASEDN", "ou=people, dc=example, dc=org".into()),
        ("LDAP_BINDDN", "cn=admin, dc=example, dc=org".into()),
        ("LDAP_BINDPW", "adminpw".into()),
        ("LDAP_AUTHBIND", "1".into()),
        ("LDAP_MAILDIR", "homeDirectory".into()),
    ] {
        set(&lrc, k, &v);
    }
    ldap.add(&format!(
        "dn: uid=lee,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
         uid: lee\ncn: lee\nsn: lee\nmail: lee@example.com\nuserPassword: leepw\n\
         uidNumber: 5000\ngidNumber: 5000\nhomeDirectory: {m}/lee\n\n"
    ));
    std::fs::write(
        dir.join("userdb"),
        format!("ula\tuid=5000|gid=5000|home={m}/ula|systempw={{PLAIN}}ulapw\n"),
    )
    .unwrap();

    let toml = import(&dir);
    // What does not carry over is said, not dropped.
    assert!(toml.contains("LDAP_DEFAULTDELIVERY"), "{toml}");
    assert!(toml.contains("columns = \"courier\""), "{toml}");
    assert!(
        toml.contains("default_options = \"disablewebmail=1\""),
        "{toml}"
    );
    assert!(!toml.contains("$("), "every substitution is bound: {toml}");
    // The [auth] keys go to the harness's [auth]; the tables after.
    let body = toml.split_once("\n[auth]\n").unwrap().1;
    let (auth_keys, tables) = body.split_once("\n[[").unwrap();
    let s = server()
        .auth(auth_keys)
        .config(&format!("[[{tables}"))
        .start();
    let ok = |u: &str, pw: &str| {
        let r = s.connect_tls().cmd(&format!("LOGIN \"{u}\" \"{pw}\""));
        assert!(r.ok(), "{u}: {r:?}");
        let p = Pop::tls(s.pop3s).login(u, pw);
        assert!(p.starts_with("+OK"), "{u}: {p}");
    };
    // MariaDB: a bare name gets the default domain; the clear field; a
    // crypt field; the maildir and quota fields.
    ok("mia", "miapw");
    ok("max@example.org", "maxpw");
    assert!(Path::new(&format!("{m}/mia/Maildir/cur")).is_dir());
    let mut c = s.connect_tls();
    assert!(c.cmd("LOGIN mia@example.org miapw").ok());
    assert!(c.cmd("GETQUOTAROOT INBOX").has("1953"), "the quota field");
    // PostgreSQL through the select clause, LDAP by bind, the userdb.
    ok("pat@example.net", "patpw");
    ok("lee@example.com", "leepw");
    ok("ula", "ulapw");
    assert!(Path::new(&format!("{m}/lee/cur")).is_dir(), "LDAP_MAILDIR");
    // The WHERE clause, wrong passwords, and injection through the
    // substitutions that are now parameters.
    for (u, pw) in [
        ("old@example.org", "oldpw"),
        ("mia", "wrong"),
        ("pat@example.net", "wrong"),
        ("pat' OR '1'='1@example.net", "patpw"),
        ("x@example.net' OR '1'='1", "patpw"),
    ] {
        let r = s.connect_tls().cmd(&format!("LOGIN \"{u}\" \"{pw}\""));
        assert!(r.no(), "{u}: {r:?}");
    }
    let count = pg.sql("SELECT count(*) FROM mailbox;");
    assert!(
        count.lines().any(|l| l.trim() == "1"),
        "the database is unchanged: {count}"
    );
}

#[test]
fn a_substitution_that_cannot_be_bound_is_reported_not_pasted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("authdaemonrc"),
        "authmodulelist=\"authmysql authpam\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("authmysqlrc"),
        "MYSQL_SERVER localhost\nMYSQL_SELECT_CLAUSE SELECT id, crypt, '' FROM u WHERE id = '$(local_part)@$(domain)'\n",
    )
    .unwrap();
    let toml = import(dir.path());
    assert!(
        toml.contains("#   MYSQL_SELECT_CLAUSE: a $(...) substitution"),
        "{toml}"
    );
    assert!(toml.contains("password_query = \"-- rewrite:"), "{toml}");
    // authpam becomes PAM with Courier's service names, and says what the
    // [mail] section needs; the TOML is well formed.
    assert!(toml.contains("[auth.pam]\nservice = \"%s\""), "{toml}");
    assert!(
        toml.contains("#   authpam: system accounts need [mail] allow_root = true"),
        "{toml}"
    );
    let parsed: toml::Value = toml::from_str(&toml).unwrap();
    assert_eq!(parsed["auth"]["pam"]["service"].as_str(), Some("%s"));
    // authshadow (and authpwd) become system_users.
    std::fs::write(
        dir.path().join("authdaemonrc"),
        "authmodulelist=\"authshadow\"\n",
    )
    .unwrap();
    let toml = import(dir.path());
    let parsed: toml::Value = toml::from_str(&toml).unwrap();
    assert_eq!(
        parsed["auth"]["system_users"].as_bool(),
        Some(true),
        "{toml}"
    );
    // LDAP_TLS=1 is StartTLS.
    std::fs::write(
        dir.path().join("authdaemonrc"),
        "authmodulelist=\"authldap\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("authldaprc"),
        "LDAP_URI ldap://ldap.example.org\nLDAP_TLS 1\nLDAP_BASEDN ou=people, dc=example, dc=org\n",
    )
    .unwrap();
    let toml = import(dir.path());
    let parsed: toml::Value = toml::from_str(&toml).unwrap();
    assert_eq!(
        parsed["auth"]["ldap"][0]["starttls"].as_bool(),
        Some(true),
        "{toml}"
    );
    // Without an authdaemonrc there is nothing to convert.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["import", "courier-authlib"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
