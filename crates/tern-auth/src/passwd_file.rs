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
    /// How the password is checked.
    pub auth: EntryAuth,
    /// A system account (`/etc/passwd`, through `system_users` or PAM):
    /// its uid is its own and its Maildir in its home.
    pub system: bool,
}

/// How an account's password is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EntryAuth {
    /// Against the stored hash in `password`, on a password thread.
    #[default]
    Hash,
    /// By binding to the LDAP directory that found the account, as `dn`.
    LdapBind {
        /// The backend's place in the directory.
        backend: usize,
        /// The account's distinguished name.
        dn: String,
    },
    /// By running a checkpassword program.
    Checkpassword {
        /// The backend's place in the directory.
        backend: usize,
    },
    /// By PAM.
    Pam {
        /// The backend's place in the directory.
        backend: usize,
    },
}

/// Where each user's line is in the file's text: an index built in one
/// pass, each entry parsed only when looked up, so that a file of a million
/// accounts is ready in a fraction of a second, not the seconds a parse of
/// every line into its fields takes.
#[derive(Debug)]
struct Index {
    text: Arc<str>,
    /// FxHash: the keys are the operator's, so no client can make them
    /// collide, and it builds a million-entry index several times faster.
    lines: rustc_hash::FxHashMap<Box<str>, (usize, usize)>,
}

impl Index {
    fn get(&self, user: &str) -> Option<UserEntry> {
        let &(start, end) = self.lines.get(user)?;
        parse_line(&self.text[start..end])
    }
}

type Users = Arc<Index>;

/// The parsed passwd-file, re-read when its mtime changes.
#[derive(Debug)]
pub struct PasswdFile {
    path: PathBuf,
    cache: Mutex<Option<Loaded>>,
}

/// The file as last read: its mtime, its users, and its decoy hash.
#[derive(Debug)]
struct Loaded {
    mtime: SystemTime,
    text: Arc<str>,
    /// The index and decoy, once built: at once for a small file, on a
    /// thread of its own for a large one, while lookups scan the text.
    built: Built,
}

/// The index and decoy of a text, set once they are built.
type Built = Arc<std::sync::OnceLock<(Users, Option<Arc<str>>)>>;

/// Files up to this size are indexed before the first lookup (and a bad
/// line in one fails the start); larger ones on a thread, so that the first
/// login after a start or an edit does not wait for a million lines.
const INDEX_AT_ONCE: usize = 4 << 20;

/// The line of `user` found by scanning the text (the first one, as the
/// index keeps), parsed.
fn scan(text: &str, user: &str) -> Option<UserEntry> {
    // A line starting with '#' is a comment, never a user (as the index
    // reads it).
    if user.is_empty() || user.starts_with('#') || user.contains([':', '\n']) {
        return None;
    }
    let start = if text.starts_with(user) && text[user.len()..].starts_with(':') {
        0
    } else {
        text.find(&format!("\n{user}:"))? + 1
    };
    let end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    parse_line(text[start..end].trim_end_matches('\r')).filter(|e| e.user == user)
}

/// For [`crate::fuzzing`]: when the text indexes, every user the index has
/// is found alike by the index and by a scan.
pub(crate) fn check_index_and_scan(text: &str) {
    let Ok((index, _)) = index(Path::new("fuzz"), Arc::from(text)) else {
        return;
    };
    for user in index.lines.keys() {
        assert_eq!(
            index.get(user),
            scan(text, user),
            "index and scan disagree on {user:?}"
        );
    }
}

/// What makes two hashes cost the same to check: the scheme and its
/// parameters, without salt and hash (`$argon2id$v=19$m=19456,t=2,p=1`,
/// `$6$rounds=5000`, `{PLAIN}`).
fn cost_class(hash: &str) -> &str {
    if let Some(end) = hash.strip_prefix('{').and_then(|h| h.find('}')) {
        let rest = &hash[end + 2..];
        if !rest.starts_with('$') {
            return &hash[..end + 2];
        }
    }
    // Drop the last two `$` fields (salt, hash).
    let mut cut = hash.len();
    for _ in 0..2 {
        match hash[..cut].rfind('$') {
            Some(i) => cut = i,
            None => return hash,
        }
    }
    &hash[..cut]
}

/// A stored hash of the scheme and cost most entries use: checking an
/// unknown user's password against it costs what a real check costs, so
/// that answering "no" to an unknown user takes as long as to a known
/// user with a wrong password (the time otherwise tells which users
/// exist). `None` for an empty file.
fn decoy_of<'a>(passwords: impl Iterator<Item = &'a str>) -> Option<Arc<str>> {
    let mut counts: rustc_hash::FxHashMap<&str, (usize, &str)> = Default::default();
    for pw in passwords {
        let c = counts.entry(cost_class(pw)).or_insert((0, pw));
        c.0 += 1;
        // The same one whatever the file's order.
        if pw < c.1 {
            c.1 = pw;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
        .map(|(_, (_, h))| Arc::from(h))
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
        f.loaded()?;
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn loaded(&self) -> Result<(Arc<str>, Built), AuthError> {
        let io = |source| AuthError::Io {
            path: self.path.clone(),
            source,
        };
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(io)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = cache.as_ref() {
            if l.mtime == mtime {
                return Ok((l.text.clone(), l.built.clone()));
            }
        }
        let text: Arc<str> = Arc::from(std::fs::read_to_string(&self.path).map_err(io)?);
        let built = Arc::new(std::sync::OnceLock::new());
        if text.len() <= INDEX_AT_ONCE {
            let (users, decoy) = index(&self.path, text.clone())?;
            let _ = built.set((Arc::new(users), decoy));
        } else {
            let (t, b, path) = (text.clone(), built.clone(), self.path.clone());
            let spawned = std::thread::Builder::new()
                .name("passwd-index".into())
                .spawn(move || match index(&path, t) {
                    Ok((users, decoy)) => {
                        let _ = b.set((Arc::new(users), decoy));
                    }
                    Err(e) => {
                        tracing::error!(cause = %e, "passwd-file not indexed; every login scans it");
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(cause = %e, "cannot start the passwd-file index thread");
            }
        }
        *cache = Some(Loaded {
            mtime,
            text: text.clone(),
            built: built.clone(),
        });
        Ok((text, built))
    }

    /// A stored hash to check an unknown user's password against, so that
    /// the answer takes as long as for a known user (see [`decoy_of`]).
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn decoy(&self) -> Result<Option<Arc<str>>, AuthError> {
        let (_, built) = self.loaded()?;
        Ok(built.get().and_then(|(_, d)| d.clone()))
    }

    /// Looks a user up.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn lookup(&self, user: &str) -> Result<Option<UserEntry>, AuthError> {
        let (text, built) = self.loaded()?;
        Ok(match built.get() {
            Some((users, _)) => users.get(user),
            None => scan(&text, user),
        })
    }
}

/// The user name and password fields of a line, or `None` for a line to
/// skip (empty, a comment); `Err` for one without a password field.
fn head(line: &str) -> Result<Option<(&str, &str)>, ()> {
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (user, rest) = line.split_once(':').ok_or(())?;
    if user.is_empty() {
        return Err(());
    }
    let password = rest.split_once(':').map_or(rest, |(p, _)| p);
    Ok(Some((user, password)))
}

fn bad_line(path: &Path, line: usize) -> AuthError {
    AuthError::BadLine {
        path: path.to_owned(),
        line,
        problem: "expected user:password[:uid:gid:gecos:home:shell:extra]",
    }
}

/// Indexes a whole passwd-file's lines by user, and finds its decoy hash.
fn index(path: &Path, text: Arc<str>) -> Result<(Index, Option<Arc<str>>), AuthError> {
    let n = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let mut lines: rustc_hash::FxHashMap<Box<str>, (usize, usize)> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(n, Default::default());
    let mut passwords: Vec<&str> = Vec::with_capacity(n);
    let mut start = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let end = start + raw.len();
        let line = raw.trim_end_matches('\r');
        match head(line) {
            Ok(Some((user, password))) => {
                // The first line of a user wins, as Dovecot reads the file.
                lines
                    .entry(Box::from(user))
                    .or_insert((start, start + line.len()));
                passwords.push(password);
            }
            Ok(None) => {}
            Err(()) => return Err(bad_line(path, i + 1)),
        }
        start = end + 1;
    }
    let decoy = decoy_of(passwords.into_iter());
    Ok((
        Index {
            text: text.clone(),
            lines,
        },
        decoy,
    ))
}

/// The entry of one line (known to have a user and a password field).
fn parse_line(line: &str) -> Option<UserEntry> {
    let fields: Vec<&str> = line.splitn(8, ':').collect();
    if fields.len() < 2 || fields[0].is_empty() {
        return None;
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
    // Dovecot's uid and gid columns, where the extra fields do not say.
    for (key, i) in [("uid", 2), ("gid", 3)] {
        if let Some(v) = fields.get(i).filter(|v| !v.is_empty()) {
            extra
                .entry(key.to_owned())
                .or_insert_with(|| (*v).to_owned());
        }
    }
    let mail = extra
        .get("mail")
        .cloned()
        .or_else(|| extra.get("userdb_mail").cloned())
        .map(|m| m.strip_prefix("maildir:").map(str::to_owned).unwrap_or(m))
        .map(|m| m.split(':').next().unwrap_or("").to_owned());
    Some(UserEntry {
        user,
        password,
        home,
        mail,
        extra,
        auth: EntryAuth::Hash,
        system: false,
    })
}

/// Parses a whole passwd-file.
///
/// # Errors
/// [`AuthError::BadLine`] for a line without a password field.
pub fn parse(path: &Path, text: &str) -> Result<HashMap<String, UserEntry>, AuthError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        match head(line) {
            Ok(Some((user, _))) => {
                if !out.contains_key(user) {
                    if let Some(e) = parse_line(line) {
                        out.insert(user.to_owned(), e);
                    }
                }
            }
            Ok(None) => {}
            Err(()) => return Err(bad_line(path, i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_decoy_is_a_hash_of_the_most_used_scheme_and_cost() {
        assert_eq!(
            cost_class("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1"
        );
        assert_eq!(cost_class("$6$rounds=5000$salt$hash"), "$6$rounds=5000");
        assert_eq!(cost_class("{PLAIN}se$c$ret"), "{PLAIN}");
        let text = "a:{PLAIN}x\n\
                    b:$argon2id$v=19$m=1024,t=2,p=1$c2FsdA$aGFzaEE\n\
                    c:$argon2id$v=19$m=1024,t=2,p=1$c2FsdB$aGFzaEI\n\
                    d:$6$rounds=5000$s$h\n";
        let (_, decoy) =
            index(Path::new("users"), Arc::from(text)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            decoy.as_deref(),
            Some("$argon2id$v=19$m=1024,t=2,p=1$c2FsdA$aGFzaEE")
        );
        assert_eq!(decoy_of(std::iter::empty()), None);
    }

    use super::*;

    #[test]
    fn the_index_finds_each_line_and_the_first_of_a_user_wins() {
        let text = "# c\r\nalice:{PLAIN}one::::/h::mail=/m/a\r\n\nbob:{PLAIN}b\nalice:{PLAIN}two\n";
        let (ix, _) = index(Path::new("users"), Arc::from(text)).unwrap_or_else(|e| panic!("{e}"));
        let a = ix.get("alice").unwrap_or_else(|| panic!("alice"));
        assert_eq!(
            (a.password.as_str(), a.mail.as_deref()),
            ("{PLAIN}one", Some("/m/a"))
        );
        assert_eq!(
            ix.get("bob").map(|b| b.password),
            Some("{PLAIN}b".to_owned())
        );
        assert!(ix.get("carol").is_none());
        assert!(matches!(
            index(Path::new("users"), Arc::from("ok:x\n:nouser\n")),
            Err(AuthError::BadLine { line: 2, .. })
        ));
        assert!(index(Path::new("users"), Arc::from("nopassword\n")).is_err());
        assert_eq!(
            parse(Path::new("u"), text).unwrap_or_default()["alice"].password,
            "{PLAIN}one"
        );
    }

    #[test]
    fn scanning_finds_what_the_index_finds() {
        let text = "alice:{PLAIN}a\n#bob:{PLAIN}no\nbob:{PLAIN}b::::/h::mail=/m/b\r\nbob:{PLAIN}second\ncar:{PLAIN}c";
        assert_eq!(
            scan(text, "alice").map(|e| e.password),
            Some("{PLAIN}a".into())
        );
        let b = scan(text, "bob").unwrap_or_else(|| panic!("bob"));
        assert_eq!(
            (b.password.as_str(), b.mail.as_deref()),
            ("{PLAIN}b", Some("/m/b"))
        );
        assert_eq!(
            scan(text, "car").map(|e| e.password),
            Some("{PLAIN}c".into())
        );
        for none in ["ali", "alice:{PLAIN}a", "", "bo", "#bob", "x\nbob"] {
            assert!(scan(text, none).is_none(), "{none:?}");
        }
    }

    #[test]
    fn a_large_file_answers_at_once_and_is_indexed_behind() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = t.path().join("users");
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("u{i}:{{PLAIN}}pw{i}::::::quota=1M\n"));
        }
        assert!(text.len() > INDEX_AT_ONCE);
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let f = PasswdFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let check = |f: &PasswdFile| {
            for i in [0, 99_999, 199_999] {
                let e = f.lookup(&format!("u{i}")).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(e.map(|e| e.password), Some(format!("{{PLAIN}}pw{i}")));
            }
            assert!(f
                .lookup("u200000")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none());
        };
        check(&f);
        let waited = std::time::Instant::now();
        while f.decoy().unwrap_or_else(|e| panic!("{e}")).is_none() {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(60),
                "never indexed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        check(&f);
        assert_eq!(f.decoy().unwrap_or_default().as_deref(), Some("{PLAIN}pw0"));
    }

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
