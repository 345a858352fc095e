//! Accounts in an LDAP directory (OpenLDAP, 389-ds, Active Directory),
//! through ldap3.
//!
//! A login searches for the account below `base` with the operator's
//! filter, where `%u` (the login name), `%n` (its local part) and `%d`
//! (its domain) are replaced by the value *escaped* as RFC 4515 requires,
//! so no login name can widen the filter (`*`, `)(`, NUL). The account's
//! password is then checked by binding as its DN with it: the directory
//! holds the secret and decides, as Dovecot's `auth_bind` and Courier's
//! `LDAP_AUTHBIND` do. Attributes map to the account's fields by a table
//! the operator writes (`home = "homeDirectory"`, ...).
//!
//! Connections are kept in two small pools per directory: one bound as the
//! search identity for lookups, one for the binds that check passwords
//! (a bind there changes only that connection's identity, and the next
//! check binds again). A new connection goes to the first of the configured
//! URIs that answers within the timeout, over `ldaps://`, StartTLS
//! (`starttls`) or, on a network the operator trusts, in the clear; a
//! certificate is verified against the configured CA (or the system's
//! roots). A kept connection the server dropped (idle timeout, restart)
//! fails its next operation at once: that connection is thrown away and the
//! operation, which changes nothing, is tried once more on a new one. Every
//! operation has the timeout; no answer from any URI in time is a
//! temporary failure, never "wrong password".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// What the operator configures for one directory.
#[derive(Clone)]
pub struct LdapSettings {
    /// Servers, tried in order.
    pub uris: Vec<String>,
    /// Where accounts are searched.
    pub base: String,
    /// The filter, with `%u`, `%n`, `%d`.
    pub filter: String,
    /// The search identity (`None`: anonymous).
    pub bind_dn: Option<String>,
    /// Its password.
    pub bind_password: String,
    /// Account field -> LDAP attribute.
    pub attributes: HashMap<String, String>,
    /// How long to wait for a server, and for each operation.
    pub timeout: Duration,
    /// StartTLS on `ldap://` URIs.
    pub starttls: bool,
    /// TLS configuration (the CA that signs the servers' certificates);
    /// `None`: the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Most connections kept open in each of the two pools.
    pub max_connections: usize,
    /// How long a search's answer (an account or none) is reused; zero
    /// keeps none. The password is checked (bound) at every login all the
    /// same.
    pub cache_ttl: Duration,
    /// Answers kept at most.
    pub cache_size: usize,
}

impl std::fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSettings")
            .field("uris", &self.uris)
            .field("base", &self.base)
            .field("filter", &self.filter)
            .field("bind_dn", &self.bind_dn)
            .field("starttls", &self.starttls)
            .finish_non_exhaustive()
    }
}

/// Connections of one kind, kept between logins.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<ldap3::Ldap>>,
    /// One permit per connection open (idle or in use).
    slots: Arc<tokio::sync::Semaphore>,
    /// Whether its connections are bound as the search identity.
    search: bool,
}

/// A connection taken from a pool; given back with [`Pool::give_back`]
/// when it is known to be good, dropped (and closed) otherwise.
struct Taken {
    ldap: ldap3::Ldap,
    _slot: tokio::sync::OwnedSemaphorePermit,
    fresh: bool,
}

/// One configured directory.
#[derive(Debug)]
pub struct LdapBackend {
    s: LdapSettings,
    /// This backend's place in the directory (for the bind check).
    index: usize,
    searches: Pool,
    binds: Pool,
    /// Answers of searches kept a short while (`cache_secs`).
    cache: Option<crate::cache::AnswerCache>,
}

/// Whether an ldap3 error says the connection is gone (rather than the
/// server having answered, or being slow: a retry would only wait again).
fn connection_lost(e: &ldap3::LdapError) -> bool {
    !matches!(
        e,
        ldap3::LdapError::LdapResult { .. } | ldap3::LdapError::Timeout { .. }
    )
}

/// The account fields an attribute may be mapped to.
pub const FIELDS: [&str; 10] = [
    "user",
    "home",
    "maildir",
    "uid",
    "gid",
    "quota",
    "mailhost",
    "options",
    "password",
    "clear_password",
];

/// The filter for a login, each placeholder replaced by its escaped value.
pub fn filter_for(template: &str, user: &str) -> String {
    let (local, domain) = user.rsplit_once('@').unwrap_or((user, ""));
    let mut out = String::with_capacity(template.len() + user.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(&ldap_escape(user)),
            Some('n') => out.push_str(&ldap_escape(local)),
            Some('d') => out.push_str(&ldap_escape(domain)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl LdapBackend {
    /// A backend at `index` in the directory (checked now; no server is
    /// contacted until a login).
    ///
    /// # Errors
    /// A configuration that cannot work, as text for the operator.
    pub fn new(s: LdapSettings, index: usize) -> Result<LdapBackend, String> {
        if s.uris.is_empty() {
            return Err("no LDAP server URI".into());
        }
        for u in &s.uris {
            if !(u.starts_with("ldap://") || u.starts_with("ldaps://") || u.starts_with("ldapi://"))
            {
                return Err(format!("{u}: not an ldap://, ldaps:// or ldapi:// URI"));
            }
        }
        if s.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if !s.filter.contains("%u") && !s.filter.contains("%n") {
            return Err("the filter must name the login with %u (or %n)".into());
        }
        for k in s.attributes.keys() {
            if !FIELDS.contains(&k.as_str()) {
                return Err(format!(
                    "{k}: not an account field (use {})",
                    FIELDS.join(", ")
                ));
            }
        }
        let pool = |search| Pool {
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(s.max_connections)),
            search,
        };
        Ok(LdapBackend {
            searches: pool(true),
            binds: pool(false),
            cache: crate::cache::AnswerCache::new(s.cache_ttl, s.cache_size),
            s,
            index,
        })
    }

    /// A connection of `pool`: a kept one, or a new one when none is idle
    /// and the pool has room; waits (within the timeout) when it has none.
    async fn take(&self, pool: &Pool) -> Result<Taken, AuthError> {
        let slot = tokio::time::timeout(self.s.timeout, pool.slots.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Unavailable("every LDAP connection is busy".into()))?
            .map_err(|_| AuthError::Unavailable("LDAP pool closed".into()))?;
        let kept = match pool.idle.lock() {
            Ok(mut g) => g.pop(),
            Err(p) => p.into_inner().pop(),
        };
        if let Some(ldap) = kept {
            return Ok(Taken {
                ldap,
                _slot: slot,
                fresh: false,
            });
        }
        let ldap = self.connect(pool.search).await?;
        Ok(Taken {
            ldap,
            _slot: slot,
            fresh: true,
        })
    }

    /// A connection that did its work goes back to the idle list.
    fn give_back(pool: &Pool, t: Taken) {
        let Taken { ldap, _slot, .. } = t;
        match pool.idle.lock() {
            Ok(mut g) => g.push(ldap),
            Err(p) => p.into_inner().push(ldap),
        }
    }

    /// A new connection to the first server that answers, bound as the
    /// search identity when `search`.
    async fn connect(&self, search: bool) -> Result<ldap3::Ldap, AuthError> {
        let mut last = String::new();
        for uri in &self.s.uris {
            let mut settings = LdapConnSettings::new()
                .set_conn_timeout(self.s.timeout)
                .set_starttls(self.s.starttls && uri.starts_with("ldap://"));
            if let Some(c) = &self.s.tls {
                settings = settings.set_config(c.clone());
            }
            match tokio::time::timeout(self.s.timeout, LdapConnAsync::with_settings(settings, uri))
                .await
            {
                Ok(Ok((conn, mut ldap))) => {
                    ldap3::drive!(conn);
                    if search {
                        if let Some(dn) = &self.s.bind_dn {
                            let r = ldap
                                .with_timeout(self.s.timeout)
                                .simple_bind(dn, &self.s.bind_password)
                                .await
                                .and_then(ldap3::LdapResult::success);
                            if let Err(e) = r {
                                last = format!("{uri}: search identity: {e}");
                                tracing::warn!(server = %uri, cause = %last, "LDAP bind as the search identity failed");
                                continue;
                            }
                        }
                    }
                    return Ok(ldap);
                }
                Ok(Err(e)) => last = format!("{uri}: {e}"),
                Err(_) => last = format!("{uri}: no answer"),
            }
            tracing::warn!(server = %uri, cause = %last, "LDAP server unavailable, trying the next");
        }
        Err(AuthError::Unavailable(format!(
            "no LDAP server answered ({last})"
        )))
    }

    /// The account `req` names, to be checked by a bind as its DN.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when no server answers, or the search
    /// fails or finds more than one entry.
    pub async fn lookup(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        // The filter's placeholders are all the login name's: it is the key.
        let key = vec![req.user.to_owned()];
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            return Ok(hit);
        }
        let found = self.search(req).await?;
        if let Some(c) = &self.cache {
            c.put(key, found.clone());
        }
        Ok(found)
    }

    async fn search(&self, req: &Request<'_>) -> Result<Option<UserEntry>, AuthError> {
        let filter = filter_for(&self.s.filter, req.user);
        let attrs: Vec<&str> = self.s.attributes.values().map(String::as_str).collect();
        let attrs = if attrs.is_empty() { vec!["1.1"] } else { attrs };
        let found = loop {
            let mut c = self.take(&self.searches).await?;
            let r = c
                .ldap
                .with_timeout(self.s.timeout)
                .search(&self.s.base, Scope::Subtree, &filter, &attrs)
                .await;
            match r {
                Ok(r) => {
                    Self::give_back(&self.searches, c);
                    break r
                        .success()
                        .map_err(|e| AuthError::Unavailable(format!("LDAP search: {e}")))?;
                }
                Err(e) if connection_lost(&e) && !c.fresh => {
                    tracing::debug!(cause = %e, "a kept LDAP connection was lost, reconnecting");
                }
                Err(e) => return Err(AuthError::Unavailable(format!("LDAP search: {e}"))),
            }
        };
        let (entries, _) = found;
        match entries.len() {
            0 => Ok(None),
            1 => {
                let e = SearchEntry::construct(
                    entries
                        .into_iter()
                        .next()
                        .ok_or_else(|| AuthError::Unavailable("LDAP: an entry vanished".into()))?,
                );
                Ok(Some(self.entry(req, e)))
            }
            n => {
                tracing::error!(filter = %filter, entries = n, "LDAP search found more than one account");
                Err(AuthError::Unavailable(
                    "the LDAP search found more than one account".into(),
                ))
            }
        }
    }

    fn entry(&self, req: &Request<'_>, e: SearchEntry) -> UserEntry {
        let get = |field: &str| {
            self.s.attributes.get(field).and_then(|attr| {
                e.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                    .and_then(|(_, v)| v.first().cloned())
            })
        };
        let mut extra = HashMap::new();
        for f in ["uid", "gid", "quota", "mailhost"] {
            if let Some(v) = get(f) {
                extra.insert(f.to_owned(), v);
            }
        }
        if let Some(opts) = get("options") {
            extra.insert("options".to_owned(), opts);
        }
        // With `password` mapped (`userPassword`), the stored hash is
        // compared as a passwd-file's is, instead of binding as the user.
        // `clear_password` (courier-authlib's LDAP_CLEARPW) holds the
        // password itself.
        let (password, auth) = match get("password") {
            Some(p) if self.s.attributes.contains_key("password") => (p, EntryAuth::Hash),
            _ if self.s.attributes.contains_key("password") => (String::new(), EntryAuth::Hash),
            _ if self.s.attributes.contains_key("clear_password") => (
                get("clear_password")
                    .map(|p| format!("{{PLAIN}}{p}"))
                    .unwrap_or_default(),
                EntryAuth::Hash,
            ),
            _ => (
                String::new(),
                EntryAuth::LdapBind {
                    backend: self.index,
                    dn: e.dn.clone(),
                },
            ),
        };
        UserEntry {
            user: get("user").unwrap_or_else(|| req.user.to_owned()),
            password,
            home: get("home").unwrap_or_default(),
            mail: get("maildir"),
            extra,
            auth,
            system: false,
        }
    }

    /// Whether passwords are checked by binding as the account (no
    /// `password` attribute mapped): then the server never sees a stored
    /// secret, and CRAM-MD5 and SCRAM cannot be offered.
    pub fn binds(&self) -> bool {
        !self.s.attributes.contains_key("password")
            && !self.s.attributes.contains_key("clear_password")
    }

    /// A bind that cannot succeed, as a known account's check costs: for a
    /// login name the search did not find, so that an unknown user is not
    /// told apart from a wrong password by the time the answer takes.
    pub async fn decoy_bind(&self, password: &[u8]) {
        let dn = format!("cn=tern-decoy-no-such-entry,{}", self.s.base);
        let _ = self.bind_check(&dn, password).await;
    }

    /// Whether `password` is the account's: a bind as `dn` with it. An
    /// empty password is refused here (an LDAP "unauthenticated bind"
    /// would succeed with it).
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when no server answers.
    pub async fn bind_check(&self, dn: &str, password: &[u8]) -> Result<bool, AuthError> {
        let Ok(password) = std::str::from_utf8(password) else {
            return Ok(false);
        };
        if password.is_empty() {
            return Ok(false);
        }
        let r = loop {
            let mut c = self.take(&self.binds).await?;
            match c
                .ldap
                .with_timeout(self.s.timeout)
                .simple_bind(dn, password)
                .await
            {
                Ok(res) => {
                    Self::give_back(&self.binds, c);
                    break Ok(res);
                }
                Err(e) if connection_lost(&e) && !c.fresh => {
                    tracing::debug!(cause = %e, "a kept LDAP connection was lost, reconnecting");
                }
                Err(e) => break Err(e),
            }
        };
        match r {
            Ok(res) if res.rc == 0 => Ok(true),
            // 49: invalidCredentials; 48/50/53: not allowed for this entry.
            Ok(res) if matches!(res.rc, 48..=50 | 53) => Ok(false),
            Ok(res) => Err(AuthError::Unavailable(format!("LDAP bind: {res}"))),
            Err(e) => Err(AuthError::Unavailable(format!("LDAP bind: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(
            filter_for("(mail=%u)", "lee@example.org"),
            "(mail=lee@example.org)"
        );
        assert_eq!(
            filter_for("(&(uid=%n)(dc=%d))", "*)(uid=*@x"),
            "(&(uid=\\2a\\29\\28uid=\\2a)(dc=x))"
        );
        assert_eq!(filter_for("(uid=%u)", "a\0b\\"), "(uid=a\\00b\\5c)");
        assert_eq!(filter_for("(x=100%%)", "a"), "(x=100%)");
    }
}
