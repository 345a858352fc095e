//! System accounts: `/etc/passwd` for the account (uid, gid, home) and
//! `/etc/shadow` for its password hash (yescrypt, SHA-crypt, ... as
//! `passwd` and `chpasswd` write them), as courier-authlib's `authshadow`
//! and Dovecot's `passdb shadow` read them. The Maildir is `~/Maildir`
//! unless `mail.maildir` says otherwise.
//!
//! Both files are read when a login asks, a line at a time up to a bounded
//! size, so a password changed with `passwd` works at the next login. The
//! shadow file is readable by root only: a server that reads it runs as
//! root (`mail.allow_root`); see docs/configuration.md.
//!
//! Accounts below `min_uid` (root and the system's own) never log in, nor
//! do accounts whose shadow password is locked (`!`, `*`) or empty.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// Largest `/etc/passwd` or `/etc/shadow` read.
const MAX_BYTES: u64 = 256 << 20;

/// The system's account files.
#[derive(Debug)]
pub struct SystemUsers {
    passwd: PathBuf,
    shadow: PathBuf,
    min_uid: u32,
}

/// Whether `name` can be a system account's name (no field separator,
/// no NIS `+`/`-` entry, no comment).
pub(crate) fn plausible_name(name: &str) -> bool {
    !(name.is_empty()
        || name.contains([':', '\n', '\r', '\0'])
        || name.starts_with(['+', '-', '#']))
}

/// The fields of `name`'s line in a colon-separated file.
pub(crate) fn line_of(path: &Path, name: &str) -> Result<Option<Vec<String>>, AuthError> {
    let io = |e: std::io::Error| AuthError::Io {
        path: path.to_owned(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut r = BufReader::new(f.take(MAX_BYTES));
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(io)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = l.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
            let mut fields = vec![name.to_owned()];
            fields.extend(rest.split(':').map(str::to_owned));
            return Ok(Some(fields));
        }
    }
}

impl SystemUsers {
    /// The accounts of `passwd` and `shadow` (`/etc/passwd`, `/etc/shadow`)
    /// with a uid of at least `min_uid`.
    pub fn new(passwd: PathBuf, shadow: PathBuf, min_uid: u32) -> SystemUsers {
        SystemUsers {
            passwd,
            shadow,
            min_uid,
        }
    }

    /// The account `req` names.
    ///
    /// # Errors
    /// A file that cannot be read (the shadow file, when not running as
    /// root).
    pub fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let name = req.user;
        if !plausible_name(name) {
            return Ok(None);
        }
        let Some(pw) = line_of(&self.passwd, name)? else {
            return Ok(None);
        };
        let uid: u32 = match pw.get(2).and_then(|u| u.parse().ok()) {
            Some(u) if u >= self.min_uid => u,
            _ => return Ok(None),
        };
        let gid = pw.get(3).cloned().unwrap_or_default();
        let home = pw.get(5).cloned().unwrap_or_default();
        // The hash: in the shadow file, unless passwd holds it itself.
        let hash = match pw.get(1).map(String::as_str) {
            Some("x") | Some("*") | None => line_of(&self.shadow, name)?
                .and_then(|s| s.get(1).cloned())
                .unwrap_or_default(),
            Some(h) => h.to_owned(),
        };
        if hash.is_empty() || hash.starts_with(['!', '*']) {
            return Ok(None);
        }
        let mut extra = HashMap::new();
        extra.insert("uid".to_owned(), uid.to_string());
        extra.insert("gid".to_owned(), gid);
        Ok(Some(UserEntry {
            user: name.to_owned(),
            // crypt(3) strings: `{CRYPT}` makes the scheme explicit.
            password: format!("{{CRYPT}}{hash}"),
            home,
            mail: None,
            extra,
            auth: EntryAuth::Hash,
            system: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_from_passwd_and_shadow() {
        let t = tempfile::tempdir().unwrap();
        let (p, s) = (t.path().join("passwd"), t.path().join("shadow"));
        std::fs::write(
            &p,
            "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000:Ann:/home/ann:/bin/bash\n\
             locked:x:1001:1001::/home/locked:/bin/sh\nold:$1$x$y:1002:1002::/home/old:/bin/sh\n\
             annex:x:1003:1003::/home/annex:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &s,
            "root:$6$r$h:19000:0:99999:7:::\nann:$y$j9T$salt$hash:19000:0:99999:7:::\nlocked:!$6$x$y:19000::::::\n",
        )
        .unwrap();
        let u = SystemUsers::new(p, s, 1000);
        let req = |user| Request {
            user,
            service: "imap",
            remote: "",
        };
        let ann = u.lookup(&req("ann")).unwrap().unwrap();
        assert_eq!(ann.password, "{CRYPT}$y$j9T$salt$hash");
        assert_eq!(ann.home, "/home/ann");
        assert_eq!(ann.extra.get("uid").map(String::as_str), Some("1000"));
        assert!(u.lookup(&req("root")).unwrap().is_none(), "below min_uid");
        assert!(u.lookup(&req("locked")).unwrap().is_none(), "locked");
        assert_eq!(
            u.lookup(&req("old")).unwrap().unwrap().password,
            "{CRYPT}$1$x$y"
        );
        assert!(u.lookup(&req("annex")).unwrap().is_none(), "no shadow line");
        assert!(
            u.lookup(&req("an")).unwrap().is_none(),
            "a prefix is no name"
        );
        assert!(u.lookup(&req("nobody")).unwrap().is_none());
        assert!(u.lookup(&req("ann:x")).unwrap().is_none());
    }
}
