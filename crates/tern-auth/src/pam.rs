//! System accounts whose passwords PAM checks (`/etc/pam.d/SERVICE`), as
//! Courier's `authpam` and Dovecot's `passdb pam`: the account (uid, gid,
//! home) comes from `/etc/passwd`, the Maildir is `~/Maildir` unless
//! `mail.maildir` says otherwise, and the password goes to the service's
//! module stack (pam_unix, pam_sss, pam_ldap...), which also decides
//! whether the account may log in now (expired, locked).
//!
//! PAM blocks (modules sleep on a failure delay, or wait for a network
//! directory), so each check runs on a blocking thread, at most
//! `max_running` at once; a login that finds them all busy waits up to the
//! timeout, then is a temporary failure, and a check that outlives the
//! timeout is answered as one while its thread finishes (and keeps its
//! place among the `max_running`, so no more threads are ever started).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// A configured PAM service.
#[derive(Debug)]
pub struct Pam {
    /// The service name; `%s` is replaced by the protocol (`imap`, `pop3`),
    /// as Courier names its services.
    service: String,
    passwd: PathBuf,
    min_uid: u32,
    timeout: Duration,
    running: Arc<tokio::sync::Semaphore>,
    /// This backend's place in the directory.
    index: usize,
}

impl Pam {
    /// PAM service `service` for the accounts of `passwd` (`/etc/passwd`)
    /// with a uid of at least `min_uid`.
    ///
    /// # Errors
    /// libpam cannot be loaded, or the service name is empty.
    pub fn new(
        service: &str,
        passwd: PathBuf,
        min_uid: u32,
        timeout: Duration,
        max_running: usize,
        index: usize,
    ) -> Result<Pam, String> {
        tern_pam::available().map_err(|e| e.to_string())?;
        if service.is_empty() || service.contains(['/', '\0']) {
            return Err(format!("{service:?}: not a PAM service name"));
        }
        Ok(Pam {
            service: service.to_owned(),
            passwd,
            min_uid,
            timeout,
            running: Arc::new(tokio::sync::Semaphore::new(max_running.max(1))),
            index,
        })
    }

    /// The account `req` names, from the passwd file; its password is
    /// checked by [`Pam::check`].
    ///
    /// # Errors
    /// The passwd file cannot be read.
    pub fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let name = req.user;
        if !crate::system::plausible_name(name) {
            return Ok(None);
        }
        let Some(pw) = crate::system::line_of(&self.passwd, name)? else {
            return Ok(None);
        };
        let uid: u32 = match pw.get(2).and_then(|u| u.parse().ok()) {
            Some(u) if u >= self.min_uid => u,
            _ => return Ok(None),
        };
        let mut extra = HashMap::new();
        extra.insert("uid".to_owned(), uid.to_string());
        extra.insert("gid".to_owned(), pw.get(3).cloned().unwrap_or_default());
        Ok(Some(UserEntry {
            user: name.to_owned(),
            password: String::new(),
            home: pw.get(5).cloned().unwrap_or_default(),
            mail: None,
            extra,
            auth: EntryAuth::Pam {
                backend: self.index,
            },
            system: true,
        }))
    }

    /// For a name no backend knows: a check of a name no system has, its
    /// answer thrown away, so PAM spends what it spends on an unknown user
    /// (pam_unix's failure delay included) and timing tells no one which
    /// names exist. Never the name asked for: that may be an account below
    /// `min_uid` (root), whose PAM answer would show in the time taken.
    pub async fn decoy(&self, req: &Request<'_>, password: &[u8]) {
        let entry = UserEntry {
            user: "tern-decoy-no-such-user".to_owned(),
            password: String::new(),
            home: String::new(),
            mail: None,
            extra: HashMap::new(),
            auth: EntryAuth::Pam {
                backend: self.index,
            },
            system: true,
        };
        let _ = self.check(&entry, password, req.service, req.remote).await;
    }

    /// The service name for `protocol`.
    fn service_for(&self, protocol: &str) -> String {
        self.service.replace("%s", protocol)
    }

    /// Whether `password` is `user`'s, by PAM (`remote` is the client's
    /// address, PAM_RHOST): the account when it is, `None` when PAM refuses.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when PAM cannot answer, or not in time.
    pub async fn check(
        &self,
        entry: &UserEntry,
        password: &[u8],
        protocol: &str,
        remote: &str,
    ) -> Result<Option<UserEntry>, AuthError> {
        let unavailable = |why: String| AuthError::Unavailable(format!("PAM: {why}"));
        let work = async {
            let permit = self
                .running
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| unavailable("closed".into()))?;
            let (service, user, password) = (
                self.service_for(protocol),
                entry.user.clone(),
                password.to_vec(),
            );
            let rhost = (!remote.is_empty()).then(|| remote.to_owned());
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                tern_pam::check(&service, &user, &password, rhost.as_deref())
            })
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(unavailable("no answer in time".into())),
            Ok(Err(e)) => Err(e),
            Ok(Ok(tern_pam::Verdict::Accepted)) => Ok(Some(entry.clone())),
            Ok(Ok(tern_pam::Verdict::Refused(why))) => {
                tracing::info!(user = %entry.user, reason = %why, "PAM refused the login");
                Ok(None)
            }
        }
    }
}
