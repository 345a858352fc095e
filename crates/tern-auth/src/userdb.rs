//! Courier's userdb, read from its text source (what `makeuserdb` compiles
//! into `userdb.dat`): a file, or a directory of files, of lines
//! `name<TAB>field=value|field=value|...`, so a Courier site points tern at
//! the file it already keeps (`/etc/courier/userdb`).
//!
//! Fields: `home`, `mail` (the Maildir), `uid`, `gid`, `quota`, `options`
//! (courier-authlib's `disableimap=1,...`), and the passwords: `imappw` or
//! `pop3pw` for that service, else `systempw` (crypt(3) strings as
//! `userdbpw` writes them, or `{SCHEME}` ones). Lines that do not parse are
//! skipped, as makeuserdb skips them; the source is read again when it
//! changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// Files larger than this are refused (a userdb of a million accounts is
/// about 150 MB).
const MAX_BYTES: u64 = 1 << 30;

type Accounts = Arc<HashMap<String, HashMap<String, String>>>;

/// The userdb source, re-read when it changes.
#[derive(Debug)]
pub struct Userdb {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, Accounts)>>,
}

/// Parses `text` (for [`crate::fuzzing`]).
pub(crate) fn parse_for_fuzzing(text: &str) {
    let mut out = HashMap::new();
    parse_into(text, &mut out);
}

fn parse_into(text: &str, out: &mut HashMap<String, HashMap<String, String>>) {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, fields)) = line.split_once('\t') else {
            continue;
        };
        if name.is_empty() || name.contains(['\0', '\r']) {
            continue;
        }
        let mut map = HashMap::new();
        for f in fields.split('|') {
            if let Some((k, v)) = f.split_once('=') {
                map.insert(k.trim().to_ascii_lowercase(), v.to_owned());
            }
        }
        out.insert(name.to_owned(), map);
    }
}

impl Userdb {
    /// The userdb at `path` (a file or a directory of files), read now.
    ///
    /// # Errors
    /// The source cannot be read.
    pub fn open(path: &Path) -> Result<Userdb, AuthError> {
        let u = Userdb {
            path: path.to_owned(),
            cache: Mutex::new(None),
        };
        u.accounts()?;
        Ok(u)
    }

    fn io(&self, e: std::io::Error) -> AuthError {
        AuthError::Io {
            path: self.path.clone(),
            source: e,
        }
    }

    /// The files of the source and their newest mtime.
    fn files(&self) -> Result<(Vec<PathBuf>, SystemTime), AuthError> {
        let m = std::fs::metadata(&self.path).map_err(|e| self.io(e))?;
        let mut files = Vec::new();
        if m.is_dir() {
            for e in std::fs::read_dir(&self.path)
                .map_err(|e| self.io(e))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                // Editor backups and hidden files are not part of it.
                if !name.starts_with('.') && !name.ends_with('~') && e.path().is_file() {
                    files.push(e.path());
                }
            }
            files.sort();
        } else {
            files.push(self.path.clone());
        }
        let mut newest = m.modified().map_err(|e| self.io(e))?;
        for f in &files {
            if let Ok(t) = std::fs::metadata(f).and_then(|m| m.modified()) {
                newest = newest.max(t);
            }
        }
        Ok((files, newest))
    }

    fn accounts(&self) -> Result<Accounts, AuthError> {
        let (files, mtime) = self.files()?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, a)) = cache.as_ref() {
            if *t == mtime {
                return Ok(a.clone());
            }
        }
        let mut map = HashMap::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| self.io(e))?;
            if bytes.len() as u64 > MAX_BYTES {
                return Err(self.io(std::io::Error::other("userdb file too large")));
            }
            parse_into(&String::from_utf8_lossy(&bytes), &mut map);
        }
        let a: Accounts = Arc::new(map);
        *cache = Some((mtime, a.clone()));
        Ok(a)
    }

    /// The account `req` names.
    ///
    /// # Errors
    /// The source cannot be read.
    pub fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let accounts = self.accounts()?;
        let Some(f) = accounts.get(req.user) else {
            return Ok(None);
        };
        let mut extra = f.clone();
        let password = extra
            .get(&format!("{}pw", req.service))
            .or_else(|| extra.get("systempw"))
            .cloned()
            .unwrap_or_default();
        for k in ["systempw", "imappw", "pop3pw"] {
            extra.remove(k);
        }
        Ok(Some(UserEntry {
            user: req.user.to_owned(),
            password,
            home: extra.remove("home").unwrap_or_default(),
            mail: extra.remove("mail"),
            extra,
            auth: EntryAuth::Hash,
            system: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_per_service_passwords() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("userdb");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("example"),
            "ann@example.org\tuid=8|gid=12|home=/home/ann|mail=/home/ann/Maildir|systempw={PLAIN}sys|imappw={PLAIN}imap|quota=1000S|options=disablepop3=1\n\
             # a comment\nbroken line without a tab\n",
        )
        .unwrap();
        std::fs::write(dir.join("other~"), "ann@example.org\tsystempw=x\n").unwrap();
        let db = Userdb::open(&dir).unwrap();
        let req = |s| Request {
            user: "ann@example.org",
            service: s,
            remote: "",
        };
        let imap = db.lookup(&req("imap")).unwrap().unwrap();
        assert_eq!(imap.password, "{PLAIN}imap");
        assert_eq!(imap.mail.as_deref(), Some("/home/ann/Maildir"));
        assert_eq!(
            imap.extra.get("options").map(String::as_str),
            Some("disablepop3=1")
        );
        assert!(
            !imap.extra.contains_key("systempw"),
            "passwords do not leak into fields"
        );
        assert_eq!(
            db.lookup(&req("pop3")).unwrap().unwrap().password,
            "{PLAIN}sys"
        );
        assert!(db
            .lookup(&Request {
                user: "zed",
                service: "imap",
                remote: ""
            })
            .unwrap()
            .is_none());
    }
}
