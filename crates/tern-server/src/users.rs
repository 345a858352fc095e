//! Users: password check against the passwd-file and the Maildir location.

use std::path::{Path, PathBuf};

use tern_auth::sql::Request;
use tern_auth::{Backend, Directory, PasswdFile, UserEntry};
use tern_maildir::quota::QuotaSpec;
use tern_maildir::Maildir;

/// A user that has logged in.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// The user's Maildir.
    pub maildir: Maildir,
    /// The user's quota from the user database (or the configured
    /// default); `None` leaves it to the Maildir's own `maildirsize`.
    pub quota: Option<QuotaSpec>,
    /// Which services the account may use.
    pub access: Access,
    /// The server that holds the account (`mailhost`), for the proxy:
    /// one or more `host[:port]`, comma-separated.
    pub mailhost: Option<String>,
    /// The uid and gid its storage work runs with (when tern runs as root
    /// and `mail.account_uids` covers the account).
    pub creds: Option<crate::creds::Creds>,
    /// The account's groups (courier-authlib's `group=` options), which
    /// access control lists name as `group=NAME` (`$NAME` on the wire).
    pub groups: Vec<String>,
}

impl User {
    /// A user known only by a Maildir (`tern imapd`, `tern deliver --maildir`).
    pub fn for_maildir(name: String, maildir: Maildir) -> User {
        User {
            name,
            maildir,
            quota: None,
            access: Access::default(),
            mailhost: None,
            creds: None,
            groups: Vec::new(),
        }
    }
}

/// Account options as courier-authlib has them: `disableimap`,
/// `disablepop3`, `disableinsecureimap`, `disableinsecurepop3` (the last two:
/// only over TLS). Set by the account's fields (`disableimap=1`, or
/// `options=disableimap=1,disablepop3=1` as Courier's userdb and SQL
/// `options` column write them) over the site's `auth.default_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// No IMAP.
    pub disable_imap: bool,
    /// No POP3.
    pub disable_pop3: bool,
    /// IMAP only over TLS.
    pub disable_insecure_imap: bool,
    /// POP3 only over TLS.
    pub disable_insecure_pop3: bool,
}

/// Why a login with the right password is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The service is disabled for the account.
    Service,
    /// The account may use the service only over TLS.
    NeedsTls,
}

fn flag(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "no" | "false" | "off" | ""
    )
}

impl Access {
    /// Applies `key=value` options (`disableimap=1`), one list of them
    /// comma-separated as courier-authlib writes it.
    pub fn apply(&mut self, options: &str) {
        for o in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (k, v) = o.split_once('=').unwrap_or((o, "1"));
            self.set(k, v);
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        let on = flag(value);
        match key.to_ascii_lowercase().as_str() {
            "disableimap" => self.disable_imap = on,
            "disablepop3" => self.disable_pop3 = on,
            "disableinsecureimap" => self.disable_insecure_imap = on,
            "disableinsecurepop3" => self.disable_insecure_pop3 = on,
            _ => {}
        }
    }

    /// The site's defaults with the account's fields over them.
    pub fn of(defaults: Access, extra: &std::collections::HashMap<String, String>) -> Access {
        let mut a = defaults;
        if let Some(o) = extra.get("options") {
            a.apply(o);
        }
        for (k, v) in extra {
            a.set(k, v);
        }
        a
    }

    /// Whether `service` (`imap` or `pop3`) may be used, over TLS or not.
    pub fn check(&self, service: &str, tls: bool) -> Result<(), Denied> {
        let (off, insecure_off) = match service {
            "imap" => (self.disable_imap, self.disable_insecure_imap),
            "pop3" => (self.disable_pop3, self.disable_insecure_pop3),
            _ => (false, false),
        };
        if off {
            Err(Denied::Service)
        } else if insecure_off && !tls {
            Err(Denied::NeedsTls)
        } else {
            Ok(())
        }
    }
}

/// The groups of a user entry: every `group=` of its `options`
/// (`options=group=staff,group=sales`, Courier's userdb and LDAP form) and
/// its `group` field (comma-separated, the SQL form), without repeats.
pub fn groups_of(extra: &std::collections::HashMap<String, String>) -> Vec<String> {
    let from_options = extra
        .get("options")
        .into_iter()
        .flat_map(|o| o.split(','))
        .filter_map(|o| o.trim().strip_prefix("group="));
    let from_field = extra.get("group").into_iter().flat_map(|g| g.split(','));
    let mut out: Vec<String> = Vec::new();
    for g in from_options.chain(from_field).map(str::trim) {
        if !g.is_empty() && !out.iter().any(|o| o == g) {
            out.push(g.to_owned());
        }
    }
    out
}

/// The quota of a user entry: Courier's `quota=10000000S,1000C`, or
/// Dovecot's `quota_rule=*:storage=1G` (also `userdb_quota_rule`, with
/// `storage=` in kilobytes unless a unit follows, `bytes=`, `messages=`).
pub fn quota_of(extra: &std::collections::HashMap<String, String>) -> Option<QuotaSpec> {
    if let Some(q) = extra.get("quota").and_then(|q| QuotaSpec::parse(q)) {
        return Some(q);
    }
    let rule = extra
        .get("userdb_quota_rule")
        .or_else(|| extra.get("quota_rule"))?;
    let rule = rule.strip_prefix("*:").unwrap_or(rule);
    let mut spec = QuotaSpec::default();
    for part in rule.split_ascii_whitespace() {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let digits = value.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(n) = value[..digits].parse::<u64>() else {
            continue;
        };
        let unit = |default: u64| match value[digits..].to_ascii_uppercase().as_str() {
            "" => default,
            "B" => 1,
            "K" | "KB" => 1 << 10,
            "M" | "MB" => 1 << 20,
            "G" | "GB" => 1 << 30,
            "T" | "TB" => 1 << 40,
            _ => 0,
        };
        match key {
            "storage" => spec.bytes = n.saturating_mul(unit(1024)),
            "bytes" => spec.bytes = n.saturating_mul(unit(1)),
            "messages" => spec.messages = n,
            _ => {}
        }
    }
    (spec.bytes > 0 || spec.messages > 0).then_some(spec)
}

/// The account backends a configuration names: its passwd-file first, then
/// each `[[auth.sql]]` in order. Databases are not contacted here.
///
/// # Errors
/// A passwd-file that cannot be read, or a database URL or query that is
/// not usable, as text for the operator.
pub fn open_directory(cfg: &crate::config::Config) -> Result<Directory, String> {
    let mut backends = Vec::new();
    if let Some(pf) = &cfg.auth.passwd_file {
        let p = PasswdFile::open(&cfg.resolve(pf))
            .map_err(|e| format!("reading the passwd-file: {e}"))?;
        backends.push(Backend::PasswdFile(p));
    }
    if let Some(u) = &cfg.auth.userdb {
        let db = tern_auth::userdb::Userdb::open(&cfg.resolve(u))
            .map_err(|e| format!("reading the userdb: {e}"))?;
        backends.push(Backend::Userdb(db));
    }
    if cfg.auth.system_users {
        backends.push(Backend::System(tern_auth::system::SystemUsers::new(
            "/etc/passwd".into(),
            "/etc/shadow".into(),
            cfg.auth.system_min_uid,
        )));
    }
    if let Some(p) = &cfg.auth.pam {
        let b = tern_auth::pam::Pam::new(
            &p.service,
            "/etc/passwd".into(),
            cfg.auth.system_min_uid,
            std::time::Duration::from_millis(p.timeout_ms.max(1)),
            p.max_running,
            backends.len(),
        )
        .map_err(|e| format!("auth.pam: {e}"))?;
        backends.push(Backend::Pam(b));
    }
    for q in &cfg.auth.sql {
        let b = tern_auth::sql::SqlBackend::new(
            &q.url,
            &q.password_query,
            q.pool_size,
            std::time::Duration::from_millis(q.timeout_ms.max(1)),
        )?
        .with_cache(std::time::Duration::from_secs(q.cache_secs), q.cache_size)
        .with_courier_columns(q.columns == crate::config::SqlColumns::Courier);
        backends.push(Backend::Sql(b));
    }
    for l in &cfg.auth.ldap {
        let b = tern_auth::ldap::LdapBackend::new(l.settings(&cfg.base_dir)?, backends.len())?;
        backends.push(Backend::Ldap(Box::new(b)));
    }
    if let Some(program) = &cfg.auth.checkpassword {
        let program = cfg.resolve(program);
        if !program.is_file() {
            return Err(format!(
                "auth.checkpassword: {} is not a file",
                program.display()
            ));
        }
        backends.push(Backend::Checkpassword(
            tern_auth::checkpassword::Checkpassword::new(
                program,
                std::time::Duration::from_millis(cfg.auth.checkpassword_timeout_ms.max(1)),
                cfg.auth.checkpassword_max_running,
                backends.len(),
            ),
        ));
    }
    Ok(Directory::new(backends))
}

/// The user database and the rule that finds each user's Maildir.
#[derive(Debug)]
pub struct UserDb {
    directory: Directory,
    maildir_template: String,
    base_dir: PathBuf,
    default_quota: Option<QuotaSpec>,
    folder_names: tern_maildir::name_form::NameSetting,
    default_access: Access,
    /// Master users (`auth.master_passwd_file`) and the separator of
    /// `user*master`.
    masters: Option<(PasswdFile, String)>,
    /// Which accounts run their storage work as themselves.
    account_uids: crate::config::AccountUids,
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
    /// Good password, but the account may not use this service (here).
    Denied(Denied),
    /// Too many failed logins from the client's address: nothing checked.
    Blocked,
}

impl UserDb {
    /// A user database over one passwd-file.
    pub fn new(passwd: PasswdFile, maildir_template: String, base_dir: PathBuf) -> UserDb {
        Self::over(
            Directory::new(vec![Backend::PasswdFile(passwd)]),
            maildir_template,
            base_dir,
        )
    }

    /// A user database over the account backends of `directory`.
    pub fn over(directory: Directory, maildir_template: String, base_dir: PathBuf) -> UserDb {
        UserDb {
            directory,
            maildir_template,
            base_dir,
            default_quota: None,
            folder_names: Default::default(),
            default_access: Access::default(),
            masters: None,
            account_uids: Default::default(),
        }
    }

    /// The user database a configuration describes, over `directory`.
    pub fn configured(directory: Directory, cfg: &crate::config::Config) -> UserDb {
        UserDb::over(directory, cfg.mail.maildir.clone(), cfg.base_dir.clone())
            .with_folder_names(cfg.mail.folder_names.setting())
            .with_default_quota(cfg.quota.default.as_deref().and_then(QuotaSpec::parse))
            .with_default_options(&cfg.auth.default_options)
            .with_account_uids(cfg.mail.account_uids)
    }

    /// Which accounts' storage work runs with their own uid and gid.
    pub fn with_account_uids(mut self, which: crate::config::AccountUids) -> UserDb {
        self.account_uids = which;
        self
    }

    /// The credentials `entry`'s storage work runs with, if any: its uid
    /// and gid when `mail.account_uids` covers it and both are there (never
    /// root's).
    fn creds_of(&self, entry: &UserEntry) -> Option<crate::creds::Creds> {
        use crate::config::AccountUids;
        let covered = match self.account_uids {
            AccountUids::None => false,
            AccountUids::System => entry.system,
            AccountUids::All => true,
        };
        if !covered {
            return None;
        }
        let num = |k: &str| {
            entry
                .extra
                .get(k)
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        match (num("uid"), num("gid")) {
            (Some(uid), Some(gid)) if uid != 0 => Some(crate::creds::Creds { uid, gid }),
            _ => None,
        }
    }

    /// The account options every account has unless its own fields say
    /// otherwise (courier-authlib's `DEFAULTOPTIONS`).
    pub fn with_default_options(mut self, options: &str) -> UserDb {
        self.default_access.apply(options);
        self
    }

    /// Spells folder names on disk as `names` says.
    pub fn with_folder_names(mut self, names: tern_maildir::name_form::NameSetting) -> UserDb {
        self.folder_names = names;
        self
    }

    /// Master users, from a passwd-file of their own; `separator` joins
    /// `user` and `master` in a login name (Dovecot's `*`).
    pub fn with_masters(mut self, masters: PasswdFile, separator: &str) -> UserDb {
        self.masters = Some((masters, separator.to_owned()));
        self
    }

    /// A failing bind for an unknown name where LDAP checks by binding
    /// ([`Directory::decoy_bind`]); whether one was made.
    pub async fn decoy_bind(&self, req: &Request<'_>, password: &[u8]) -> bool {
        self.directory.decoy_bind(req, password).await
    }

    /// Whether master users are configured.
    pub fn has_masters(&self) -> bool {
        self.masters.is_some()
    }

    /// `user*master` split into the user and the master, when master users
    /// are configured and the name has that form.
    pub fn split_master<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (_, sep) = self.masters.as_ref()?;
        let (target, master) = name.rsplit_once(sep.as_str())?;
        (!target.is_empty() && !master.is_empty()).then_some((target, master))
    }

    /// The entry of the master user `name`.
    ///
    /// # Errors
    /// The master passwd-file cannot be read.
    pub fn master_entry(&self, name: &str) -> Result<Option<UserEntry>, tern_auth::AuthError> {
        match &self.masters {
            Some((pf, _)) => pf.lookup(name),
            None => Ok(None),
        }
    }

    /// Whether `password` is master user `name`'s (CPU-heavy: call it from
    /// a password thread). An unknown master costs a check all the same.
    ///
    /// # Errors
    /// The master passwd-file cannot be read.
    pub fn check_master(&self, name: &str, password: &[u8]) -> Result<bool, tern_auth::AuthError> {
        let Some((pf, _)) = &self.masters else {
            return Ok(false);
        };
        match pf.lookup(name)? {
            Some(e) => Ok(tern_auth::scheme::verify(&e.password, password).unwrap_or(false)),
            None => {
                if let Some(d) = pf.decoy()? {
                    let _ = tern_auth::scheme::verify(&d, password);
                }
                Ok(false)
            }
        }
    }

    /// Whether the site's usual stored password is in the clear (then an
    /// unknown user's SCRAM exchange costs a key derivation too, as a real
    /// account's does).
    pub fn usual_password_is_cleartext(&self) -> bool {
        self.directory
            .passwd_file()
            .and_then(|p| p.decoy().ok().flatten())
            .is_some_and(|d| tern_auth::scheme::cleartext(&d).is_some())
    }

    /// Whether some backend hands out stored passwords (what CRAM-MD5 and
    /// SCRAM need); a directory that only binds does not.
    pub fn holds_secrets(&self) -> bool {
        self.directory.holds_secrets()
    }

    /// Sets the quota of users whose entry has none.
    pub fn with_default_quota(mut self, quota: Option<QuotaSpec>) -> UserDb {
        self.default_quota = quota;
        self
    }

    /// Looks a user up without a password (delivery).
    ///
    /// # Errors
    /// The user database cannot be read, or a backend did not answer.
    pub async fn find(&self, user: &str) -> Result<Option<User>, tern_auth::AuthError> {
        let req = Request {
            user,
            service: "deliver",
            remote: "",
        };
        Ok(self
            .directory
            .lookup(&req)
            .await?
            .map(|e| self.user_for(&e)))
    }

    /// The account a login names, from the first backend that knows it.
    ///
    /// # Errors
    /// As [`Directory::lookup`].
    pub async fn lookup(
        &self,
        req: &Request<'_>,
    ) -> Result<Option<UserEntry>, tern_auth::AuthError> {
        self.directory.lookup(req).await
    }

    /// For an account its backend checks itself (LDAP): whether the
    /// password is right; `None` for one checked by its hash ([`UserDb::check`]).
    pub async fn check_by_backend(
        &self,
        entry: &UserEntry,
        password: &[u8],
        req: &Request<'_>,
    ) -> Option<Result<Option<UserEntry>, tern_auth::AuthError>> {
        self.directory.check_by_backend(entry, password, req).await
    }

    /// Whether [`UserDb::check`] for `entry` only compares cleartext, on a
    /// site whose usual scheme is cleartext (the passwd-file's decoy is
    /// `{PLAIN}`): less work than handing it to a password thread, so done
    /// on the spot. An unknown user (checked against the decoy) and a known
    /// one with a wrong password then take the same path; anything else
    /// (another scheme, a decoy not built yet, another backend) goes to the
    /// password threads as before.
    pub fn check_is_cleartext(&self, entry: Option<&UserEntry>) -> bool {
        // The account's own scheme first: a hashed one needs no look at
        // the passwd-file's decoy.
        entry.is_none_or(|e| tern_auth::scheme::cleartext(&e.password).is_some())
            && self
                .directory
                .passwd_file()
                .and_then(|p| p.decoy().ok().flatten())
                .is_some_and(|d| tern_auth::scheme::cleartext(&d).is_some())
    }

    /// Checks a password against the account found (`None`: no such
    /// account); CPU-heavy, so call it from a password thread.
    pub fn check(&self, entry: Option<&UserEntry>, password: &[u8]) -> LoginResult {
        let Some(entry) = entry else {
            // Spend what a real check of the site's usual scheme costs,
            // so that unknown users are not told apart from wrong
            // passwords by timing; the answer is no whatever it says.
            let decoy = self
                .directory
                .passwd_file()
                .and_then(|p| p.decoy().ok().flatten());
            let _ = tern_auth::scheme::verify(
                decoy
                    .as_deref()
                    .unwrap_or("{SHA512-CRYPT}$6$rounds=5000$saltsaltsaltsalt$"),
                password,
            );
            return LoginResult::Failed;
        };
        match tern_auth::scheme::verify(&entry.password, password) {
            Ok(true) => LoginResult::Ok(self.user_for(entry)),
            Ok(false) => LoginResult::Failed,
            Err(e) => {
                tracing::warn!(user = %entry.user, cause = %e, "password of user cannot be checked");
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
            maildir: Maildir::with_names(root, self.folder_names),
            quota: quota_of(&entry.extra).or(self.default_quota),
            access: Access::of(self.default_access, &entry.extra),
            mailhost: entry
                .extra
                .get("mailhost")
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty()),
            creds: self.creds_of(entry),
            groups: groups_of(&entry.extra),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_options_override_the_defaults() {
        let mut defaults = Access::default();
        defaults.apply("disableinsecurepop3=1, disableimap");
        let extra: std::collections::HashMap<String, String> = [
            ("options".to_owned(), "disablepop3=1".to_owned()),
            ("disableimap".to_owned(), "0".to_owned()),
        ]
        .into();
        let a = Access::of(defaults, &extra);
        assert_eq!(a.check("imap", false), Ok(()));
        assert_eq!(a.check("pop3", true), Err(Denied::Service));
        let b = Access::of(defaults, &Default::default());
        assert_eq!(b.check("imap", true), Err(Denied::Service));
        let mut c = Access::default();
        c.apply("disableinsecureimap=yes");
        assert_eq!(c.check("imap", false), Err(Denied::NeedsTls));
        assert_eq!(c.check("imap", true), Ok(()));
        assert_eq!(c.check("deliver", false), Ok(()));
    }

    #[test]
    fn groups_come_from_options_and_the_group_field() {
        let g = groups_of(&extra(
            "options",
            "disablepop3=1,group=staff, group=sales,group=staff",
        ));
        assert_eq!(g, ["staff", "sales"]);
        assert_eq!(groups_of(&extra("group", "staff,ops")), ["staff", "ops"]);
        assert!(groups_of(&extra("options", "disableimap=1")).is_empty());
    }

    fn extra(k: &str, v: &str) -> std::collections::HashMap<String, String> {
        [(k.to_owned(), v.to_owned())].into_iter().collect()
    }

    #[test]
    fn only_a_cleartext_site_checks_on_the_spot() {
        let t = tempfile::tempdir().unwrap();
        let db = |text: &str| {
            let path = t.path().join("users");
            std::fs::write(&path, text).unwrap();
            let pf = tern_auth::passwd_file::PasswdFile::open(&path).unwrap();
            UserDb::new(pf, "mail/{user}".to_owned(), t.path().to_owned())
        };
        let entry =
            |db: &UserDb, name: &str| db.directory.passwd_file().unwrap().lookup(name).unwrap();
        let plain = db("a:{PLAIN}x::::::\nb:{PLAIN}y::::::\n");
        assert!(plain.check_is_cleartext(entry(&plain, "a").as_ref()));
        assert!(
            plain.check_is_cleartext(None),
            "an unknown user as a known one"
        );
        // A site of SHA512-CRYPT: its one {PLAIN} account and unknown users
        // alike go to the password threads.
        let h = tern_auth::scheme::hash_sha512_crypt("pw").unwrap();
        let crypt = db(&format!("a:{h}::::::\nb:{h}::::::\nc:{{PLAIN}}z::::::\n"));
        assert!(!crypt.check_is_cleartext(entry(&crypt, "a").as_ref()));
        assert!(!crypt.check_is_cleartext(entry(&crypt, "c").as_ref()));
        assert!(!crypt.check_is_cleartext(None));
        // A cleartext site's one hashed account is checked by a thread.
        let mixed = db(&format!(
            "a:{{PLAIN}}x::::::\nb:{{PLAIN}}y::::::\nc:{h}::::::\n"
        ));
        assert!(!mixed.check_is_cleartext(entry(&mixed, "c").as_ref()));
        assert!(mixed.check_is_cleartext(None));
    }

    #[test]
    fn quotas_in_courier_and_dovecot_form() {
        let q = quota_of(&extra("quota", "5000S,10C")).unwrap();
        assert_eq!((q.bytes, q.messages), (5000, 10));
        let q = quota_of(&extra("userdb_quota_rule", "*:storage=1G")).unwrap();
        assert_eq!(q.bytes, 1 << 30);
        let q = quota_of(&extra("quota_rule", "*:storage=100")).unwrap();
        assert_eq!(q.bytes, 102_400);
        let q = quota_of(&extra("quota_rule", "*:messages=7")).unwrap();
        assert_eq!((q.bytes, q.messages), (0, 7));
        assert!(quota_of(&extra("mail", "x")).is_none());
    }
}
