//! Users: password check against the passwd-file and the Maildir location.

use std::path::{Path, PathBuf};

use tern_auth::{PasswdFile, UserEntry};
use tern_maildir::Maildir;

/// A user that has logged in.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// The user's Maildir.
    pub maildir: Maildir,
}

/// The user database and the rule that finds each user's Maildir.
#[derive(Debug)]
pub struct UserDb {
    passwd: PasswdFile,
    maildir_template: String,
    base_dir: PathBuf,
}

/// The outcome of a login attempt.
#[derive(Debug)]
pub enum LoginResult {
    /// Good password.
    Ok(User),
    /// Unknown user or wrong password (never say which).
    Failed,
    /// The user database could not be read.
    TempFail(String),
}

impl UserDb {
    /// A user database over a passwd-file.
    pub fn new(passwd: PasswdFile, maildir_template: String, base_dir: PathBuf) -> UserDb {
        UserDb {
            passwd,
            maildir_template,
            base_dir,
        }
    }

    /// Checks a password; CPU-heavy, so call it from a blocking thread.
    pub fn login(&self, user: &str, password: &[u8]) -> LoginResult {
        let entry = match self.passwd.lookup(user) {
            Ok(Some(e)) => e,
            Ok(None) => {
                // Spend comparable time so that unknown users are not
                // told apart from wrong passwords by timing.
                let _ = tern_auth::scheme::verify(
                    "{SHA512-CRYPT}$6$rounds=5000$saltsaltsaltsalt$",
                    password,
                );
                return LoginResult::Failed;
            }
            Err(e) => return LoginResult::TempFail(e.to_string()),
        };
        match tern_auth::scheme::verify(&entry.password, password) {
            Ok(true) => LoginResult::Ok(self.user_for(&entry)),
            Ok(false) => LoginResult::Failed,
            Err(e) => {
                tracing::warn!(user, cause = %e, "password of user cannot be checked");
                LoginResult::Failed
            }
        }
    }

    /// The Maildir of a user entry.
    pub fn user_for(&self, entry: &UserEntry) -> User {
        let (local, domain) = entry.user.split_once('@').unwrap_or((&entry.user, ""));
        let template = entry
            .mail
            .clone()
            .unwrap_or_else(|| self.maildir_template.clone());
        let home = if entry.home.is_empty() {
            self.base_dir
                .join("home")
                .join(&entry.user)
                .display()
                .to_string()
        } else {
            entry.home.clone()
        };
        let mut path = template
            .replace("{user}", &entry.user)
            .replace("{local}", local)
            .replace("{domain}", domain)
            .replace("{home}", &home);
        if let Some(rest) = path.strip_prefix("~/") {
            path = format!("{home}/{rest}");
        }
        let p = Path::new(&path);
        let root = if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        };
        User {
            name: entry.user.clone(),
            maildir: Maildir::new(root),
        }
    }
}
