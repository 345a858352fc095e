//! A user database in Dovecot's passwd-file format.
//!
//! `user:password:uid:gid:gecos:home:shell:extra`, where `extra` is a
//! space-separated list of `key=value` fields: `mail=PATH` (or Dovecot's
//! `userdb_mail=maildir:PATH`), `quota=...`, `mailhost=...`. Lines that are
//! empty or start with `#` are skipped. The file is re-read when it changes,
//! so an operator's edit takes effect without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::AuthError;

/// One user of the passwd-file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Login name (`local` or `local@domain`).
    pub user: String,
    /// The stored password hash, `{SCHEME}...`.
    pub password: String,
    /// Home directory (may be empty).
    pub home: String,
    /// Mail location from `mail=` / `userdb_mail=`, if any.
    pub mail: Option<String>,
    /// Every `key=value` extra field.
    pub extra: HashMap<String, String>,
}

/// Users by login name.
type Users = Arc<HashMap<String, UserEntry>>;

/// The parsed passwd-file, re-read when its mtime changes.
#[derive(Debug)]
pub struct PasswdFile {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, Users)>>,
}

impl PasswdFile {
    /// Opens and parses the file once, so a broken file is reported at start.
    ///
    /// # Errors
    /// [`AuthError::Io`] or [`AuthError::BadLine`].
    pub fn open(path: &Path) -> Result<PasswdFile, AuthError> {
        let f = PasswdFile {
            path: path.to_owned(),
            cache: Mutex::new(None),
        };
        f.users()?;
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn users(&self) -> Result<Users, AuthError> {
        let io = |source| AuthError::Io {
            path: self.path.clone(),
            source,
        };
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(io)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, users)) = cache.as_ref() {
            if *t == mtime {
                return Ok(users.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(io)?;
        let users = Arc::new(parse(&self.path, &text)?);
        *cache = Some((mtime, users.clone()));
        Ok(users)
    }

    /// Looks a user up.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn lookup(&self, user: &str) -> Result<Option<UserEntry>, AuthError> {
        Ok(self.users()?.get(user).cloned())
    }
}

/// Parses a whole passwd-file.
///
/// # Errors
/// [`AuthError::BadLine`] for a line without a password field.
pub fn parse(path: &Path, text: &str) -> Result<HashMap<String, UserEntry>, AuthError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(8, ':').collect();
        if fields.len() < 2 || fields[0].is_empty() {
            return Err(AuthError::BadLine {
                path: path.to_owned(),
                line: i + 1,
                problem: "expected user:password[:uid:gid:gecos:home:shell:extra]",
            });
        }
        let user = fields[0].to_owned();
        // A `{SCHEME}` hash may itself contain ':' only in schemes we do not
        // use; crypt strings never do.
        let password = fields[1].to_owned();
        let home = fields.get(5).copied().unwrap_or("").to_owned();
        let mut extra = HashMap::new();
        if let Some(x) = fields.get(7) {
            for kv in x.split_ascii_whitespace() {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                extra.insert(k.to_owned(), v.to_owned());
            }
        }
        let mail = extra
            .get("mail")
            .cloned()
            .or_else(|| extra.get("userdb_mail").cloned())
            .map(|m| m.strip_prefix("maildir:").map(str::to_owned).unwrap_or(m))
            .map(|m| m.split(':').next().unwrap_or("").to_owned());
        out.insert(
            user.clone(),
            UserEntry {
                user,
                password,
                home,
                mail,
                extra,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dovecot_lines() {
        let text = "# comment\nalice:{PLAIN}pw:1000:1000::/home/alice::mail=/var/mail/alice quota=10M\n\
                    bob@example.org:{PLAIN}x::::/home/bob::userdb_mail=maildir:~/Maildir:LAYOUT=fs\ncarol:{PLAIN}c\n";
        let users = parse(Path::new("users"), text).unwrap();
        assert_eq!(users["alice"].mail.as_deref(), Some("/var/mail/alice"));
        assert_eq!(users["alice"].extra["quota"], "10M");
        assert_eq!(users["alice"].home, "/home/alice");
        assert_eq!(users["bob@example.org"].mail.as_deref(), Some("~/Maildir"));
        assert_eq!(users["carol"].mail, None);
        assert!(parse(Path::new("u"), "nopassword\n").is_err());
    }
}
