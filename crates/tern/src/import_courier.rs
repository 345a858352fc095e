//! `tern import courier-authlib DIR`: reads courier-authlib's configuration
//! (`authdaemonrc`, `authmysqlrc`, `authpgsqlrc`, `authldaprc`, the userdb
//! location) from DIR and writes the `[auth]` section tern needs for the
//! same accounts, with a comment for each setting it cannot carry over.
//!
//! Courier's query settings are turned into one query with bound
//! parameters: `'$(local_part)'`, `'$(domain)'` and `'$(service)'` in a
//! `*_SELECT_CLAUSE` become `:local`, `:domain` and `:service`; a
//! substitution that is not a whole quoted string cannot be bound and is
//! reported instead of being pasted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Largest configuration file read.
const MAX_FILE: u64 = 1 << 20;

/// The settings of one of courier-authlib's `*rc` files: `NAME value`
/// lines, `#` comments, a `\` at the end of a line continuing it.
fn parse_rc(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut logical = String::new();
    for line in text.lines() {
        if logical.is_empty() && line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let l = std::mem::take(&mut logical);
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        out.insert(
            k.to_owned(),
            v.split_whitespace().collect::<Vec<_>>().join(" "),
        );
    }
    out
}

/// `authdaemonrc`'s shell assignments: `name="value"`.
fn parse_shell(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn read(dir: &Path, name: &str) -> Result<Option<String>, String> {
    let p = dir.join(name);
    match std::fs::metadata(&p) {
        Ok(m) if m.len() > MAX_FILE => Err(format!("{}: larger than 1 MiB", p.display())),
        Ok(_) => std::fs::read_to_string(&p)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// A TOML string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A URL's user-info or path part, percent-encoded.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sql {
    MySql,
    Postgres,
}

impl Sql {
    fn prefix(self) -> &'static str {
        match self {
            Sql::MySql => "MYSQL_",
            Sql::Postgres => "PGSQL_",
        }
    }

    fn concat(self, a: &str, b: &str) -> String {
        match self {
            Sql::MySql => format!("CONCAT({a}, {b})"),
            Sql::Postgres => format!("({a} || {b})"),
        }
    }
}

/// An SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Replaces Courier's `$(local_part)`, `$(domain)` and `$(service)` by
/// bound parameters where each is a whole quoted string; `None` (with the
/// reason) where one is not.
fn bind_substitutions(clause: &str, default_domain: Option<&str>) -> Result<String, String> {
    let domain = match default_domain {
        Some(d) => format!("COALESCE(NULLIF(:domain, ''), {})", lit(d)),
        None => ":domain".to_owned(),
    };
    let mut out = clause.to_owned();
    for (name, param) in [
        ("local_part", ":local".to_owned()),
        ("domain", domain),
        ("service", ":service".to_owned()),
    ] {
        for quote in ['\'', '"'] {
            out = out.replace(&format!("{quote}$({name}){quote}"), &param);
        }
    }
    if out.contains("$(") {
        return Err(
            "a $(...) substitution inside a longer string (tern binds each value \
                    as a whole parameter and never pastes it into the query): rewrite \
                    it with CONCAT() around the bare $(...) value"
                .to_owned(),
        );
    }
    Ok(out)
}

/// The `[[auth.sql]]` of `authmysqlrc` or `authpgsqlrc`.
fn sql_backend(kind: Sql, rc: &HashMap<String, String>, notes: &mut Vec<String>) -> String {
    let p = kind.prefix();
    let get = |k: &str| rc.get(&format!("{p}{k}")).filter(|v| !v.is_empty());
    let (url, database) = match kind {
        Sql::MySql => {
            let host = get("SERVER").map_or("localhost", String::as_str);
            let port = get("PORT").filter(|p| *p != "0");
            let db = get("DATABASE").map_or("mysql", String::as_str);
            let mut url = format!(
                "mysql://{}:{}@{}{}/{}",
                pct(get("USERNAME").map_or("", String::as_str)),
                pct(get("PASSWORD").map_or("", String::as_str)),
                host,
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                pct(db)
            );
            if let Some(sock) = get("SOCKET") {
                let _ = write!(url, "?socket={}", pct(sock));
            }
            for k in [
                "SSL_KEY",
                "SSL_CERT",
                "SSL_CACERT",
                "SSL_CAPATH",
                "SSL_CIPHERS",
            ] {
                if get(k).is_some() {
                    notes.push(format!(
                        "{p}{k}: TLS to the database is not carried over; use a local socket or a private network"
                    ));
                }
            }
            if get("OPT").is_some_and(|o| o != "0") {
                notes.push(format!("{p}OPT: MySQL client flags are not carried over"));
            }
            (url, db.to_owned())
        }
        Sql::Postgres => {
            // `host=... port=... user=... password=... dbname=...`
            let conn: HashMap<&str, &str> = get("CONNECTION")
                .map(|c| {
                    c.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .collect()
                })
                .unwrap_or_default();
            let db = get("DATABASE")
                .map(String::as_str)
                .or_else(|| conn.get("dbname").copied())
                .unwrap_or("template1");
            let url = format!(
                "postgres://{}:{}@{}{}/{}",
                pct(conn.get("user").copied().unwrap_or("")),
                pct(conn.get("password").copied().unwrap_or("")),
                conn.get("host").copied().unwrap_or("localhost"),
                conn.get("port")
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default(),
                pct(db)
            );
            if conn.contains_key("sslmode") {
                notes.push(format!(
                    "{p}CONNECTION sslmode: TLS to the database is not carried over"
                ));
            }
            (url, db.to_owned())
        }
    };
    let default_domain = get("DEFAULT_DOMAIN").cloned();
    let mut courier_columns = false;
    let query = if let Some(clause) = get("SELECT_CLAUSE") {
        courier_columns = true;
        match bind_substitutions(clause, default_domain.as_deref()) {
            Ok(q) => q,
            Err(why) => {
                notes.push(format!(
                    "{p}SELECT_CLAUSE: {why}; the query below is left for you to rewrite"
                ));
                format!("-- rewrite: {clause}")
            }
        }
    } else {
        let login = get("LOGIN_FIELD").map_or("id", String::as_str);
        let table = get("USER_TABLE").map_or("passwd", String::as_str);
        let mut cols = vec![format!("{login} AS user")];
        let password = match (get("CRYPT_PWFIELD"), get("CLEAR_PWFIELD")) {
            (Some(c), Some(cl)) => format!(
                "COALESCE(NULLIF({c}, ''), {})",
                kind.concat("'{PLAIN}'", cl)
            ),
            (Some(c), None) => c.clone(),
            (None, Some(cl)) => kind.concat("'{PLAIN}'", cl),
            (None, None) => {
                notes.push(format!(
                    "{p}: neither CRYPT_PWFIELD nor CLEAR_PWFIELD is set"
                ));
                "NULL".to_owned()
            }
        };
        cols.push(format!("{password} AS password"));
        for (k, name) in [
            ("UID_FIELD", "uid"),
            ("GID_FIELD", "gid"),
            ("HOME_FIELD", "home"),
            ("MAILDIR_FIELD", "maildir"),
            ("QUOTA_FIELD", "quota"),
            ("AUXOPTIONS_FIELD", "options"),
        ] {
            if let Some(v) = get(k) {
                cols.push(format!("{v} AS {name}"));
            }
        }
        let key = match &default_domain {
            // Courier looks up user@DEFAULT_DOMAIN for a bare "user".
            Some(d) => format!(
                "CASE WHEN :domain = '' THEN {} ELSE :user END",
                kind.concat(":local", &lit(&format!("@{d}")))
            ),
            None => ":user".to_owned(),
        };
        let mut q = format!(
            "SELECT {} FROM {table} WHERE {login} = {key}",
            cols.join(", ")
        );
        if let Some(w) = get("WHERE_CLAUSE") {
            let _ = write!(q, " AND ({w})");
        }
        q
    };
    for k in [
        "DEFAULTDELIVERY",
        "CHPASS_CLAUSE",
        "ENUMERATE_CLAUSE",
        "CHARACTER_SET",
    ] {
        if get(k).is_some() {
            notes.push(format!("{p}{k}: not used by tern (delivery, password changes and enumeration are elsewhere)"));
        }
    }
    let file = match kind {
        Sql::MySql => "authmysqlrc",
        Sql::Postgres => "authpgsqlrc",
    };
    let mut out = format!("[[auth.sql]]\n# from {file}, database {database}\n");
    let _ = writeln!(out, "url = {}", q(&url));
    let _ = writeln!(out, "password_query = {}", q(&query));
    if courier_columns {
        out.push_str("columns = \"courier\"\n");
    }
    out
}

/// The `[[auth.ldap]]` of `authldaprc`.
fn ldap_backend(rc: &HashMap<String, String>, notes: &mut Vec<String>) -> String {
    let get = |k: &str| rc.get(k).filter(|v| !v.is_empty());
    let uris: Vec<String> = get("LDAP_URI")
        .map(|u| {
            u.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["ldap://localhost".to_owned()]);
    // LDAP_TLS=1 is StartTLS on ldap:// URIs; ldaps:// is TLS already.
    let starttls = get("LDAP_TLS").is_some_and(|t| t != "0");
    if starttls || uris.iter().any(|u| u.starts_with("ldaps://")) {
        notes.push("LDAP TLS: the servers' certificates are verified against the system's roots; set ca = \"...\" in [[auth.ldap]] for a CA of the site's own".to_owned());
    }
    let mail = get("LDAP_MAIL").map_or("mail", String::as_str);
    let filter = match get("LDAP_FILTER") {
        Some(f) => {
            let f = if f.starts_with('(') {
                f.clone()
            } else {
                format!("({f})")
            };
            format!("(&{f}({mail}=%u))")
        }
        None => format!("({mail}=%u)"),
    };
    // Courier's base DN and bind DN are written with spaces after commas.
    let dn = |s: &str| s.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    let mut out = String::from("[[auth.ldap]]\n# from authldaprc\n");
    let _ = writeln!(
        out,
        "uris = [{}]",
        uris.iter().map(|u| q(u)).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        out,
        "base = {}",
        q(&dn(get("LDAP_BASEDN").map_or("", String::as_str)))
    );
    let _ = writeln!(out, "filter = {}", q(&filter));
    if let Some(b) = get("LDAP_BINDDN") {
        let _ = writeln!(out, "bind_dn = {}", q(&dn(b)));
        let _ = writeln!(
            out,
            "bind_password = {}",
            q(get("LDAP_BINDPW").map_or("", String::as_str))
        );
    }
    if let Some(t) = get("LDAP_TIMEOUT").and_then(|t| t.parse::<u64>().ok()) {
        let _ = writeln!(out, "timeout_ms = {}", t * 1000);
    }
    if starttls {
        out.push_str("starttls = true\n");
    }
    out.push_str("[auth.ldap.attributes]\n");
    let authbind = get("LDAP_AUTHBIND").is_some_and(|v| v != "0");
    for (k, field) in [
        ("LDAP_HOMEDIR", "home"),
        ("LDAP_MAILDIR", "maildir"),
        ("LDAP_MAILDIRQUOTA", "quota"),
        ("LDAP_UID", "uid"),
        ("LDAP_GID", "gid"),
    ] {
        if let Some(a) = get(k) {
            let _ = writeln!(out, "{field} = {}", q(a));
        }
    }
    if !authbind {
        match (get("LDAP_CRYPTPW"), get("LDAP_CLEARPW")) {
            (Some(a), _) => {
                let _ = writeln!(out, "password = {}", q(a));
                if get("LDAP_CLEARPW").is_some() {
                    notes.push("LDAP_CLEARPW: only LDAP_CRYPTPW is read (a cleartext attribute alongside it is left unused)".to_owned());
                }
            }
            (None, Some(a)) => {
                let _ = writeln!(out, "clear_password = {}", q(a));
            }
            // Neither: check by binding, as LDAP_AUTHBIND would.
            (None, None) => {}
        }
    }
    if let Some(ids) = get("LDAP_GLOB_IDS") {
        notes.push(format!(
            "LDAP_GLOB_IDS {ids}: one uid/gid for all accounts is mail.user in tern"
        ));
    }
    for k in [
        "LDAP_AUXOPTIONS",
        "LDAP_DOMAIN",
        "LDAP_MAILROOT",
        "LDAP_EMAILMAP",
        "LDAP_DEREF",
        "LDAP_DEFAULTDELIVERY",
    ] {
        if let Some(v) = get(k) {
            if k == "LDAP_DEREF" && v == "never" {
                continue;
            }
            notes.push(format!("{k} {v}: not carried over"));
        }
    }
    out
}

/// What a system-account module needs besides its `[auth]` lines.
fn system_note(module: &str) -> String {
    format!(
        "{module}: system accounts need [mail] allow_root = true, no mail.user, and maildir = \"{{home}}/Maildir\" for ~/Maildir"
    )
}

/// Converts the configuration in `dir`: the TOML text.
///
/// # Errors
/// A file that cannot be read, or no `authdaemonrc` in `dir`.
pub fn convert(dir: &Path) -> Result<String, String> {
    let daemon =
        read(dir, "authdaemonrc")?.ok_or_else(|| format!("{}: no authdaemonrc", dir.display()))?;
    let daemon = parse_shell(&daemon);
    let modules: Vec<String> = daemon
        .get("authmodulelist")
        .map(|m| m.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut notes = Vec::new();
    let mut sections = Vec::new();
    let mut auth = String::from("[auth]\n");
    for m in &modules {
        match m.as_str() {
            "authuserdb" => {
                // Courier's userdb text source (what makeuserdb compiles).
                let _ = writeln!(auth, "userdb = {}", q(&dir.join("userdb").display().to_string()));
            }
            "authmysql" | "authpgsql" => {
                let (kind, file) = if m == "authmysql" {
                    (Sql::MySql, "authmysqlrc")
                } else {
                    (Sql::Postgres, "authpgsqlrc")
                };
                match read(dir, file)? {
                    Some(t) => sections.push(sql_backend(kind, &parse_rc(&t), &mut notes)),
                    None => notes.push(format!("{m}: no {file} in {}", dir.display())),
                }
            }
            "authldap" => match read(dir, "authldaprc")? {
                Some(t) => sections.push(ldap_backend(&parse_rc(&t), &mut notes)),
                None => notes.push(format!("authldap: no authldaprc in {}", dir.display())),
            },
            // System accounts: Courier's authpam asks the PAM service named
            // after the program (imap, pop3), which is tern's "%s".
            "authpam" => {
                sections.push("[auth.pam]\nservice = \"%s\"\n".to_owned());
                notes.push(system_note(m));
            }
            "authshadow" | "authpwd" => {
                let _ = writeln!(auth, "system_users = true");
                notes.push(system_note(m));
            }
            "authsqlite" => notes.push("authsqlite: write an [[auth.sql]] with url = \"sqlite:/path\" and a password_query by hand".to_owned()),
            other => notes.push(format!("{other}: no equivalent in tern")),
        }
    }
    if let Some(o) = daemon.get("DEFAULTOPTIONS").filter(|o| !o.is_empty()) {
        let _ = writeln!(auth, "default_options = {}", q(o));
    }
    let order: Vec<&str> = modules
        .iter()
        .map(String::as_str)
        .filter(|m| matches!(*m, "authuserdb" | "authmysql" | "authpgsql" | "authldap"))
        .collect();
    // tern tries the userdb, then the SQL databases in their order, then
    // LDAP.
    let rank = |m: &str| match m {
        "authuserdb" => 0,
        "authmysql" | "authpgsql" => 1,
        _ => 2,
    };
    let sorted = {
        let mut o = order.clone();
        o.sort_by_key(|m| rank(m));
        o
    };
    if order != sorted {
        notes.push(format!(
            "authmodulelist order {}: tern tries userdb, then the SQL databases, then LDAP",
            order.join(" ")
        ));
    }
    let mut out = format!(
        "# tern's [auth] for the courier-authlib configuration in {}\n# (tern import courier-authlib); merge it into tern.toml.\n",
        dir.display()
    );
    if !notes.is_empty() {
        out.push_str("#\n# Not carried over:\n");
        for n in &notes {
            let _ = writeln!(out, "#   {n}");
        }
    }
    out.push('\n');
    out.push_str(&auth);
    for s in sections {
        out.push('\n');
        out.push_str(&s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_files_join_continued_lines() {
        let rc = parse_rc("# c\nPGSQL_CONNECTION host=a \\\n\t port=5 \\\n user=u\nPGSQL_DATABASE\tmail\n\n#X y\n");
        assert_eq!(rc["PGSQL_CONNECTION"], "host=a port=5 user=u");
        assert_eq!(rc["PGSQL_DATABASE"], "mail");
        assert!(!rc.contains_key("#X"));
        let sh =
            parse_shell("authmodulelist=\"authuserdb authmysql\"\n#x=1\nDEFAULTOPTIONS=\"\"\n");
        assert_eq!(sh["authmodulelist"], "authuserdb authmysql");
        assert_eq!(sh["DEFAULTOPTIONS"], "");
    }

    #[test]
    fn substitutions_are_bound_or_refused() {
        assert_eq!(
            bind_substitutions(
                "WHERE u='$(local_part)' AND d='$(domain)' AND s=\"$(service)\"",
                None
            )
            .unwrap(),
            "WHERE u=:local AND d=:domain AND s=:service"
        );
        assert_eq!(
            bind_substitutions("d='$(domain)'", Some("ex.org")).unwrap(),
            "d=COALESCE(NULLIF(:domain, ''), 'ex.org')"
        );
        assert!(bind_substitutions("u='$(local_part)@$(domain)'", None).is_err());
        assert!(bind_substitutions("u=$(local_part)", None).is_err());
    }

    #[test]
    fn field_queries() {
        let rc = parse_rc(
            "MYSQL_SERVER db.example\nMYSQL_USERNAME ad min\nMYSQL_PASSWORD p@ss\nMYSQL_PORT 0\n\
             MYSQL_DATABASE mail\nMYSQL_USER_TABLE users\nMYSQL_CRYPT_PWFIELD crypt\nMYSQL_CLEAR_PWFIELD clear\n\
             MYSQL_LOGIN_FIELD id\nMYSQL_HOME_FIELD home\nMYSQL_DEFAULT_DOMAIN example.com\nMYSQL_WHERE_CLAUSE active=1\n",
        );
        let mut notes = Vec::new();
        let t = sql_backend(Sql::MySql, &rc, &mut notes);
        assert!(
            t.contains("url = \"mysql://ad%20min:p%40ss@db.example/mail\""),
            "{t}"
        );
        assert!(
            t.contains("COALESCE(NULLIF(crypt, ''), CONCAT('{PLAIN}', clear)) AS password"),
            "{t}"
        );
        assert!(t.contains("WHERE id = CASE WHEN :domain = '' THEN CONCAT(:local, '@example.com') ELSE :user END AND (active=1)"), "{t}");
        assert!(!t.contains("columns"));
        assert!(notes.is_empty(), "{notes:?}");
    }
}
