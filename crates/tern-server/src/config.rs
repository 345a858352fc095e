//! The configuration: one typed TOML tree, validated before any port is bound.
//!
//! Relative paths are relative to the directory of the config file. Unknown
//! keys are an error that names the key. See `docs/configuration.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default cleartext IMAP listener of the embedded configuration.
pub const DEFAULT_IMAP_LISTEN: &str = "127.0.0.1:1143";
/// Default implicit-TLS IMAP listener of the embedded configuration.
pub const DEFAULT_IMAPS_LISTEN: &str = "127.0.0.1:1993";
/// Default cleartext POP3 listener of the embedded configuration.
pub const DEFAULT_POP3_LISTEN: &str = "127.0.0.1:1110";
/// Default implicit-TLS POP3 listener of the embedded configuration.
pub const DEFAULT_POP3S_LISTEN: &str = "127.0.0.1:1995";
/// Longest command line accepted, literals of non-APPEND commands included.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;
/// Largest message APPEND accepts (RFC 7889 APPENDLIMIT).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;
/// Largest refused LITERAL+ literal read and dropped before the connection
/// is closed instead (RFC 7888 §4): as large as an APPEND may be, so that a
/// client sending a too-large message with LITERAL+ gets NO [TOOBIG] and
/// keeps its session.
pub const DEFAULT_MAX_REFUSED_LITERAL: u64 = DEFAULT_MAX_MESSAGE_SIZE;
/// Bytes of messages one FETCH job reads before its answer is sent.
pub const DEFAULT_FETCH_JOB_BYTES: u64 = 8 * 1024 * 1024;
/// Messages at least this large (with CRLF) go out from their file a piece
/// at a time when a FETCH asks for the whole message.
pub const DEFAULT_STREAM_LITERAL_BYTES: u64 = 1024 * 1024;
/// Keywords one mailbox may hold.
pub const DEFAULT_MAX_KEYWORDS: usize = 1000;
/// Keys one SEARCH, SORT or THREAD may hold: far above what clients send
/// (a long Thunderbird filter is tens), low enough that a hostile
/// 64 KiB line cannot make each message cost twenty thousand checks.
pub const DEFAULT_MAX_SEARCH_KEYS: usize = 2000;
/// Threads for storage calls (tokio's default).
pub const DEFAULT_BLOCKING_THREADS: usize = 512;
/// Storage calls one account may have running at once: a few per session
/// of a client that opens several (Thunderbird opens five), far below
/// [`DEFAULT_BLOCKING_THREADS`].
pub const DEFAULT_MAX_STORAGE_JOBS_PER_ACCOUNT: usize = 16;
/// How long a session waits for one storage call: far above any working
/// disk's (a SEARCH TEXT of 100,000 messages takes seconds), well below a
/// client's patience with a dead NFS server.
pub const DEFAULT_STORAGE_TIMEOUT_SECS: u64 = 120;
/// Idle timeout before login.
pub const DEFAULT_PREAUTH_TIMEOUT_SECS: u64 = 60;
/// Idle timeout after login: RFC 3501 §5.4 asks for at least 30 minutes.
pub const DEFAULT_AUTH_TIMEOUT_SECS: u64 = 30 * 60;
/// Failed logins allowed on one connection before it is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// Delay after the first failed login; it doubles with each further failure.
pub const DEFAULT_AUTH_FAILURE_DELAY_MS: u64 = 1000;
/// Connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Connections from one IP address at once. High on purpose: Thunderbird
/// opens 5 per account, and many users share one NAT address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 100;
/// Default logged-in sessions of one account from one address, per
/// protocol (Dovecot's `mail_max_userip_connections`): a Thunderbird opens
/// five.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER_IP: usize = 10;
/// Default logged-in sessions of one account from anywhere.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 50;
/// How often a selected or idling session looks at the disk for changes
/// made by other programs.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;

/// How often an idled folder is rescanned although inotify works: the
/// safety net for NFS, as Dovecot's `mailbox_idle_check_interval`.
pub const DEFAULT_IDLE_CHECK_INTERVAL_SECS: u64 = 30;

/// Why the configuration is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or type error, or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde/toml said (names the key).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: key `{key}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// When LOGIN and AUTHENTICATE PLAIN are allowed without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cleartext {
    /// Only from loopback addresses (the default).
    #[default]
    Loopback,
    /// Always (only behind a trusted network).
    Always,
    /// Never: TLS is required.
    Never,
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host name for the greeting and logs.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// IMAP listeners.
    #[serde(default)]
    pub imap: ImapConfig,
    /// POP3 listeners and policy.
    #[serde(default)]
    pub pop3: Pop3Config,
    /// Certificate and key.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Maildir++ quota policy.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// User database.
    pub auth: AuthConfig,
    /// Where mail lives.
    #[serde(default)]
    pub mail: MailConfig,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// `[haproxy]`: who may send PROXY protocol headers.
    #[serde(default)]
    pub haproxy: HaproxyConfig,
    /// `[proxy]`: relaying accounts whose `mailhost` is another server.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[lmtp]`: deliveries from the MTA.
    #[serde(default)]
    pub lmtp: LmtpConfig,
    /// Directory of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_hostname() -> String {
    tern_maildir::unique::hostname()
}

/// `[imap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// Cleartext + STARTTLS listeners.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Implicit TLS listeners.
    #[serde(default)]
    pub tls_listen: Vec<String>,
    /// Listeners behind a load balancer: each connection starts with a
    /// PROXY protocol header (v1 or v2) from `haproxy.trusted_networks`.
    #[serde(default)]
    pub haproxy_listen: Vec<String>,
    /// The same with implicit TLS (the header comes before the TLS hello).
    #[serde(default)]
    pub haproxy_tls_listen: Vec<String>,
    /// The personal namespace's prefix: `INBOX.` as Courier-IMAP (the
    /// default), or empty as Dovecot's default.
    #[serde(default = "default_namespace_prefix")]
    pub namespace_prefix: String,
    /// The hierarchy separator clients see: `.` (the default) or `/`.
    #[serde(default = "default_separator")]
    pub separator: char,
    /// Access control lists (RFC 4314, Courier's `courierimapacl` files):
    /// offered and checked. Off, every user has every right on their own
    /// folders and no list is read (Courier's `IMAP_ACL=0`).
    #[serde(default = "default_true")]
    pub acl: bool,
    /// How long a folder's list, once read, is used without reading it
    /// again (0: read every time).
    #[serde(default = "default_acl_cache_secs")]
    pub acl_cache_secs: u64,
}

fn default_acl_cache_secs() -> u64 {
    30
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            listen: Vec::new(),
            tls_listen: Vec::new(),
            haproxy_listen: Vec::new(),
            haproxy_tls_listen: Vec::new(),
            namespace_prefix: default_namespace_prefix(),
            separator: default_separator(),
            acl: true,
            acl_cache_secs: default_acl_cache_secs(),
        }
    }
}

fn default_namespace_prefix() -> String {
    "INBOX.".to_owned()
}

fn default_separator() -> char {
    '.'
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Names of this server besides `hostname`: a `mailhost` naming one of
    /// them (or `hostname`) is served here.
    #[serde(default)]
    pub self_names: Vec<String>,
    /// The IMAP port of a `mailhost` without one.
    #[serde(default = "default_proxy_imap_port")]
    pub imap_port: u16,
    /// The backends' POP3 port (a port in `mailhost` is the IMAP one).
    #[serde(default = "default_proxy_pop3_port")]
    pub pop3_port: u16,
    /// The backends' LMTP port, for deliveries relayed to them.
    #[serde(default = "default_proxy_lmtp_port")]
    pub lmtp_port: u16,
    /// How long a relay connection to a backend's LMTP is kept open for
    /// the next message, in seconds; 0: one connection per message.
    #[serde(default = "default_proxy_lmtp_keep_secs")]
    pub lmtp_keep_secs: u64,
    /// Connecting and logging in to a backend, in milliseconds, all
    /// backends of one login together.
    #[serde(default = "default_proxy_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// How long a backend that failed is skipped, in seconds.
    #[serde(default = "default_proxy_down_secs")]
    pub down_secs: u64,
    /// Start each backend connection with a PROXY v2 header giving the
    /// client's address (the backend's `haproxy_listen` must trust this
    /// server).
    #[serde(default)]
    pub send_proxy_header: bool,
    /// The master user (on the backends) for logins whose password the
    /// proxy never saw (SCRAM, CRAM-MD5, EXTERNAL, master logins).
    #[serde(default)]
    pub master_user: Option<String>,
    /// Its password.
    #[serde(default)]
    pub master_password: Option<String>,
    /// TLS to the backends: `none`, `starttls` (STARTTLS/STLS before the
    /// login) or `tls` (their implicit-TLS ports).
    #[serde(default)]
    pub backend_tls: crate::proxy::BackendTls,
    /// CA certificates (PEM) the backends' certificates are verified with;
    /// required with `backend_tls`. The name checked is the `mailhost`'s.
    #[serde(default)]
    pub backend_ca: Option<PathBuf>,
    /// Where a backend may be reached without TLS (default: loopback).
    #[serde(default)]
    pub cleartext_networks: Option<Vec<String>>,
    /// `[proxy.pools.NAME]`: backends sharing accounts, chosen per user by
    /// a consistent hash (`mailhost = "pool:NAME"`).
    #[serde(default)]
    pub pools: HashMap<String, PoolConfig>,
    /// The pool of accounts without a `mailhost`.
    #[serde(default)]
    pub default_pool: Option<String>,
    /// Tell IMAP backends the client's address in ID before the login.
    #[serde(default = "default_true")]
    pub send_id: bool,
    /// A Unix socket for `tern proxy list` and `tern proxy kick`.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Where `tern proxy move` keeps its moves across restarts (absent:
    /// in memory only).
    #[serde(default)]
    pub moves_file: Option<PathBuf>,
    /// Where the other proxies of the pool reach this one's control
    /// (`tern proxy --pool ...`), e.g. `10.0.0.2:1144`.
    #[serde(default)]
    pub control_listen: Option<String>,
    /// The secret the proxies of a pool share for it.
    #[serde(default)]
    pub control_secret: Option<String>,
    /// The other proxies' `control_listen` addresses.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Every this many seconds, backends marked down are checked and those
    /// that answer are up again at once; 0 turns the check off.
    #[serde(default = "default_proxy_check_secs")]
    pub check_secs: u64,
    /// The account a health check logs in as (absent: it waits for the
    /// greeting only).
    #[serde(default)]
    pub check_user: Option<String>,
    /// Its password.
    #[serde(default)]
    pub check_password: Option<String>,
}

fn default_proxy_check_secs() -> u64 {
    5
}

fn default_true() -> bool {
    true
}

/// `[proxy.pools.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `host[:port]` of each backend.
    pub servers: Vec<String>,
    /// Their weights (default 1 each): a server of weight 2 gets twice the
    /// users.
    #[serde(default)]
    pub weights: Vec<u32>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            self_names: Vec::new(),
            imap_port: default_proxy_imap_port(),
            pop3_port: default_proxy_pop3_port(),
            lmtp_port: default_proxy_lmtp_port(),
            lmtp_keep_secs: default_proxy_lmtp_keep_secs(),
            connect_timeout_ms: default_proxy_connect_timeout(),
            down_secs: default_proxy_down_secs(),
            send_proxy_header: false,
            master_user: None,
            master_password: None,
            backend_tls: Default::default(),
            backend_ca: None,
            cleartext_networks: None,
            pools: HashMap::new(),
            default_pool: None,
            send_id: true,
            control_socket: None,
            moves_file: None,
            control_listen: None,
            control_secret: None,
            peers: Vec::new(),
            check_secs: default_proxy_check_secs(),
            check_user: None,
            check_password: None,
        }
    }
}

fn default_proxy_imap_port() -> u16 {
    143
}

fn default_proxy_lmtp_port() -> u16 {
    24
}

fn default_proxy_lmtp_keep_secs() -> u64 {
    5
}

fn default_proxy_pop3_port() -> u16 {
    110
}

fn default_proxy_connect_timeout() -> u64 {
    5000
}

fn default_proxy_down_secs() -> u64 {
    30
}

impl ProxyConfig {
    /// The settings the server runs with (`base` resolves `backend_ca`).
    ///
    /// # Errors
    /// A CA file that cannot be used, or a network that does not parse.
    pub fn settings(&self, base: &Path) -> Result<crate::proxy::ProxySettings, String> {
        let defaults = crate::proxy::ProxySettings::default();
        let cleartext_networks = match &self.cleartext_networks {
            Some(n) => n
                .iter()
                .map(|n| crate::haproxy::Network::parse(n))
                .collect::<Result<Vec<_>, _>>()?,
            None => defaults.cleartext_networks,
        };
        let tls_connector = match &self.backend_ca {
            Some(ca) => {
                let ca = if ca.is_absolute() {
                    ca.clone()
                } else {
                    base.join(ca)
                };
                Some(crate::tls::connector_for(&ca)?)
            }
            None if self.backend_tls != crate::proxy::BackendTls::None => {
                return Err("proxy.backend_tls needs proxy.backend_ca".into())
            }
            None => None,
        };
        let mut pools = HashMap::new();
        for (name, p) in &self.pools {
            if p.servers.is_empty() || (!p.weights.is_empty() && p.weights.len() != p.servers.len())
            {
                return Err(format!(
                    "pools.{name}: needs servers, and one weight per server if weights are given"
                ));
            }
            let servers = p
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), p.weights.get(i).copied().unwrap_or(1).max(1)))
                .collect();
            pools.insert(name.clone(), crate::proxy::Pool { servers });
        }
        if let Some(d) = &self.default_pool {
            if !pools.contains_key(d) {
                return Err(format!("default_pool {d:?} is not in [proxy.pools]"));
            }
        }
        Ok(crate::proxy::ProxySettings {
            send_id: self.send_id,
            pools,
            default_pool: self.default_pool.clone(),
            backend_tls: self.backend_tls,
            tls_connector,
            cleartext_networks,
            self_names: self.self_names.clone(),
            // Filled in by the server once its listeners are bound.
            own_listeners: Vec::new(),
            imap_port: self.imap_port,
            pop3_port: self.pop3_port,
            lmtp_port: self.lmtp_port,
            lmtp_keep: Duration::from_secs(self.lmtp_keep_secs),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            down_for: Duration::from_secs(self.down_secs),
            send_proxy_header: self.send_proxy_header,
            check_every: (self.check_secs > 0).then(|| Duration::from_secs(self.check_secs)),
            check_login: self
                .check_user
                .clone()
                .map(|u| (u, self.check_password.clone().unwrap_or_default())),
            master: self
                .master_user
                .clone()
                .map(|u| (u, self.master_password.clone().unwrap_or_default())),
        })
    }
}

/// `[haproxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The balancers' addresses (`10.0.0.0/8`, `2001:db8::5`): a
    /// connection to a `haproxy_listen` listener from anywhere else is
    /// closed at once.
    #[serde(default)]
    pub trusted_networks: Vec<String>,
    /// How long the header may take to arrive, in seconds.
    #[serde(default = "default_haproxy_timeout")]
    pub timeout_secs: u64,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            trusted_networks: Vec::new(),
            timeout_secs: default_haproxy_timeout(),
        }
    }
}

fn default_haproxy_timeout() -> u64 {
    3
}

impl HaproxyConfig {
    /// The trusted networks, parsed.
    ///
    /// # Errors
    /// An entry that is not an address or range.
    pub fn networks(&self) -> Result<Vec<crate::haproxy::Network>, String> {
        self.trusted_networks
            .iter()
            .map(|n| crate::haproxy::Network::parse(n))
            .collect()
    }
}

/// `[pop3]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Pop3Config {
    /// Cleartext + STLS listeners.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Implicit TLS listeners.
    #[serde(default)]
    pub tls_listen: Vec<String>,
    /// Listeners behind a load balancer: each connection starts with a
    /// PROXY protocol header (v1 or v2) from `haproxy.trusted_networks`.
    #[serde(default)]
    pub haproxy_listen: Vec<String>,
    /// The same with implicit TLS (the header comes before the TLS hello).
    #[serde(default)]
    pub haproxy_tls_listen: Vec<String>,
    /// Minimum seconds between two POP3 logins of one user (RFC 2449
    /// LOGIN-DELAY); 0 (the default) for none.
    #[serde(default)]
    pub login_delay_secs: u64,
    /// What CAPA says in EXPIRE (RFC 2449): days, or "NEVER"; not
    /// advertised when absent.
    #[serde(default)]
    pub expire: Option<String>,
    /// UIDLs computed from the IMAP UID and UIDVALIDITY by a template, as
    /// Dovecot's `pop3_uidl_format` (`"%08Xu%08Xv"` keeps the UIDLs of a
    /// site that ran Dovecot with its default). Absent (the default):
    /// Courier's UIDLs from `courierpop3dsizelist`.
    #[serde(default)]
    pub uidl_format: Option<String>,
}

/// `[lmtp]`: the LMTP listener (RFC 2033) the MTA delivers through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmtpConfig {
    /// Listeners (`127.0.0.1:24`). LMTP has no authentication: loopback or
    /// a private network only.
    #[serde(default)]
    pub listen: Vec<String>,
    /// A Unix socket to serve as well (Postfix `lmtp:unix:PATH`), made
    /// after privileges are dropped: its directory must be writable by
    /// `mail.user`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The socket's mode, in octal (`0660`: the MTA's group must be the
    /// socket's; `0666` for anyone on the host).
    #[serde(default = "default_lmtp_socket_mode")]
    pub socket_mode: String,
    /// Look recipients up by the local part alone (`alice@example.org` is
    /// the account `alice`), for a directory of bare names; else by the
    /// whole address.
    #[serde(default)]
    pub local_part_only: bool,
}

fn default_lmtp_socket_mode() -> String {
    "0666".to_owned()
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            listen: Vec::new(),
            socket: None,
            socket_mode: default_lmtp_socket_mode(),
            local_part_only: false,
        }
    }
}

impl LmtpConfig {
    /// The socket's mode bits, or why the setting is wrong.
    ///
    /// # Errors
    /// Not an octal mode.
    pub fn socket_mode(&self) -> Result<u32, String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "lmtp.socket_mode {:?} is not an octal mode",
                    self.socket_mode
                )
            })
    }
}

/// `[quota]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Let users change their own quota with SETQUOTA (RFC 9208). Off by
    /// default: quotas are the operator's to set.
    #[serde(default)]
    pub allow_setquota: bool,
    /// Quota for users whose entry sets none, e.g. `1000000000S,50000C`.
    #[serde(default)]
    pub default: Option<String>,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA certificates (PEM) that sign clients' certificates: with it, TLS
    /// connections may present one (none is required), and a verified one
    /// lets the client log in by SASL EXTERNAL as the name in it.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// The part of a client certificate that names the account:
    /// `commonName` (the default, as Dovecot's `ssl_cert_username_field`)
    /// or `emailAddress`.
    #[serde(default)]
    pub cert_username_field: CertField,
}

/// The part of a client certificate that names the account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CertField {
    /// The subject's CN.
    #[default]
    #[serde(rename = "commonName")]
    CommonName,
    /// The subject's emailAddress attribute.
    #[serde(rename = "emailAddress")]
    EmailAddress,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Dovecot-format passwd-file (tried first).
    #[serde(default)]
    pub passwd_file: Option<PathBuf>,
    /// Courier's userdb text source (a file or a directory of files, e.g.
    /// `/etc/courier/userdb`), tried after the passwd-file.
    #[serde(default)]
    pub userdb: Option<PathBuf>,
    /// SQL databases, tried in order after the passwd-file and userdb.
    #[serde(default)]
    pub sql: Vec<SqlConfig>,
    /// LDAP directories, tried in order after the SQL databases.
    #[serde(default)]
    pub ldap: Vec<LdapConfig>,
    /// The system's accounts (`/etc/passwd` and `/etc/shadow`), tried after
    /// the passwd-file and userdb; their Maildir is `~/Maildir`. Reading
    /// the shadow file needs root: it requires `mail.allow_root` and no
    /// `mail.user`.
    #[serde(default)]
    pub system_users: bool,
    /// The lowest uid of a system account that may log in.
    #[serde(default = "default_system_min_uid")]
    pub system_min_uid: u32,
    /// `[auth.pam]`: system accounts (`/etc/passwd`) whose passwords a PAM
    /// service checks, tried after `system_users`.
    #[serde(default)]
    pub pam: Option<PamConfig>,
    /// A checkpassword program (the qmail interface), tried after every
    /// other backend: it answers for any name.
    #[serde(default)]
    pub checkpassword: Option<PathBuf>,
    /// How long one run may take, in milliseconds, before the login is a
    /// temporary failure.
    #[serde(default = "default_checkpassword_timeout")]
    pub checkpassword_timeout_ms: u64,
    /// Runs at once at most; more logins are told to try again later.
    #[serde(default = "default_checkpassword_max_running")]
    pub checkpassword_max_running: usize,
    /// Account options every account has unless its own fields say
    /// otherwise, courier-authlib's form: `disableinsecureimap=1,...`.
    #[serde(default)]
    pub default_options: String,
    /// When cleartext logins are allowed.
    #[serde(default)]
    pub cleartext: Cleartext,
    /// Failed logins per connection before it is closed.
    #[serde(default = "default_max_auth_failures")]
    pub max_failures: u32,
    /// First delay after a failed login, in milliseconds; doubles each time.
    #[serde(default = "default_failure_delay")]
    pub failure_delay_ms: u64,
    /// Failed logins from one address after which its logins are refused
    /// for `block_secs` (0: never).
    #[serde(default = "default_block_after")]
    pub block_after: u32,
    /// How long such an address is refused, and the window its failures
    /// are counted in, in seconds.
    #[serde(default = "default_block_secs")]
    pub block_secs: u64,
    /// Count loopback addresses too (off: a local webmail or proxy would
    /// block everyone behind it).
    #[serde(default)]
    pub block_loopback: bool,
    /// SASL mechanisms offered: any of `PLAIN`, `LOGIN`, `CRAM-MD5`,
    /// `SCRAM-SHA-1`, `SCRAM-SHA-256` (each SCRAM one brings its `-PLUS`
    /// form over TLS). Dovecot's default is PLAIN alone; tern's is PLAIN
    /// and LOGIN. CRAM-MD5 and SCRAM work only for accounts whose password
    /// is stored in the clear or (SCRAM) as SCRAM keys.
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
    /// A passwd-file of master users, who log in as any user with
    /// `user*master` and the master's password (or as PLAIN's or SCRAM's
    /// authorization identity).
    #[serde(default)]
    pub master_passwd_file: Option<PathBuf>,
    /// What joins the user and the master in a master login's name.
    #[serde(default = "default_master_separator")]
    pub master_separator: String,
    /// Proxies (addresses or ranges) whose IMAP ID `x-originating-ip`
    /// names the client (Dovecot's `login_trusted_networks`).
    #[serde(default)]
    pub login_trusted_networks: Vec<String>,
    /// `[auth.oauth]`: the token introspection endpoint (RFC 7662) for
    /// OAUTHBEARER and XOAUTH2.
    #[serde(default)]
    pub oauth: Option<OauthConfig>,
}

/// `[auth.pam]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PamConfig {
    /// The service (`/etc/pam.d/NAME`); `%s` is the protocol, `imap` or
    /// `pop3`, as Courier names its services.
    #[serde(default = "default_pam_service")]
    pub service: String,
    /// Checks running at once at most (each holds a thread while PAM
    /// works, a failure delay included).
    #[serde(default = "default_pam_max_running")]
    pub max_running: usize,
    /// How long a login waits for PAM, in milliseconds, before it is a
    /// temporary failure.
    #[serde(default = "default_pam_timeout")]
    pub timeout_ms: u64,
}

fn default_pam_service() -> String {
    "tern".into()
}

fn default_pam_max_running() -> usize {
    4
}

fn default_pam_timeout() -> u64 {
    10_000
}

/// `[auth.oauth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OauthConfig {
    /// `http://` or `https://` URL of the introspection endpoint.
    #[serde(default)]
    pub introspection_url: Option<String>,
    /// This server's client id at the endpoint (HTTP basic auth).
    #[serde(default)]
    pub client_id: String,
    /// Its secret.
    #[serde(default)]
    pub client_secret: String,
    /// The field of the answer that names the account.
    #[serde(default = "default_oauth_username_field")]
    pub username_field: String,
    /// How long the endpoint may take, in milliseconds.
    #[serde(default = "default_oauth_timeout")]
    pub timeout_ms: u64,
    /// CA certificates (PEM) for an `https://` endpoint.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A JSON Web Key Set file: tokens in the form of a JWT are checked
    /// here against its keys, without asking the endpoint.
    #[serde(default)]
    pub jwt_keys: Option<PathBuf>,
    /// The `iss` a locally checked token must carry.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// The `aud` a locally checked token must carry.
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// Seconds of clock difference forgiven on `exp` and `nbf`.
    #[serde(default = "default_jwt_leeway")]
    pub jwt_leeway_secs: u64,
}

fn default_jwt_leeway() -> u64 {
    30
}

fn default_oauth_username_field() -> String {
    "username".into()
}

fn default_oauth_timeout() -> u64 {
    3000
}

impl OauthConfig {
    /// How tokens are checked (`base` resolves `ca` and `jwt_keys`).
    ///
    /// # Errors
    /// A URL, CA or key file that cannot be used, or neither a URL nor keys.
    pub fn endpoint(&self, base: &Path) -> Result<tern_auth::oauth::TokenCheck, String> {
        let resolve = |c: &PathBuf| {
            if c.is_absolute() {
                c.clone()
            } else {
                base.join(c)
            }
        };
        let introspection = match &self.introspection_url {
            None => None,
            Some(url) => Some(tern_auth::oauth::Introspection::new(
                url,
                &self.client_id,
                &self.client_secret,
                &self.username_field,
                Duration::from_millis(self.timeout_ms.max(1)),
                self.ca
                    .as_ref()
                    .map(|c| crate::tls::connector_for(&resolve(c)))
                    .transpose()?,
            )?),
        };
        let jwt = self
            .jwt_keys
            .as_ref()
            .map(|k| tern_auth::oauth::JwtSettings {
                keys: resolve(k),
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                leeway_secs: self.jwt_leeway_secs,
                username_claim: self.username_field.clone(),
            });
        tern_auth::oauth::TokenCheck::new(introspection, jwt)
    }
}

fn default_system_min_uid() -> u32 {
    1000
}

fn default_checkpassword_timeout() -> u64 {
    5000
}

fn default_checkpassword_max_running() -> usize {
    16
}

fn default_mechanisms() -> Vec<String> {
    vec!["PLAIN".into(), "LOGIN".into()]
}

fn default_master_separator() -> String {
    "*".into()
}

/// `[[auth.sql]]`: one database of accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `postgres://user:pw@host/db`, `mysql://...` (MariaDB too) or
    /// `sqlite:/path/to/file`.
    pub url: String,
    /// The account query, with `:user`, `:local`, `:domain`, `:service`,
    /// `:remote` bound as parameters; columns `password` and any of
    /// `user`, `home`, `maildir`, `uid`, `gid`, `quota`, `mailhost`,
    /// `options`.
    pub password_query: String,
    /// Connections kept open at most.
    #[serde(default = "default_sql_pool")]
    pub pool_size: u32,
    /// How long a login waits for a connection and an answer, in
    /// milliseconds, before it is told to try again later.
    #[serde(default = "default_sql_timeout")]
    pub timeout_ms: u64,
    /// How long an answer (an account, or "no such account") is kept, in
    /// seconds; 0 (the default) keeps none.
    #[serde(default)]
    pub cache_secs: u64,
    /// Answers kept at most.
    #[serde(default = "default_sql_cache_size")]
    pub cache_size: usize,
    /// How result columns are read: `names` (the default: by the names
    /// above) or `courier` (by position, in courier-authlib's
    /// `MYSQL_SELECT_CLAUSE` order: username, cryptpw, clearpw, uid, gid,
    /// home, maildir, quota, fullname, options).
    #[serde(default)]
    pub columns: SqlColumns,
}

/// How SQL result columns are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlColumns {
    /// By name.
    #[default]
    Names,
    /// By position, as courier-authlib's select clauses return them.
    Courier,
}

/// `[[auth.ldap]]`: one directory of accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// Servers, tried in order until one answers: `ldap://host:389`.
    pub uris: Vec<String>,
    /// Where accounts are searched (the whole subtree).
    pub base: String,
    /// The search filter; `%u` (login), `%n` (local part), `%d` (domain)
    /// are replaced by their escaped values.
    pub filter: String,
    /// The identity searches bind as (absent: anonymous).
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Its password.
    #[serde(default)]
    pub bind_password: String,
    /// Account field -> attribute: `home`, `maildir`, `quota`, `uid`,
    /// `gid`, `mailhost`, `options`, `user`.
    #[serde(default)]
    pub attributes: std::collections::HashMap<String, String>,
    /// How long a login waits for a server, in milliseconds.
    #[serde(default = "default_sql_timeout")]
    pub timeout_ms: u64,
    /// StartTLS on `ldap://` URIs (`ldaps://` is TLS from the start).
    #[serde(default)]
    pub starttls: bool,
    /// CA certificates (PEM) that sign the directory servers' certificates
    /// (absent: the system's roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Most connections kept open in each pool (searches, binds).
    #[serde(default = "default_ldap_connections")]
    pub max_connections: usize,
    /// Seconds a search's answer (an account, or none) is reused; 0 keeps
    /// none. Passwords are bound at every login all the same.
    #[serde(default)]
    pub cache_secs: u64,
    /// Answers kept at most.
    #[serde(default = "default_sql_cache_size")]
    pub cache_size: usize,
}

fn default_ldap_connections() -> usize {
    8
}

impl LdapConfig {
    /// The backend's settings (`base` resolves `ca`).
    ///
    /// # Errors
    /// A CA file that cannot be read.
    pub fn settings(&self, base: &Path) -> Result<tern_auth::ldap::LdapSettings, String> {
        let tls = match &self.ca {
            None => None,
            Some(ca) => {
                let ca = if ca.is_absolute() {
                    ca.clone()
                } else {
                    base.join(ca)
                };
                crate::tls::install_provider();
                let roots = crate::tls::roots_from_pem(&ca)
                    .map_err(|e| format!("ca {}: {e}", ca.display()))?;
                Some(std::sync::Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                ))
            }
        };
        Ok(tern_auth::ldap::LdapSettings {
            uris: self.uris.clone(),
            base: self.base.clone(),
            filter: self.filter.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password: self.bind_password.clone(),
            attributes: self.attributes.clone(),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            starttls: self.starttls,
            tls,
            max_connections: self.max_connections,
            cache_ttl: Duration::from_secs(self.cache_secs),
            cache_size: self.cache_size,
        })
    }
}

fn default_sql_cache_size() -> usize {
    100_000
}

fn default_sql_pool() -> u32 {
    8
}
fn default_sql_timeout() -> u64 {
    3000
}

fn default_max_auth_failures() -> u32 {
    DEFAULT_MAX_AUTH_FAILURES
}
fn default_block_after() -> u32 {
    20
}
fn default_block_secs() -> u64 {
    300
}
fn default_failure_delay() -> u64 {
    DEFAULT_AUTH_FAILURE_DELAY_MS
}

/// `[mail]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// Maildir location when the user entry has no `mail=`; `{user}`,
    /// `{local}`, `{domain}` and `{home}` are replaced, `~/` is the home.
    #[serde(default = "default_maildir")]
    pub maildir: String,
    /// Folders whose old messages are removed at login, as Courier's
    /// IMAP_EMPTYTRASH: `Trash:7,Junk:30` (folder:days).
    #[serde(default)]
    pub empty_trash: Option<String>,
    /// How folder directories spell non-ASCII names: `auto` (as the
    /// Maildir already does), `utf8` (Courier-IMAP 5 and later) or `mutf7`
    /// (Courier-IMAP 4, Dovecot). Both are read whatever is set.
    #[serde(default)]
    pub folder_names: FolderNames,
    /// The account tern runs as once its ports are bound, when started as
    /// root: a name from /etc/passwd or `uid:gid`.
    #[serde(default)]
    pub user: Option<String>,
    /// Serve mail as root (what tern creates then takes the owner of the
    /// directory it is created in). Without it, or `user`, root refuses.
    #[serde(default)]
    pub allow_root: bool,
    /// The umask, in octal: `077` makes 0700 folders and 0600 files, as
    /// Courier and Dovecot do.
    #[serde(default = "default_umask")]
    pub umask: String,
    /// Which accounts' storage work runs with their own uid and gid when
    /// tern runs as root (see `tern_server::creds`).
    #[serde(default)]
    pub account_uids: AccountUids,
    /// Serve a Maildir root that is a symbolic link (`~/Maildir ->
    /// /srv/mail/alice`). Off: a user who can write their home directory
    /// could point it at another account's Maildir. Folders and `cur/`,
    /// `new/`, `tmp/` are never followed as links, whatever this says.
    #[serde(default)]
    pub linked_maildir: bool,
}

/// `mail.account_uids`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccountUids {
    /// System accounts (`auth.system_users`, `[auth.pam]`).
    #[default]
    System,
    /// Every account whose entry gives a uid and a gid (other than 0).
    All,
    /// None: everything runs as root, and what tern creates takes the
    /// owner of its directory.
    None,
}

fn default_umask() -> String {
    "077".to_owned()
}

impl MailConfig {
    /// The umask's bits (a validated configuration has a good one).
    pub fn umask(&self) -> u32 {
        u32::from_str_radix(&self.umask, 8).unwrap_or(0o077) & 0o777
    }
}

/// `mail.folder_names`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FolderNames {
    /// As the Maildir already does; UTF-8 where nothing tells.
    #[default]
    Auto,
    /// UTF-8, as Courier-IMAP 5 and 6.
    Utf8,
    /// Modified UTF-7, as Courier-IMAP 4 and Dovecot.
    Mutf7,
}

impl FolderNames {
    /// The storage crate's setting.
    pub fn setting(self) -> tern_maildir::name_form::NameSetting {
        use tern_maildir::name_form::NameSetting;
        match self {
            FolderNames::Auto => NameSetting::Auto,
            FolderNames::Utf8 => NameSetting::Utf8,
            FolderNames::Mutf7 => NameSetting::Mutf7,
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            maildir: default_maildir(),
            empty_trash: None,
            folder_names: FolderNames::Auto,
            user: None,
            allow_root: false,
            umask: default_umask(),
            account_uids: AccountUids::default(),
            linked_maildir: false,
        }
    }
}

/// Parses `Trash:7,Junk:30` into (folder, days) pairs.
pub fn parse_empty_trash(spec: &str) -> Result<Vec<(String, u32)>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, days) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("{part:?}: expected FOLDER:DAYS"))?;
            let days: u32 = days
                .parse()
                .map_err(|_| format!("{part:?}: days must be a whole number"))?;
            tern_maildir::FolderName::new(name.strip_prefix("INBOX.").unwrap_or(name))
                .map_err(|e| format!("{part:?}: {e}"))?;
            Ok((name.strip_prefix("INBOX.").unwrap_or(name).to_owned(), days))
        })
        .collect()
}

fn default_maildir() -> String {
    "{home}/Maildir".to_owned()
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest command (line plus small literals).
    pub max_line_length: usize,
    /// Largest message accepted by APPEND.
    pub max_message_size: u64,
    /// Largest refused LITERAL+ literal that is read and thrown away; a
    /// larger one closes the connection with BYE.
    pub max_refused_literal: u64,
    /// Bytes of messages (by their sizes) one FETCH job reads and holds
    /// before its answer goes out; a session has at most two jobs at once,
    /// so this bounds what a large FETCH holds (one message larger than it
    /// is read alone).
    pub fetch_job_bytes: u64,
    /// A whole message (BODY[], RFC822, and partials of them) of at least
    /// this many bytes is sent from its file in pieces, never held whole.
    pub stream_literal_bytes: u64,
    /// Keywords one mailbox may hold; a STORE or APPEND that would add
    /// more gets NO [LIMIT].
    pub max_keywords: usize,
    /// Keys (of any nesting) one SEARCH, SORT or THREAD may hold; more get
    /// BAD [LIMIT].
    pub max_search_keys: usize,
    /// Threads of the pool every storage call runs on.
    pub blocking_threads: usize,
    /// Storage calls one account may have on that pool at once; more wait
    /// (on no thread), so one account's stuck storage cannot take every
    /// thread.
    pub max_storage_jobs_per_account: usize,
    /// Seconds a session waits for a storage call before it answers NO
    /// [UNAVAILABLE] (0: no limit).
    pub storage_timeout_secs: u64,
    /// Idle timeout before login, seconds.
    pub preauth_timeout_secs: u64,
    /// Idle timeout after login, seconds.
    pub auth_timeout_secs: u64,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections per IP at once.
    pub max_connections_per_ip: usize,
    /// Logged-in sessions of one account from one address, per protocol.
    pub max_connections_per_user_ip: usize,
    /// Logged-in sessions of one account, all addresses and protocols.
    pub max_connections_per_user: usize,
    /// Rescan interval of idled folders where inotify cannot be used,
    /// milliseconds.
    pub poll_interval_ms: u64,
    /// Safety-net rescan of idled folders while inotify works (changes on
    /// NFS by other hosts), seconds.
    pub idle_check_interval_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_refused_literal: DEFAULT_MAX_REFUSED_LITERAL,
            fetch_job_bytes: DEFAULT_FETCH_JOB_BYTES,
            stream_literal_bytes: DEFAULT_STREAM_LITERAL_BYTES,
            max_keywords: DEFAULT_MAX_KEYWORDS,
            max_search_keys: DEFAULT_MAX_SEARCH_KEYS,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            max_storage_jobs_per_account: DEFAULT_MAX_STORAGE_JOBS_PER_ACCOUNT,
            storage_timeout_secs: DEFAULT_STORAGE_TIMEOUT_SECS,
            preauth_timeout_secs: DEFAULT_PREAUTH_TIMEOUT_SECS,
            auth_timeout_secs: DEFAULT_AUTH_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections_per_user_ip: DEFAULT_MAX_CONNECTIONS_PER_USER_IP,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            idle_check_interval_secs: DEFAULT_IDLE_CHECK_INTERVAL_SECS,
        }
    }
}

impl Limits {
    /// The framer's limits for an IMAP session.
    pub fn framer(&self) -> tern_imap_proto::framer::FramerLimits {
        tern_imap_proto::framer::FramerLimits {
            max_line: self.max_line_length,
            max_command: self.max_line_length,
            max_discard: self.max_refused_literal,
        }
    }

    /// Timeout before login.
    pub fn preauth_timeout(&self) -> Duration {
        Duration::from_secs(self.preauth_timeout_secs)
    }
    /// Timeout after login.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout_secs)
    }
    /// Rescan interval without inotify.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
    /// Rescan interval with inotify.
    pub fn idle_check_interval(&self) -> Duration {
        Duration::from_secs(self.idle_check_interval_secs.max(1))
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    #[serde(default)]
    pub level: Option<String>,
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key and problem.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Self::parse(&text, path, &base)
    }

    /// Parses config text; `base` is the directory relative paths start from.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.base_dir = base.to_owned();
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        let listeners = [
            ("imap.listen", &self.imap.listen, false),
            ("imap.tls_listen", &self.imap.tls_listen, true),
            ("pop3.listen", &self.pop3.listen, false),
            ("pop3.tls_listen", &self.pop3.tls_listen, true),
            ("imap.haproxy_listen", &self.imap.haproxy_listen, false),
            (
                "imap.haproxy_tls_listen",
                &self.imap.haproxy_tls_listen,
                true,
            ),
            ("pop3.haproxy_listen", &self.pop3.haproxy_listen, false),
            (
                "pop3.haproxy_tls_listen",
                &self.pop3.haproxy_tls_listen,
                true,
            ),
        ];
        let networks = self
            .haproxy
            .networks()
            .map_err(|e| invalid("haproxy.trusted_networks", e))?;
        let behind_balancer = [
            &self.imap.haproxy_listen,
            &self.imap.haproxy_tls_listen,
            &self.pop3.haproxy_listen,
            &self.pop3.haproxy_tls_listen,
        ]
        .iter()
        .any(|l| !l.is_empty());
        if behind_balancer && networks.is_empty() {
            return Err(invalid(
                "haproxy.trusted_networks",
                "a haproxy_listen listener needs the balancers' addresses".into(),
            ));
        }
        for (key, addrs, tls) in listeners {
            for a in addrs {
                a.parse::<SocketAddr>()
                    .map_err(|e| invalid(key, format!("{a:?}: {e}")))?;
            }
            if tls && !addrs.is_empty() && self.tls.is_none() {
                return Err(invalid(
                    key,
                    "needs a [tls] section with cert and key".into(),
                ));
            }
        }
        crate::sasl::SaslSettings::parse_names(&self.auth.mechanisms)
            .map_err(|e| invalid("auth.mechanisms", e))?;
        self.proxy
            .settings(&self.base_dir)
            .map_err(|e| invalid("proxy", e))?;
        if (self.proxy.control_listen.is_some() || !self.proxy.peers.is_empty())
            && self
                .proxy
                .control_secret
                .as_deref()
                .is_none_or(|s| s.len() < 16)
        {
            return Err(invalid(
                "proxy.control_secret",
                "control_listen and peers need a shared secret of at least 16 characters".into(),
            ));
        }
        if self.auth.system_users && (self.mail.user.is_some() || !self.mail.allow_root) {
            return Err(invalid(
                "auth.system_users",
                "reads /etc/shadow, which only root can read: it needs mail.allow_root = true and no mail.user"
                    .into(),
            ));
        }
        if self.auth.pam.is_some() && (self.mail.user.is_some() || !self.mail.allow_root) {
            return Err(invalid(
                "auth.pam",
                "serves system accounts, each Maildir its owner's, and pam_unix checks other users' passwords only as root: it needs mail.allow_root = true and no mail.user"
                    .into(),
            ));
        }
        for n in &self.auth.login_trusted_networks {
            crate::haproxy::Network::parse(n)
                .map_err(|e| invalid("auth.login_trusted_networks", e))?;
        }
        if let Some(o) = &self.auth.oauth {
            o.endpoint(&self.base_dir)
                .map_err(|e| invalid("auth.oauth", e))?;
        }
        if self.auth.master_separator.is_empty() {
            return Err(invalid("auth.master_separator", "must not be empty".into()));
        }
        if let Some(f) = &self.pop3.uidl_format {
            if let Err(e) = tern_maildir::uidl_format::UidlFormat::parse(f) {
                return Err(invalid("pop3.uidl_format", format!("{f:?}: {e}")));
            }
        }
        if let Some(e) = &self.pop3.expire {
            if !e.eq_ignore_ascii_case("never") && e.parse::<u32>().is_err() {
                return Err(invalid(
                    "pop3.expire",
                    format!("{e:?}: a number of days or \"NEVER\""),
                ));
            }
        }
        if self.imap.listen.is_empty()
            && self.imap.tls_listen.is_empty()
            && self.pop3.listen.is_empty()
            && self.pop3.tls_listen.is_empty()
            && !behind_balancer
        {
            return Err(invalid("imap.listen", "no listener configured".into()));
        }
        if let Some(q) = &self.quota.default {
            if tern_maildir::quota::QuotaSpec::parse(q).is_none() {
                return Err(invalid(
                    "quota.default",
                    format!("{q:?}: expected e.g. 1000000000S,50000C"),
                ));
            }
        }
        crate::imap::namespace::Namespace::new(&self.imap.namespace_prefix, self.imap.separator)
            .map_err(|e| invalid("imap.namespace_prefix", e))?;
        if u32::from_str_radix(&self.mail.umask, 8).map_or(true, |m| m > 0o777) {
            return Err(invalid(
                "mail.umask",
                format!("{:?}: expected octal, e.g. \"077\"", self.mail.umask),
            ));
        }
        if let Some(t) = &self.mail.empty_trash {
            parse_empty_trash(t).map_err(|p| invalid("mail.empty_trash", p))?;
        }
        if self.limits.max_line_length < 1024 {
            return Err(invalid(
                "limits.max_line_length",
                "must be at least 1024".into(),
            ));
        }
        if self.limits.max_message_size == 0 {
            return Err(invalid("limits.max_message_size", "must be above 0".into()));
        }
        if !self.mail.maildir.contains('{') && !self.mail.maildir.contains('~') {
            return Err(invalid(
                "mail.maildir",
                "must contain {user}, {local}, {domain}, {home} or ~ so that users get different Maildirs".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            for (key, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !self.resolve(p).is_file() {
                    return Err(invalid(
                        key,
                        format!("{} is not a readable file", self.resolve(p).display()),
                    ));
                }
            }
        }
        if let Some(pf) = &self.auth.passwd_file {
            if !self.resolve(pf).is_file() {
                return Err(invalid(
                    "auth.passwd_file",
                    format!("{} is not a readable file", self.resolve(pf).display()),
                ));
            }
        }
        if self.auth.passwd_file.is_none()
            && self.auth.userdb.is_none()
            && self.auth.sql.is_empty()
            && self.auth.ldap.is_empty()
            && self.auth.checkpassword.is_none()
            && !self.auth.system_users
            && self.auth.pam.is_none()
        {
            return Err(invalid(
                "auth",
                "no account backend: set passwd_file, userdb, system_users or checkpassword, or add [auth.pam], an [[auth.sql]] or [[auth.ldap]]".into(),
            ));
        }
        for (n, l) in self.auth.ldap.iter().enumerate() {
            l.settings(&self.base_dir)
                .and_then(|st| tern_auth::ldap::LdapBackend::new(st, n))
                .map_err(|e| invalid("auth.ldap", format!("directory {}: {e}", n + 1)))?;
        }
        for (n, q) in self.auth.sql.iter().enumerate() {
            let dialect = tern_auth::sql::Dialect::of(&q.url)
                .map_err(|e| invalid("auth.sql.url", format!("database {}: {e}", n + 1)))?;
            tern_auth::sql::prepare(&q.password_query, dialect).map_err(|e| {
                invalid(
                    "auth.sql.password_query",
                    format!("database {}: {e}", n + 1),
                )
            })?;
        }
        Ok(())
    }

    /// Resolves a path from the config against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users"), "a:{PLAIN}b\n").unwrap();
        let err = Config::parse(
            "[imap]\nlisten=[\"127.0.0.1:0\"]\nbogus=1\n[auth]\npasswd_file=\"users\"\n",
            Path::new("x.toml"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bogus"), "{err}");
        let ok = Config::parse(
            "[imap]\nlisten=[\"127.0.0.1:0\"]\n[auth]\npasswd_file=\"users\"\n",
            Path::new("x.toml"),
            dir.path(),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let bad = Config::parse(
            "[imap]\nlisten=[\"nope\"]\n[auth]\npasswd_file=\"users\"\n",
            Path::new("x.toml"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("imap.listen"), "{bad}");
    }
}
