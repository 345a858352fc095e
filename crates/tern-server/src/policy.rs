//! What the operator decided beyond the limits: POP3 login delay and
//! expiry policy, quota changes by users, trash expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{parse_empty_trash, Config};

/// Policies every session consults.
#[derive(Debug)]
pub struct Policy {
    /// Minimum time between two POP3 logins of one user (RFC 2449).
    pub pop3_login_delay: Duration,
    /// The EXPIRE capability's argument, when configured.
    pub pop3_expire: Option<String>,
    /// The template POP3 UIDLs are computed by, when configured.
    pub pop3_uidl_format: Option<tern_maildir::uidl_format::UidlFormat>,
    /// SETQUOTA allowed.
    pub allow_setquota: bool,
    /// Access control lists offered and checked (`imap.acl`).
    pub acl: bool,
    /// Folders' lists as lately read (`imap.acl_cache_secs`).
    pub acl_cache: std::sync::Arc<tern_maildir::acl::Cache>,
    /// Folders whose messages older than so many days go at login.
    pub empty_trash: Vec<(String, u32)>,
    /// When each user last logged in over POP3.
    pop3_logins: Mutex<HashMap<String, Instant>>,
}

impl Default for Policy {
    /// The configuration's defaults (`tern imapd`'s policy), except that
    /// folders' lists are read every time.
    fn default() -> Policy {
        Policy {
            pop3_login_delay: Duration::ZERO,
            pop3_expire: None,
            pop3_uidl_format: None,
            allow_setquota: false,
            acl: true,
            acl_cache: Default::default(),
            empty_trash: Vec::new(),
            pop3_logins: Mutex::new(HashMap::new()),
        }
    }
}

impl Policy {
    /// The policy of a configuration (already validated).
    pub fn from_config(cfg: &Config) -> Policy {
        Policy {
            pop3_login_delay: Duration::from_secs(cfg.pop3.login_delay_secs),
            pop3_expire: cfg.pop3.expire.as_ref().map(|e| {
                if e.eq_ignore_ascii_case("never") {
                    "NEVER".to_owned()
                } else {
                    e.clone()
                }
            }),
            pop3_uidl_format: cfg
                .pop3
                .uidl_format
                .as_deref()
                .and_then(|f| tern_maildir::uidl_format::UidlFormat::parse(f).ok()),
            allow_setquota: cfg.quota.allow_setquota,
            acl: cfg.imap.acl,
            acl_cache: std::sync::Arc::new(tern_maildir::acl::Cache::new(Duration::from_secs(
                cfg.imap.acl_cache_secs,
            ))),
            empty_trash: cfg
                .mail
                .empty_trash
                .as_deref()
                .and_then(|t| parse_empty_trash(t).ok())
                .unwrap_or_default(),
            pop3_logins: Mutex::new(HashMap::new()),
        }
    }

    /// Records a POP3 login of `user` unless the last one was less than
    /// the login delay ago; false when it was.
    pub fn pop3_login_allowed(&self, user: &str) -> bool {
        if self.pop3_login_delay.is_zero() {
            return true;
        }
        let now = Instant::now();
        let mut m = self.pop3_logins.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            let delay = self.pop3_login_delay;
            m.retain(|_, t| now.duration_since(*t) < delay);
        }
        match m.get(user) {
            Some(t) if now.duration_since(*t) < self.pop3_login_delay => false,
            _ => {
                m.insert(user.to_owned(), now);
                true
            }
        }
    }
}
