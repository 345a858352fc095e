//! The account backends, tried in order: the first definite answer wins.
//!
//! A backend that finds the account answers; one that does not know it
//! passes to the next. One that cannot answer (a database down) is
//! remembered: when no later backend knows the account either, the lookup
//! is a temporary failure, because the account may well be in the backend
//! that did not answer, and "no such user" would tell its owner the
//! password was wrong.

use crate::ldap::LdapBackend;
use crate::passwd_file::{EntryAuth, PasswdFile, UserEntry};
use crate::sql::{Request, SqlBackend};
use crate::AuthError;

/// One place accounts are kept.
#[derive(Debug)]
pub enum Backend {
    /// A passwd-file (Dovecot's format).
    PasswdFile(PasswdFile),
    /// An SQL database.
    Sql(SqlBackend),
    /// An LDAP directory.
    Ldap(Box<LdapBackend>),
    /// Courier's userdb (its text source).
    Userdb(crate::userdb::Userdb),
    /// The system's accounts (`/etc/passwd`, `/etc/shadow`).
    System(crate::system::SystemUsers),
    /// System accounts checked by PAM.
    Pam(crate::pam::Pam),
    /// A checkpassword program (tried last: it answers for every name).
    Checkpassword(crate::checkpassword::Checkpassword),
}

/// The configured backends, in order.
#[derive(Debug)]
pub struct Directory {
    backends: Vec<Backend>,
}

impl Directory {
    /// The backends, tried in this order.
    pub fn new(backends: Vec<Backend>) -> Directory {
        Directory { backends }
    }

    /// The passwd-file among the backends, if any (its decoy hash and its
    /// re-reading are its own).
    pub fn passwd_file(&self) -> Option<&PasswdFile> {
        self.backends.iter().find_map(|b| match b {
            Backend::PasswdFile(p) => Some(p),
            _ => None,
        })
    }

    /// Whether some backend hands out stored passwords (CRAM-MD5 and SCRAM
    /// need them): all but an LDAP directory that checks by binding.
    pub fn holds_secrets(&self) -> bool {
        self.backends.iter().any(|b| match b {
            Backend::Ldap(l) => !l.binds(),
            Backend::Checkpassword(_) | Backend::Pam(_) => false,
            _ => true,
        })
    }

    /// For a login name no backend knows, when an LDAP directory checks
    /// passwords by binding or PAM checks them: a bind (or a PAM check of
    /// the name) that fails as a wrong password's does, so the time an
    /// unknown user costs is a known user's. Whether one was made.
    pub async fn decoy_bind(&self, req: &Request<'_>, password: &[u8]) -> bool {
        for b in &self.backends {
            match b {
                Backend::Ldap(l) if l.binds() => {
                    l.decoy_bind(password).await;
                    return true;
                }
                Backend::Pam(p) => {
                    p.decoy(req, password).await;
                    return true;
                }
                _ => {}
            }
        }
        false
    }

    /// The account `req` names.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when a backend could not answer and none
    /// after it knows the account; a passwd-file that cannot be read.
    pub async fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let mut unanswered: Option<AuthError> = None;
        for b in &self.backends {
            let found = match b {
                // A read of a changed file: small, and cached by mtime.
                Backend::PasswdFile(p) => p.lookup(req.user),
                Backend::Sql(s) => s.lookup(req).await,
                Backend::Ldap(l) => l.lookup(req).await,
                Backend::Userdb(u) => u.lookup(req),
                Backend::Checkpassword(c) => Ok(c.lookup(req)),
                Backend::System(s) => s.lookup(req),
                Backend::Pam(p) => p.lookup(req),
            };
            match found {
                Ok(Some(e)) => return Ok(Some(e)),
                Ok(None) => {}
                Err(e @ AuthError::Unavailable(_)) => {
                    unanswered.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match unanswered {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// For an account its backend checks itself (an LDAP bind, a
    /// checkpassword program): the account when `password` is right (as
    /// the backend describes it then), `None` when it is wrong. `None` at
    /// the outer level for an account checked by its hash.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the backend does not answer.
    pub async fn check_by_backend(
        &self,
        entry: &UserEntry,
        password: &[u8],
        req: &Request<'_>,
    ) -> Option<Result<Option<UserEntry>, AuthError>> {
        let gone = || AuthError::Unavailable("the account's directory is gone".into());
        match &entry.auth {
            EntryAuth::Hash => None,
            EntryAuth::LdapBind { backend, dn } => Some(match self.backends.get(*backend) {
                Some(Backend::Ldap(l)) => l
                    .bind_check(dn, password)
                    .await
                    .map(|ok| ok.then(|| entry.clone())),
                _ => Err(gone()),
            }),
            EntryAuth::Checkpassword { backend } => Some(match self.backends.get(*backend) {
                Some(Backend::Checkpassword(c)) => {
                    c.check(&entry.user, password, req.service, req.remote)
                        .await
                }
                _ => Err(gone()),
            }),
            EntryAuth::Pam { backend } => Some(match self.backends.get(*backend) {
                Some(Backend::Pam(p)) => p.check(entry, password, req.service, req.remote).await,
                _ => Err(gone()),
            }),
        }
    }
}
