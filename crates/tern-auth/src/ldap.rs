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
//! Each login opens its own connections (one to search, one to bind), to
//! the first of the configured URIs that answers within the timeout; a
//! server that went away is simply not used for the next login, so nothing
//! has to notice that a kept connection died. No answer from any URI in
//! time is a temporary failure, never "wrong password".

use std::collections::HashMap;
use std::time::Duration;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::passwd_file::{EntryAuth, UserEntry};
use crate::sql::Request;
use crate::AuthError;

/// What the operator configures for one directory.
#[derive(Debug, Clone)]
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
    /// How long to wait for a server.
    pub timeout: Duration,
}

/// One configured directory.
#[derive(Debug)]
pub struct LdapBackend {
    s: LdapSettings,
    /// This backend's place in the directory (for the bind check).
    index: usize,
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
            if !(u.starts_with("ldap://") || u.starts_with("ldapi://")) {
                return Err(format!(
                    "{u}: only ldap:// and ldapi:// are supported in this build"
                ));
            }
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
        Ok(LdapBackend { s, index })
    }

    /// A connection to the first server that answers.
    async fn connect(&self) -> Result<ldap3::Ldap, AuthError> {
        let mut last = String::new();
        for uri in &self.s.uris {
            let settings = LdapConnSettings::new().set_conn_timeout(self.s.timeout);
            match tokio::time::timeout(self.s.timeout, LdapConnAsync::with_settings(settings, uri))
                .await
            {
                Ok(Ok((conn, mut ldap))) => {
                    ldap3::drive!(conn);
                    ldap.with_timeout(self.s.timeout);
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
        let unavailable = |e: ldap3::LdapError| AuthError::Unavailable(format!("LDAP: {e}"));
        let mut ldap = self.connect().await?;
        if let Some(dn) = &self.s.bind_dn {
            ldap.simple_bind(dn, &self.s.bind_password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(unavailable)?;
        }
        let filter = filter_for(&self.s.filter, req.user);
        let attrs: Vec<&str> = self.s.attributes.values().map(String::as_str).collect();
        let attrs = if attrs.is_empty() { vec!["1.1"] } else { attrs };
        let found = ldap
            .search(&self.s.base, Scope::Subtree, &filter, attrs)
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(unavailable);
        let _ = ldap.unbind().await;
        let (entries, _) = found?;
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
        let mut ldap = self.connect().await?;
        let r = ldap.simple_bind(dn, password).await;
        let _ = ldap.unbind().await;
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
