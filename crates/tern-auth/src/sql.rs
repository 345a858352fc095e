//! Accounts in an SQL database: PostgreSQL, MySQL/MariaDB or SQLite,
//! through sqlx with a pool.
//!
//! The operator writes the query, as Dovecot's `password_query` and
//! Courier's `MYSQL_SELECT_CLAUSE`, naming what it needs as parameters:
//! `:user` (the login name as given), `:local` and `:domain` (its parts
//! around the last `@`), `:service` (`imap`, `pop3`, `deliver`) and
//! `:remote` (the client's address). Each is *bound* (`$1` for PostgreSQL,
//! `?` for the others), never pasted into the text, so no login name can
//! change the query. Result columns are read by name: `password` (the
//! stored hash, `{SCHEME}...`), and any of `user`, `home`, `maildir` (or
//! `mail`), `uid`, `gid`, `quota`, `mailhost`, `options`; other columns are
//! kept as extra fields. No row: no such user. More than one: the database
//! is answering wrongly, which is a temporary failure, never a login.
//!
//! The pool connects lazily: a database that is down at start delays
//! nothing, and a query that cannot get a connection or an answer within
//! the configured time is a temporary failure (`NO [UNAVAILABLE]`), never
//! a hang and never "wrong password".

use std::collections::HashMap;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Column, Row};

use crate::cache::AnswerCache;
use crate::passwd_file::UserEntry;
use crate::AuthError;

/// The parameters a query may name.
pub const PARAMETERS: [&str; 5] = ["user", "local", "domain", "service", "remote"];

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `postgres://`: placeholders `$1`, `$2`...
    Postgres,
    /// `mysql://` (MariaDB too) and `sqlite:`: placeholders `?`.
    Question,
}

impl Dialect {
    /// The dialect of a database URL.
    ///
    /// # Errors
    /// A URL of no driver tern has.
    pub fn of(url: &str) -> Result<Dialect, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else if url.starts_with("mysql://")
            || url.starts_with("mariadb://")
            || url.starts_with("sqlite:")
        {
            Ok(Dialect::Question)
        } else {
            Err("the URL must start with postgres://, mysql:// or sqlite:".to_owned())
        }
    }
}

/// A query with its named parameters turned into the driver's
/// placeholders, and the names in the order they are to be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The text sent to the database.
    pub sql: String,
    /// Parameter names, one per placeholder.
    pub binds: Vec<&'static str>,
}

/// Turns `:name` parameters into placeholders, leaving string literals,
/// quoted identifiers, comments and PostgreSQL's `::` casts alone.
///
/// # Errors
/// A parameter tern does not know, or a literal left open.
pub fn prepare(query: &str, dialect: Dialect) -> Result<Prepared, String> {
    let b = query.as_bytes();
    let mut sql = String::with_capacity(query.len());
    let mut binds = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let end = b[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .map(|p| i + 1 + p)
                    .ok_or_else(|| "a quoted string or name is not closed".to_owned())?;
                sql.push_str(&query[i..=end]);
                i = end + 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p);
                sql.push_str(&query[i..end]);
                i = end;
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                sql.push_str("::");
                i += 2;
            }
            b':' if b.get(i + 1).is_some_and(|x| x.is_ascii_alphabetic()) => {
                let start = i + 1;
                let end = b[start..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == b'_'))
                    .map_or(b.len(), |p| start + p);
                let name = &query[start..end];
                let known = PARAMETERS.iter().find(|p| **p == name).ok_or_else(|| {
                    format!(
                        ":{name} is not a parameter (use :{})",
                        PARAMETERS.join(", :")
                    )
                })?;
                binds.push(*known);
                match dialect {
                    Dialect::Postgres => sql.push_str(&format!("${}", binds.len())),
                    Dialect::Question => sql.push('?'),
                }
                i = end;
            }
            _ => {
                let next = b[i + 1..]
                    .iter()
                    .position(|x| matches!(x, b'\'' | b'"' | b'`' | b'-' | b':'))
                    .map_or(b.len(), |p| i + 1 + p);
                sql.push_str(&query[i..next]);
                i = next;
            }
        }
    }
    Ok(Prepared { sql, binds })
}

/// What a lookup is about.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The login name as given.
    pub user: &'a str,
    /// `imap`, `pop3` or `deliver`.
    pub service: &'a str,
    /// The client's address, or empty.
    pub remote: &'a str,
}

impl Request<'_> {
    fn value(&self, name: &str) -> String {
        let (local, domain) = self.user.rsplit_once('@').unwrap_or((self.user, ""));
        match name {
            "user" => self.user,
            "local" => local,
            "domain" => domain,
            "service" => self.service,
            "remote" => self.remote,
            _ => "",
        }
        .to_owned()
    }
}

/// One configured database.
#[derive(Debug)]
pub struct SqlBackend {
    pool: AnyPool,
    query: Prepared,
    timeout: Duration,
    name: String,
    cache: Option<AnswerCache>,
    courier_columns: bool,
}

/// A column's value as text, whatever its SQL type.
fn text(row: &AnyRow, i: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map(|n| n.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map(|b| String::from_utf8_lossy(&b).into_owned());
    }
    None
}

impl SqlBackend {
    /// A backend over `url` with `query` (checked now; the database is not
    /// contacted until the first login).
    ///
    /// # Errors
    /// A bad URL or query, as text for the operator.
    pub fn new(
        url: &str,
        query: &str,
        pool_size: u32,
        timeout: Duration,
    ) -> Result<SqlBackend, String> {
        sqlx::any::install_default_drivers();
        let query = prepare(query, Dialect::of(url)?)?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(timeout)
            .connect_lazy(url)
            .map_err(|e| format!("cannot use {}: {e}", redact(url)))?;
        Ok(SqlBackend {
            pool,
            query,
            timeout,
            name: redact(url),
            cache: None,
            courier_columns: false,
        })
    }

    /// Reads result columns by position in courier-authlib's order, as
    /// its `MYSQL_SELECT_CLAUSE`/`PGSQL_SELECT_CLAUSE` return them:
    /// username, cryptpw, clearpw, uid, gid, home, maildir, quota,
    /// fullname, options (the later ones may be absent). The password is
    /// cryptpw, or clearpw (as `{PLAIN}`) when cryptpw is empty.
    pub fn with_courier_columns(mut self, on: bool) -> SqlBackend {
        self.courier_columns = on;
        self
    }

    /// Keeps answers for `ttl` (nothing is kept when it is zero), at most
    /// `max` of them.
    pub fn with_cache(mut self, ttl: Duration, max: usize) -> SqlBackend {
        self.cache = AnswerCache::new(ttl, max);
        self
    }

    /// The account `req` names, or `None` when there is none.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the database does not answer in
    /// time, fails, or answers with more than one row.
    pub async fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let values: Vec<String> = self.query.binds.iter().map(|n| req.value(n)).collect();
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&values)) {
            return Ok(hit);
        }
        let found = self.query_database(req, &values).await?;
        if let Some(c) = &self.cache {
            c.put(values, found.clone());
        }
        Ok(found)
    }

    async fn query_database(
        &self,
        req: &Request<'_>,
        values: &[String],
    ) -> Result<Option<UserEntry>, AuthError> {
        let mut q = sqlx::query(&self.query.sql);
        for v in values {
            q = q.bind(v.clone());
        }
        let rows = match tokio::time::timeout(self.timeout, q.fetch_all(&self.pool)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(database = %self.name, cause = %e, "account query failed");
                return Err(AuthError::Unavailable(format!(
                    "database {}: {e}",
                    self.name
                )));
            }
            Err(_) => {
                tracing::error!(database = %self.name, "account query timed out");
                return Err(AuthError::Unavailable(format!(
                    "database {} did not answer",
                    self.name
                )));
            }
        };
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(self.entry(req, &rows[0]))),
            n => {
                tracing::error!(database = %self.name, rows = n, "account query returned more than one row");
                Err(AuthError::Unavailable(
                    "the account query returned more than one row".into(),
                ))
            }
        }
    }

    fn entry(&self, req: &Request<'_>, row: &AnyRow) -> UserEntry {
        let mut fields: HashMap<String, String> = HashMap::new();
        if self.courier_columns {
            const ORDER: [&str; 10] = [
                "user", "cryptpw", "clearpw", "uid", "gid", "home", "maildir", "quota", "fullname",
                "options",
            ];
            for (i, name) in ORDER.iter().enumerate().take(row.columns().len()) {
                if let Some(v) = text(row, i).filter(|v| !v.is_empty()) {
                    fields.insert((*name).to_owned(), v);
                }
            }
            let crypt = fields.remove("cryptpw");
            let clear = fields.remove("clearpw");
            if let Some(p) = crypt.or_else(|| clear.map(|c| format!("{{PLAIN}}{c}"))) {
                fields.insert("password".to_owned(), p);
            }
        } else {
            for (i, c) in row.columns().iter().enumerate() {
                if let Some(v) = text(row, i) {
                    fields.insert(c.name().to_ascii_lowercase(), v);
                }
            }
        }
        let user = fields.remove("user").unwrap_or_else(|| req.user.to_owned());
        let password = fields.remove("password").unwrap_or_default();
        let home = fields.remove("home").unwrap_or_default();
        let mail = fields.remove("maildir").or_else(|| fields.remove("mail"));
        if let Some(opts) = fields.remove("options") {
            // courier-authlib's form: `disableimap=1,group=staff`.
            for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                let (k, v) = o.split_once('=').unwrap_or((o, "1"));
                match fields.get_mut(k) {
                    // Several `group=` options: every group is kept.
                    Some(g) if k == "group" => {
                        g.push(',');
                        g.push_str(v);
                    }
                    _ => {
                        fields.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        UserEntry {
            user,
            password,
            home,
            mail,
            extra: fields,
            auth: crate::passwd_file::EntryAuth::Hash,
            system: false,
        }
    }
}

/// A URL with its password replaced, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_placeholders_and_nothing_else_does() {
        let p = prepare(
            "SELECT password, home::text FROM users WHERE login = :user AND note <> ':user' -- :domain\n AND d = :domain",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(
            p.sql,
            "SELECT password, home::text FROM users WHERE login = $1 AND note <> ':user' -- :domain\n AND d = $2"
        );
        assert_eq!(p.binds, ["user", "domain"]);
        let q = prepare(
            "SELECT * FROM `u` WHERE a=:local AND b=:local",
            Dialect::Question,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT * FROM `u` WHERE a=? AND b=?");
        assert_eq!(q.binds, ["local", "local"]);
        assert!(prepare("SELECT 1 WHERE x = :password", Dialect::Question).is_err());
        assert!(prepare("SELECT 'open", Dialect::Question).is_err());
    }

    #[test]
    fn request_values() {
        let r = Request {
            user: "a@b@example.org",
            service: "imap",
            remote: "192.0.2.1",
        };
        assert_eq!(r.value("local"), "a@b");
        assert_eq!(r.value("domain"), "example.org");
        assert_eq!(r.value("remote"), "192.0.2.1");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://tern:s3cret@127.0.0.1:5432/mail"),
            "postgres://tern:***@127.0.0.1:5432/mail"
        );
        assert_eq!(
            redact("sqlite:/var/lib/tern/users.db"),
            "sqlite:/var/lib/tern/users.db"
        );
    }

    #[tokio::test]
    async fn sqlite_lookups() {
        let t = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}?mode=rwc", t.path().join("u.db").display());
        let b = SqlBackend::new(
            &url,
            "SELECT login AS user, pw AS password, maildir, quota, options FROM users WHERE login = :user",
            2,
            Duration::from_secs(5),
        )
        .unwrap();
        sqlx::query(
            "CREATE TABLE users (login TEXT, pw TEXT, maildir TEXT, quota INTEGER, options TEXT)",
        )
        .execute(&b.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO users VALUES ('ann', '{PLAIN}x', '/m/ann', 1000, 'disablepop3=1')",
        )
        .execute(&b.pool)
        .await
        .unwrap();
        let req = |u| Request {
            user: u,
            service: "imap",
            remote: "",
        };
        let e = b.lookup(&req("ann")).await.unwrap().unwrap();
        assert_eq!(
            (e.password.as_str(), e.mail.as_deref()),
            ("{PLAIN}x", Some("/m/ann"))
        );
        assert_eq!(e.extra.get("quota").map(String::as_str), Some("1000"));
        assert_eq!(e.extra.get("disablepop3").map(String::as_str), Some("1"));
        assert!(b.lookup(&req("nobody")).await.unwrap().is_none());
        assert!(
            b.lookup(&req("ann' OR '1'='1")).await.unwrap().is_none(),
            "bound, not pasted"
        );
        // courier-authlib's positional layout: crypt first, else clear.
        let c = SqlBackend::new(
            &url,
            "SELECT login, CASE WHEN login = 'ann' THEN '' ELSE pw END, 'clear', 5000, 5000, '/home/' || login, maildir, quota FROM users WHERE login = :user",
            2,
            Duration::from_secs(5),
        )
        .unwrap()
        .with_courier_columns(true);
        sqlx::query("INSERT INTO users VALUES ('bo', '$6$x$y', '', NULL, NULL)")
            .execute(&c.pool)
            .await
            .unwrap();
        let e = c.lookup(&req("ann")).await.unwrap().unwrap();
        assert_eq!(e.password, "{PLAIN}clear");
        assert_eq!(
            (e.home.as_str(), e.mail.as_deref()),
            ("/home/ann", Some("/m/ann"))
        );
        assert_eq!(e.extra.get("uid").map(String::as_str), Some("5000"));
        let e = c.lookup(&req("bo")).await.unwrap().unwrap();
        assert_eq!((e.password.as_str(), e.mail.as_deref()), ("$6$x$y", None));
    }
}
