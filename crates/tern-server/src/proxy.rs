//! The login proxy, IMAP and POP3: after a login on this server, an account
//! whose `mailhost` names another server is served there. This server logs
//! in to that backend for the client (with the client's own password when
//! the mechanism revealed it, else as a master user), hands the client the
//! backend's capabilities, and then relays bytes both ways without parsing
//! them.
//!
//! `mailhost` is `host[:port]`, or several, comma-separated, tried in
//! order: a backend that refuses or does not answer within the connect
//! timeout is marked down for `down_secs` and the next one is tried, so a
//! login never hangs on a dead server. A `mailhost` that names this server
//! (its `hostname`, or one of `proxy.self_names`) is served here.
//!
//! The client's address reaches the backend in a PROXY protocol v2 header
//! (`proxy.send_proxy_header`, for a backend `haproxy_listen` listener that
//! trusts this server), so the backend's limits and logs see the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::imap::AsyncStream;

mod splice;

/// What the proxy is configured with.
#[derive(Clone)]
pub struct ProxySettings {
    /// Names of this server besides `hostname` (`mail1`, `10.0.0.5:143`):
    /// a `mailhost` naming one of them is served here.
    pub self_names: Vec<String>,
    /// The IMAP port of a backend `mailhost` that names none.
    pub imap_port: u16,
    /// The POP3 port of a backend; a `mailhost` port is an IMAP one.
    pub pop3_port: u16,
    /// The LMTP port of a backend, for deliveries relayed to it.
    pub lmtp_port: u16,
    /// How long a relay connection to a backend's LMTP is kept for the
    /// next message (zero: not kept).
    pub lmtp_keep: Duration,
    /// How long connecting and logging in to a backend may take.
    pub connect_timeout: Duration,
    /// How long a backend that failed is skipped.
    pub down_for: Duration,
    /// Send the client's address to the backend in a PROXY v2 header.
    pub send_proxy_header: bool,
    /// The master user (and password) for logins whose password the proxy
    /// never saw (SCRAM, CRAM-MD5, EXTERNAL).
    pub master: Option<(String, String)>,
    /// TLS to the backends.
    pub backend_tls: BackendTls,
    /// Verifies the backends' certificates (from `proxy.backend_ca`).
    pub tls_connector: Option<tokio_rustls::TlsConnector>,
    /// Where a backend may be reached without TLS.
    pub cleartext_networks: Vec<crate::haproxy::Network>,
    /// Pools of backends, by name: `mailhost = "pool:NAME"` (or
    /// `default_pool` for accounts without a `mailhost`) picks one by a
    /// consistent hash of the user name.
    pub pools: HashMap<String, Pool>,
    /// The pool of accounts without a `mailhost`.
    pub default_pool: Option<String>,
    /// Tell IMAP backends the client's address in ID before the login
    /// (`x-originating-ip`, as Dovecot's proxy does), for backends that
    /// take it from a trusted proxy (tern's `auth.login_trusted_networks`,
    /// Dovecot's `login_trusted_networks`).
    pub send_id: bool,
    /// How often backends marked down are checked (`None`: never, they
    /// come back after `down_for`).
    pub check_every: Option<Duration>,
    /// The account a health check logs in as (else it only waits for the
    /// greeting).
    pub check_login: Option<(String, String)>,
    /// This server's IMAP listeners (cleartext, TLS, PROXY protocol): a
    /// `mailhost` that is an address one of them accepts names this
    /// server, so one configuration can list every host of a site by
    /// address.
    pub own_listeners: Vec<SocketAddr>,
}

/// Backends sharing the accounts of a pool, with weights.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// `host[:port]` and weight (at least 1).
    pub servers: Vec<(String, u32)>,
}

/// A 64-bit FNV-1a hash with a final mix: the same on every proxy and
/// every run (unlike std's randomly keyed hasher), so all proxies send a
/// user to the same backend.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser spreads the bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Pool {
    /// The pool's servers in the order `user` tries them: weighted
    /// rendezvous hashing (each server scores `-weight / ln(u)` for a
    /// uniform `u` from the hash of user and server; highest first). A
    /// user stays on one server while it is up; a server that leaves moves
    /// only its own users, each to its next choice; weights share users
    /// in proportion.
    pub fn order(&self, user: &str) -> Vec<String> {
        let mut scored: Vec<(f64, &str)> = self
            .servers
            .iter()
            .map(|(host, weight)| {
                let h = stable_hash(&[user.as_bytes(), host.as_bytes()]);
                // u in (0, 1): never 0 or 1.
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-f64::from((*weight).max(1)) / u.ln(), host.as_str())
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, h)| h.to_owned()).collect()
    }
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("self_names", &self.self_names)
            .field("backend_tls", &self.backend_tls)
            .field("send_proxy_header", &self.send_proxy_header)
            .finish_non_exhaustive()
    }
}

/// How the proxy reaches its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTls {
    /// In the clear (only to `cleartext_networks`).
    #[default]
    None,
    /// STARTTLS (IMAP) or STLS (POP3) before the login.
    Starttls,
    /// TLS from the start (the backends' implicit-TLS ports).
    Tls,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            self_names: Vec::new(),
            imap_port: 143,
            pop3_port: 110,
            lmtp_port: 24,
            lmtp_keep: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            down_for: Duration::from_secs(30),
            send_proxy_header: false,
            master: None,
            backend_tls: BackendTls::None,
            tls_connector: None,
            cleartext_networks: vec![
                crate::haproxy::Network::loopback_v4(),
                crate::haproxy::Network::loopback_v6(),
            ],
            pools: HashMap::new(),
            default_pool: None,
            send_id: true,
            check_every: None,
            check_login: None,
            own_listeners: Vec::new(),
        }
    }
}

impl ProxySettings {
    /// Whether a `mailhost` entry (`host[:port]`) names this server: its
    /// `hostname` or one of `self_names`, or an IP address (with the
    /// default IMAP port when none is given) that one of this server's
    /// IMAP listeners accepts: the listener's own address, or, for a
    /// listener on the unspecified address, any address of this machine.
    pub fn names_this_server(&self, host: &str, hostname: &str) -> bool {
        if host.eq_ignore_ascii_case(hostname)
            || self.self_names.iter().any(|n| n.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let Some(addr) = ip_host(host, self.imap_port) else {
            return false;
        };
        self.own_listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified()
                        && (l.is_ipv6() || addr.is_ipv4())
                        && is_local_address(addr.ip())))
        })
    }
}

/// `host[:port]` as a socket address when the host is an IP address
/// (`10.0.0.5`, `10.0.0.5:143`, `[2001:db8::5]:143`, `2001:db8::5`).
fn ip_host(host: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ip.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Whether `ip` is an address of this machine: binding a socket to it
/// succeeds only then (the kernel answers EADDRNOTAVAIL for any other),
/// which needs no interface list and sees addresses added since start.
fn is_local_address(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Backends that failed, and when.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<HashMap<String, Instant>>,
}

impl Health {
    /// The time one attempt may take to show it is alive (connection,
    /// greeting) of the `left` a login or delivery has, with `rest` the
    /// candidates after it: an equal share among it and those of `rest`
    /// not marked down. A host that vanished (its packets dropped, no
    /// refusal) would otherwise take the whole budget and leave none for
    /// the next candidate, so the failover the list is for would never
    /// happen within one login or delivery.
    pub fn share<'a>(
        &self,
        left: Duration,
        rest: impl Iterator<Item = &'a String>,
        down_for: Duration,
    ) -> Duration {
        let untried = 1 + rest.filter(|h| !self.is_down(h, down_for)).count();
        left / u32::try_from(untried).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_down(&self, host: &str, down_for: Duration) -> bool {
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match d.get(host) {
            Some(t) if t.elapsed() < down_for => true,
            Some(_) => {
                d.remove(host);
                false
            }
            None => false,
        }
    }

    /// The backends marked down now.
    fn down_now(&self) -> Vec<String> {
        let d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        d.keys().cloned().collect()
    }

    fn mark_up(&self, host: &str) {
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        d.remove(host);
    }

    pub(crate) fn mark_down(&self, host: &str) {
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if d.len() > 10_000 {
            d.clear();
        }
        d.insert(host.to_owned(), Instant::now());
    }
}

/// Where a login that just succeeded goes: `None` to be served here, else
/// the backends to relay it to. A user being moved waits out the move's
/// hold first and then takes the route again (the move may have ended or
/// changed meanwhile), for IMAP and POP3 alike. `known`: the route the
/// login already took (IMAP's login step needs it to know whether to make
/// a Maildir here), else it is taken now.
pub async fn login_route(
    svc: &crate::imap::Services,
    user: &str,
    mailhost: Option<&str>,
    known: Option<Option<Vec<String>>>,
) -> Option<Vec<String>> {
    let route = || route_of(user, mailhost, &svc.hostname, &svc.proxy, &svc.relayed);
    let hosts = known.unwrap_or_else(route)?;
    if svc.relayed.hold(user).await {
        route()
    } else {
        Some(hosts)
    }
}

/// [`route_for`], unless `tern proxy move` moved the user: then the host
/// it was moved to (or here, when that names this server).
pub fn route_of(
    user: &str,
    mailhost: Option<&str>,
    hostname: &str,
    settings: &ProxySettings,
    relayed: &Relayed,
) -> Option<Vec<String>> {
    match relayed.moved(user) {
        Some((host, _)) => route(&host, hostname, settings),
        None => route_for(user, mailhost, hostname, settings),
    }
}

/// The backends an account is served by, in the order to try them, or
/// `None` when it is served here: its `mailhost` (hosts, or `pool:NAME`),
/// else the default pool; a list that names this server
/// ([`ProxySettings::names_this_server`]) is served here.
pub fn route_for(
    user: &str,
    mailhost: Option<&str>,
    hostname: &str,
    settings: &ProxySettings,
) -> Option<Vec<String>> {
    let pool = match mailhost {
        Some(m) => m.trim().strip_prefix("pool:").map(str::to_owned),
        None => settings.default_pool.clone(),
    };
    let hosts = match (pool, mailhost) {
        (Some(name), _) => match settings.pools.get(&name) {
            Some(p) => p.order(user),
            None => {
                tracing::warn!(user, pool = %name, "mailhost names no configured pool: served here");
                return None;
            }
        },
        (None, Some(m)) => return route(m, hostname, settings),
        (None, None) => return None,
    };
    let is_self = |h: &str| settings.names_this_server(h, hostname);
    // A pool this server belongs to: served here when it is the user's
    // first choice, else relayed.
    match hosts.first() {
        Some(first) if !is_self(first) => Some(hosts.into_iter().filter(|h| !is_self(h)).collect()),
        _ => None,
    }
}

/// The backends a `mailhost` names, in order, or `None` when it names this
/// server ([`ProxySettings::names_this_server`]).
pub fn route(mailhost: &str, hostname: &str, settings: &ProxySettings) -> Option<Vec<String>> {
    let hosts: Vec<String> = mailhost
        .split([',', ' '])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let is_self = |h: &str| settings.names_this_server(h, hostname);
    if hosts.is_empty() || hosts.iter().any(|h| is_self(h)) {
        return None;
    }
    Some(hosts)
}

/// How the proxy logs in for the client.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The client's own password (LOGIN, PLAIN, LOGIN mechanism).
    Password(String, Vec<u8>),
    /// As the master user, for this user.
    Master(String),
    /// No login: a health check that stops after the greeting (and the
    /// STARTTLS the leg needs).
    GreetingOnly,
}

/// Why no backend took the session.
#[derive(Debug)]
pub enum ProxyError {
    /// No backend answered (all down, refused or too slow).
    Unavailable(String),
    /// A backend answered the login with NO: its text.
    Refused(String),
    /// A backend sent the user elsewhere (RFC 2221 `NO [REFERRAL
    /// imap://user@HOST/]`): the host.
    Referral(String),
    /// This server could not try (out of file descriptors).
    Local(String),
}

/// The host of a login referral (`[REFERRAL imap://user;AUTH=*@HOST:PORT/]`).
fn referral_host(answer: &str) -> Option<String> {
    let url = answer.split_once("[REFERRAL ")?.1.split_once(']')?.0;
    let rest = url.strip_prefix("imap://")?;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
    .then(|| host.to_owned())
}

/// Referrals followed at most for one login (a loop of backends sending a
/// user to each other ends here).
const MAX_REFERRALS: usize = 3;

/// A backend session logged in: its stream and its capabilities.
pub struct Backend {
    /// The connection, with anything it sent after the login's answer.
    pub stream: BufReader<Box<dyn AsyncStream>>,
    /// The capabilities it reported after login.
    pub capabilities: String,
    /// Which backend.
    pub host: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// An IMAP string for a login argument: quoted when it can be, a literal
/// otherwise (then the caller waits for the continuation).
fn astring(s: &[u8]) -> Result<String, Vec<u8>> {
    if s.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        Ok(format!("\"{}\"", String::from_utf8_lossy(s)))
    } else {
        Err(s.to_vec())
    }
}

/// The PROXY protocol v2 header for a TCP connection from `client`;
/// `client_tls`: the client's leg is TLS (said in a `PP2_TYPE_SSL` TLV, so
/// the backend takes the connection as protected, as the proxy did).
fn proxy_header(client: SocketAddr, local: SocketAddr, client_tls: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V4(l)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&l.ip().octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&l.port().to_be_bytes());
        }
        (c, l) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
                SocketAddr::V6(v6) => *v6.ip(),
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(c).octets());
            h.extend_from_slice(&v6(l).octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&l.port().to_be_bytes());
        }
    }
    if client_tls {
        // PP2_TYPE_SSL, length 5: client flags (PP2_CLIENT_SSL), verify 0.
        h.extend_from_slice(&[0x20, 0, 5, 0x01, 0, 0, 0, 0]);
        let len = u16::from_be_bytes([h[14], h[15]]) + 8;
        h[14..16].copy_from_slice(&len.to_be_bytes());
    }
    h
}

/// Reads lines up to the one tagged `tag`; that line, and the
/// capabilities of a `[CAPABILITY ...]` code or an untagged CAPABILITY.
async fn until_tagged(
    r: &mut BufReader<Box<dyn AsyncStream>>,
    tag: &str,
) -> Result<(String, Option<String>), String> {
    let mut caps = None;
    for _ in 0..1000 {
        let mut line = String::new();
        let n = (&mut *r)
            .take(64 * 1024)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the backend closed the connection".into());
        }
        let l = line.trim_end();
        if let Some(c) = l.strip_prefix("* CAPABILITY ") {
            caps = Some(c.to_owned());
        }
        if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            if let Some(c) = rest
                .split_once("[CAPABILITY ")
                .and_then(|(_, c)| c.split_once(']'))
            {
                caps = Some(c.0.to_owned());
            }
            return Ok((rest.to_owned(), caps));
        }
    }
    Err("the backend sent too many lines".into())
}

/// A session id for the backend's logs: random, so it says nothing.
fn session_id() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// One POP3 answer line of a backend (at most 4 KiB).
async fn pop3_answer(r: &mut BufReader<Box<dyn AsyncStream>>) -> std::io::Result<String> {
    let mut l = String::new();
    (&mut *r).take(4096).read_line(&mut l).await?;
    Ok(l)
}

async fn send(r: &mut BufReader<Box<dyn AsyncStream>>, bytes: &[u8]) -> std::io::Result<()> {
    r.get_mut().write_all(bytes).await
}

/// The protocol of a proxied session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// IMAP.
    Imap,
    /// POP3.
    Pop3,
}

/// `host[:port]` as the name and the port, if one is given (`[::1]:143`
/// is `[::1]` and 143; a bare IPv6 address has none).
pub(crate) fn split_port(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(':') => match p.parse::<u16>() {
            Ok(port) => (n, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

impl ProxySettings {
    /// Whether a backend at `ip` may be reached in the clear.
    pub(crate) fn cleartext_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.cleartext_networks.iter().any(|n| n.contains(ip))
    }
}

/// Where `host` is for `leg`: a port in a `mailhost` is the IMAP port; a
/// POP3 session goes to the same host's POP3 port.
fn address(host: &str, settings: &ProxySettings, leg: Leg) -> String {
    let (name, port) = split_port(host);
    match leg {
        Leg::Imap => format!("{name}:{}", port.unwrap_or(settings.imap_port)),
        Leg::Pop3 => format!("{name}:{}", settings.pop3_port),
    }
}

/// Logs in to a POP3 backend after its greeting: USER/PASS with the
/// client's password, AUTH PLAIN as the master user otherwise.
async fn pop3_login(
    r: &mut BufReader<Box<dyn AsyncStream>>,
    settings: &ProxySettings,
    creds: &Credentials,
    unavailable: impl Fn(String) -> ProxyError,
) -> Result<(), ProxyError> {
    let unusable = |l: &str| l.is_empty() || l.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    match creds {
        Credentials::Password(user, pass) => {
            let pass = String::from_utf8_lossy(pass);
            if unusable(user) || unusable(&pass) || user.contains(' ') {
                return Err(ProxyError::Refused(
                    "a name or password POP3 cannot carry".into(),
                ));
            }
            lines.push(format!("USER {user}\r\n").into_bytes());
            lines.push(format!("PASS {pass}\r\n").into_bytes());
        }
        Credentials::GreetingOnly => return Ok(()),
        Credentials::Master(user) => {
            let Some((master, mpw)) = &settings.master else {
                return Err(ProxyError::Refused(
                    "no proxy.master_user to log in with".into(),
                ));
            };
            let m = format!("{user}\0{master}\0{mpw}");
            lines.push(
                format!(
                    "AUTH PLAIN {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(m)
                )
                .into_bytes(),
            );
        }
    }
    for l in lines {
        send(r, &l).await.map_err(|e| unavailable(e.to_string()))?;
        let answer = pop3_answer(r)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if answer.starts_with("+OK") {
            continue;
        }
        if answer.is_empty() || answer.contains("[SYS/TEMP]") || answer.contains("[IN-USE]") {
            return Err(unavailable(answer.trim_end().to_owned()));
        }
        return Err(ProxyError::Refused(answer.trim_end().to_owned()));
    }
    Ok(())
}

/// Connects to `host` and logs in as `user`. The connection, its TLS
/// handshake and the greeting must come within `alive_within` (a host that
/// vanished answers none of them); the login itself may take the rest of
/// the caller's time (a backend that greeted is alive, and a slow login
/// there is no reason to send the user to another server).
async fn login_at(
    host: &str,
    settings: &ProxySettings,
    client: Option<SocketAddr>,
    client_tls: bool,
    creds: &Credentials,
    leg: Leg,
    alive_within: Duration,
) -> Result<Backend, ProxyError> {
    let addr = address(host, settings, leg);
    let unavailable = |why: String| ProxyError::Unavailable(format!("{host}: {why}"));
    let alive_by = tokio::time::Instant::now() + alive_within;
    let late = || unavailable("did not answer in time".to_owned());
    let mut tcp = tokio::time::timeout_at(alive_by, TcpStream::connect(&addr))
        .await
        .map_err(|_| late())?
        .map_err(|e| {
            // Out of descriptors here is this server's trouble, not the
            // backend's: it must not be marked down for it.
            if matches!(e.raw_os_error(), Some(23 | 24)) {
                ProxyError::Local(e.to_string())
            } else {
                unavailable(e.to_string())
            }
        })?;
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(|e| unavailable(e.to_string()))?;
    if settings.backend_tls == BackendTls::None && !settings.cleartext_allowed(peer.ip()) {
        return Err(unavailable(format!(
            "{peer} is not in proxy.cleartext_networks and proxy.backend_tls is none"
        )));
    }
    if settings.send_proxy_header {
        if let (Some(c), Ok(l)) = (client, tcp.local_addr()) {
            tcp.write_all(&proxy_header(c, l, client_tls))
                .await
                .map_err(|e| unavailable(e.to_string()))?;
        }
    }
    let name = addr.rsplit_once(':').map_or(addr.as_str(), |(n, _)| n);
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let start_tls = |tcp: Box<dyn AsyncStream>| {
        let connector = settings.tls_connector.clone();
        let name = name.clone();
        async move {
            let Some(c) = connector else {
                return Err("proxy.backend_tls needs proxy.backend_ca".to_owned());
            };
            let server = rustls_pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
            c.connect(server, tcp)
                .await
                .map(|t| Box::new(t) as Box<dyn AsyncStream>)
                .map_err(|e| format!("TLS: {e}"))
        }
    };
    let stream: Box<dyn AsyncStream> = match settings.backend_tls {
        BackendTls::Tls => tokio::time::timeout_at(alive_by, start_tls(Box::new(tcp)))
            .await
            .map_err(|_| late())?
            .map_err(unavailable)?,
        _ => Box::new(tcp),
    };
    let mut r = BufReader::new(stream);
    let mut greeting = String::new();
    tokio::time::timeout_at(alive_by, (&mut r).take(64 * 1024).read_line(&mut greeting))
        .await
        .map_err(|_| late())?
        .map_err(|e| unavailable(e.to_string()))?;
    let greeted = match leg {
        Leg::Imap => greeting.starts_with("* OK"),
        Leg::Pop3 => greeting.starts_with("+OK"),
    };
    if !greeted {
        return Err(unavailable(format!("greeting {:?}", greeting.trim_end())));
    }
    if settings.backend_tls == BackendTls::Starttls {
        let (cmd, ok): (&[u8], fn(&str) -> bool) = match leg {
            Leg::Imap => (b"P0 STARTTLS\r\n", |l| l.starts_with("P0 OK")),
            Leg::Pop3 => (b"STLS\r\n", |l| l.starts_with("+OK")),
        };
        send(&mut r, cmd)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let answer = match leg {
            Leg::Imap => until_tagged(&mut r, "P0")
                .await
                .map(|(a, _)| format!("P0 {a}"))
                .map_err(unavailable)?,
            Leg::Pop3 => pop3_answer(&mut r)
                .await
                .map_err(|e| unavailable(e.to_string()))?,
        };
        if !ok(&answer) || !r.buffer().is_empty() {
            return Err(unavailable(format!(
                "STARTTLS refused: {}",
                answer.trim_end()
            )));
        }
        let plain = r.into_inner();
        r = BufReader::new(start_tls(plain).await.map_err(unavailable)?);
    }
    let without_capabilities = |stream| Backend {
        stream,
        capabilities: String::new(),
        host: host.to_owned(),
    };
    if matches!(creds, Credentials::GreetingOnly) {
        return Ok(without_capabilities(r));
    }
    if leg == Leg::Pop3 {
        if settings.send_id {
            if let Some(c) = client {
                // Dovecot's XCLIENT: whose connection this is, for a backend
                // that trusts this server (`login_trusted_networks`).
                // Whatever it answers (-ERR from one without it) is fine.
                // TERN-ROUTE: this server chose the backend; a tern
                // backend serves the login itself, never relaying it on.
                let x = format!(
                    "XCLIENT ADDR={} PORT={} SESSION={} TERN-ROUTE=here\r\n",
                    c.ip(),
                    c.port(),
                    session_id()
                );
                send(&mut r, x.as_bytes())
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let answer = pop3_answer(&mut r)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if answer.is_empty() {
                    return Err(unavailable("closed after XCLIENT".into()));
                }
            }
        }
        pop3_login(&mut r, settings, creds, unavailable).await?;
        return Ok(without_capabilities(r));
    }
    let cmd: Vec<u8> = match creds {
        Credentials::Password(user, pass) => match (astring(user.as_bytes()), astring(pass)) {
            (Ok(u), Ok(p)) => format!("P1 LOGIN {u} {p}\r\n").into_bytes(),
            // A password a quoted string cannot carry: AUTHENTICATE PLAIN.
            _ => {
                let mut m = vec![0];
                m.extend_from_slice(user.as_bytes());
                m.push(0);
                m.extend_from_slice(pass);
                format!(
                    "P1 AUTHENTICATE PLAIN {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(m)
                )
                .into_bytes()
            }
        },
        Credentials::GreetingOnly => {
            return Err(ProxyError::Local(
                "a health check logs in to nothing".into(),
            ))
        }
        Credentials::Master(user) => {
            let Some((master, mpw)) = &settings.master else {
                return Err(ProxyError::Refused(
                    "no proxy.master_user to log in with".into(),
                ));
            };
            let m = format!("{user}\0{master}\0{mpw}");
            format!(
                "P1 AUTHENTICATE PLAIN {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(m)
            )
            .into_bytes()
        }
    };
    // ID and the login go in one write (as Dovecot's proxy sends them):
    // one round trip to the backend fewer per login, and one wake-up fewer
    // for the backend. The ID's answer, whatever it is (BAD from a server
    // without ID is fine), is read before the login's.
    let mut out = Vec::with_capacity(cmd.len() + 160);
    let mut sent_id = false;
    if settings.send_id {
        if let Some(c) = client {
            out.extend_from_slice(
                format!(
                    "P0 ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\" \"x-session-id\" \"{}\" \"x-tern-route\" \"here\")\r\n",
                    c.ip(),
                    c.port(),
                    session_id()
                )
                .as_bytes(),
            );
            sent_id = true;
        }
    }
    out.extend_from_slice(&cmd);
    send(&mut r, &out)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if sent_id {
        until_tagged(&mut r, "P0").await.map_err(unavailable)?;
    }
    let (answer, caps) = until_tagged(&mut r, "P1").await.map_err(unavailable)?;
    if !answer.starts_with("OK") {
        if answer.contains("[UNAVAILABLE]") {
            return Err(unavailable(answer));
        }
        if let Some(h) = referral_host(&answer) {
            return Err(ProxyError::Referral(h));
        }
        return Err(ProxyError::Refused(answer));
    }
    let capabilities = match caps {
        Some(c) => c,
        None => {
            send(&mut r, b"P2 CAPABILITY\r\n")
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let (_, caps) = until_tagged(&mut r, "P2").await.map_err(unavailable)?;
            caps.unwrap_or_else(|| "IMAP4rev1".to_owned())
        }
    };
    Ok(Backend {
        stream: r,
        capabilities,
        host: host.to_owned(),
    })
}

/// Logs `user` in at the first of `hosts` for a session of this server:
/// with the password the client's login revealed (`secret`), else as the
/// master user.
///
/// # Errors
/// As [`connect`].
pub async fn connect_for(
    svc: &crate::imap::Services,
    user: &str,
    hosts: &[String],
    secret: Option<tern_auth::Secret<Vec<u8>>>,
    client: Option<SocketAddr>,
    client_tls: bool,
    leg: Leg,
) -> Result<Backend, ProxyError> {
    let creds = match secret {
        Some(p) => Credentials::Password(user.to_owned(), p.expose().clone()),
        None => Credentials::Master(user.to_owned()),
    };
    connect(
        hosts,
        &svc.proxy,
        &svc.proxy_health,
        client,
        client_tls,
        &creds,
        leg,
    )
    .await
}

/// Logs in at the first of `hosts` that takes the session, skipping those
/// marked down and marking down those that fail.
///
/// # Errors
/// [`ProxyError`] when none takes it.
pub async fn connect(
    hosts: &[String],
    settings: &ProxySettings,
    health: &Health,
    client: Option<SocketAddr>,
    client_tls: bool,
    creds: &Credentials,
    leg: Leg,
) -> Result<Backend, ProxyError> {
    let mut last = ProxyError::Unavailable("every backend is marked down".into());
    let deadline = Instant::now() + settings.connect_timeout;
    let mut queue: std::collections::VecDeque<String> = hosts.iter().cloned().collect();
    let mut visited: Vec<String> = Vec::new();
    let mut referrals = 0;
    while let Some(host) = queue.pop_front() {
        let host = &host;
        if health.is_down(host, settings.down_for) {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = health.share(left, queue.iter(), settings.down_for);
        visited.push(host.clone());
        match tokio::time::timeout(
            left,
            login_at(host, settings, client, client_tls, creds, leg, share),
        )
        .await
        {
            Ok(Ok(b)) => return Ok(b),
            Ok(Err(ProxyError::Refused(r))) => return Err(ProxyError::Refused(r)),
            Ok(Err(ProxyError::Local(why))) => {
                tracing::error!(cause = %why, "cannot connect to a backend");
                return Err(ProxyError::Unavailable(why));
            }
            Ok(Err(ProxyError::Referral(to))) => {
                referrals += 1;
                if referrals > MAX_REFERRALS || visited.iter().any(|v| v.eq_ignore_ascii_case(&to))
                {
                    tracing::warn!(backend = %host, referral = %to, "referral loop: not followed");
                    return Err(ProxyError::Refused(format!("referral loop at {to}")));
                }
                tracing::info!(backend = %host, referral = %to, "login referred");
                queue.push_front(to);
            }
            Ok(Err(e)) => {
                tracing::warn!(backend = %host, cause = ?e, "backend failed; marked down");
                health.mark_down(host);
                last = e;
            }
            Err(_) => {
                tracing::warn!(backend = %host, "backend did not answer in time; marked down");
                health.mark_down(host);
                last = ProxyError::Unavailable(format!("{host}: timed out"));
            }
        }
    }
    Err(last)
}

/// One health check of `host`: a connection and its greeting (with the
/// configured PROXY header and TLS), or, with `proxy.check_user`, a whole
/// login as that account; whether it passed.
async fn probe(host: &str, settings: &ProxySettings) -> bool {
    let creds = match &settings.check_login {
        Some((u, p)) => Credentials::Password(u.clone(), p.as_bytes().to_vec()),
        None => Credentials::GreetingOnly,
    };
    let local: SocketAddr = ([127, 0, 0, 1], 0).into();
    let attempt = login_at(
        host,
        settings,
        Some(local),
        true,
        &creds,
        Leg::Imap,
        settings.connect_timeout,
    );
    match tokio::time::timeout(settings.connect_timeout, attempt).await {
        Ok(Ok(b)) => {
            let mut stream = b.stream.into_inner();
            let _ = stream.write_all(b"P9 LOGOUT\r\n").await;
            let _ = stream.shutdown().await;
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(backend = %host, cause = ?e, "health check failed");
            false
        }
        Err(_) => false,
    }
}

/// The active health check: every `proxy.check_secs`, each backend marked
/// down is probed ([`probe`]); one that passes is up again at once, one
/// that fails stays down (its time restarts), so no client's login pays
/// for trying a backend that is still gone. Runs until the process ends.
pub async fn check_health(settings: ProxySettings, health: std::sync::Arc<Health>) {
    let Some(every) = settings.check_every else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        for host in health.down_now() {
            if probe(&host, &settings).await {
                tracing::info!(backend = %host, "backend answers again: up");
                health.mark_up(&host);
            } else {
                health.mark_down(&host);
            }
        }
    }
}

/// The relayed sessions, by id and by user: a login looks at its own
/// user's sessions only (with thousands relayed, a scan of all of them per
/// login was a measured 7% of the proxy's CPU).
#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<u64, RelayedSession>,
    by_user: HashMap<String, Vec<u64>>,
}

impl Sessions {
    fn remove(&mut self, id: u64) {
        let Some(s) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&s.user) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_user.remove(&s.user);
            }
        }
    }

    /// The sessions of `user`.
    fn of<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a RelayedSession> + 'a {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
    }
}

/// The sessions this server relays, for `tern proxy list` and `kick`.
#[derive(Debug, Default)]
pub struct Relayed {
    next: std::sync::atomic::AtomicU64,
    sessions: Mutex<Sessions>,
    /// Users moved by `tern proxy move`: where they are served now (over
    /// their `mailhost`, until `tern proxy unmove`), and until when their
    /// new logins wait.
    moves: Mutex<HashMap<String, (String, Instant)>>,
    /// Where the moves are kept across restarts (`proxy.moves_file`).
    moves_file: Option<std::path::PathBuf>,
    /// One save at a time, each writing the moves as they are then.
    saving: tokio::sync::Mutex<()>,
}

/// The most bytes of `proxy.moves_file` read at start.
const MAX_MOVES_FILE: u64 = 16 << 20;

/// The most users moved at once (the table and `proxy.moves_file` stay
/// bounded).
pub const MAX_MOVES: usize = 100_000;

/// Most a move may hold a user's logins.
pub const MAX_MOVE_HOLD: Duration = Duration::from_secs(30);

/// One relayed session.
#[derive(Debug, Clone)]
pub struct RelayedSession {
    /// The account.
    pub user: String,
    /// The backend it is relayed to.
    pub backend: String,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// When the relay began.
    pub since: Instant,
    kick: std::sync::Arc<tokio::sync::Notify>,
}

/// A session's place in [`Relayed`], given back when the relay ends.
struct RelayGuard<'a> {
    table: &'a Relayed,
    id: u64,
}

impl Drop for RelayGuard<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

impl Relayed {
    /// A table whose moves are kept in `path` (one `user<TAB>host` line
    /// each), read now: a proxy that restarts keeps routing a moved user
    /// to its new server, so no user is sent back to where its directory
    /// still says while its new mail is elsewhere.
    ///
    /// # Errors
    /// A file that exists and cannot be read.
    pub fn with_moves_file(path: std::path::PathBuf) -> std::io::Result<Relayed> {
        let mut moves = HashMap::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(f, MAX_MOVES_FILE),
                    &mut text,
                )?;
                let now = Instant::now();
                for line in text.lines() {
                    if let Some((user, host)) = line.split_once('\t') {
                        if !user.is_empty() && !host.is_empty() && !host.contains('\t') {
                            moves.insert(user.to_owned(), (host.to_owned(), now));
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Relayed {
            moves: Mutex::new(moves),
            moves_file: Some(path),
            ..Default::default()
        })
    }

    /// Writes the moves to `proxy.moves_file`, if there is one: durably
    /// (temporary file, fsync, rename, fsync of the folder), on the
    /// blocking pool.
    ///
    /// # Errors
    /// The write's.
    pub async fn save_moves(&self) -> std::io::Result<()> {
        let Some(path) = self.moves_file.clone() else {
            return Ok(());
        };
        let _one = self.saving.lock().await;
        let text = {
            let m = self.moves.lock().unwrap_or_else(|p| p.into_inner());
            let mut lines: Vec<String> =
                m.iter().map(|(u, (h, _))| format!("{u}\t{h}\n")).collect();
            lines.sort();
            lines.concat()
        };
        tokio::task::spawn_blocking(move || {
            tern_maildir::unique::write_atomic(&path, text.as_bytes())
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    /// Ends `user`'s move: its `mailhost` decides again (after the
    /// directory was changed to the new server). Whether it had one.
    pub fn unmove(&self, user: &str) -> bool {
        let mut m = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(user).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(
        &self,
        user: &str,
        backend: &str,
        client: Option<SocketAddr>,
    ) -> (RelayGuard<'_>, std::sync::Arc<tokio::sync::Notify>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kick = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut sessions = self.lock();
        // One backend at a time: a user whose logins now go elsewhere (a
        // move, a changed mailhost, a failover) keeps no session on the
        // old one, where it would see another copy of its mail.
        for s in sessions.of(user) {
            if !s.backend.eq_ignore_ascii_case(backend) {
                tracing::info!(user, old = %s.backend, new = %backend, "session on another backend ended");
                s.kick.notify_one();
            }
        }
        sessions.by_id.insert(
            id,
            RelayedSession {
                user: user.to_owned(),
                backend: backend.to_owned(),
                client,
                since: Instant::now(),
                kick: kick.clone(),
            },
        );
        sessions
            .by_user
            .entry(user.to_owned())
            .or_default()
            .push(id);
        (RelayGuard { table: self, id }, kick)
    }

    /// Moves `user` to `host`: new logins wait `hold` (at most
    /// [`MAX_MOVE_HOLD`]) and then go to `host`; the user's relayed
    /// sessions end now (BYE). How many ended.
    ///
    /// # Errors
    /// [`MAX_MOVES`] users are moved already (end some moves first): a
    /// move is never dropped to make room for another.
    pub fn move_user(&self, user: &str, host: &str, hold: Duration) -> Result<usize, String> {
        let until = Instant::now() + hold.min(MAX_MOVE_HOLD);
        {
            let mut m = self.moves.lock().unwrap_or_else(|p| p.into_inner());
            if m.len() >= MAX_MOVES && !m.contains_key(user) {
                return Err(format!(
                    "{MAX_MOVES} users are moved already: unmove some first"
                ));
            }
            m.insert(user.to_owned(), (host.to_owned(), until));
        }
        tracing::info!(user, host, "user moved");
        Ok(self.kick(Some(user), None))
    }

    /// Where `user` was moved, and until when its logins wait.
    pub fn moved(&self, user: &str) -> Option<(String, Instant)> {
        let m = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        m.get(user).cloned()
    }

    /// Waits out a move's hold for `user`, if one is running; whether a
    /// hold was waited for (then the route is to be taken again: the move
    /// may have come after it was).
    pub async fn hold(&self, user: &str) -> bool {
        let Some((_, until)) = self.moved(user) else {
            return false;
        };
        let now = Instant::now();
        if until <= now {
            return false;
        }
        tracing::info!(user, "login held while the user is moved");
        tokio::time::sleep(until - now).await;
        true
    }

    /// The sessions relayed now.
    pub fn list(&self) -> Vec<RelayedSession> {
        let mut v: Vec<RelayedSession> = self.lock().by_id.values().cloned().collect();
        v.sort_by(|a, b| a.user.cmp(&b.user).then(a.since.cmp(&b.since)));
        v
    }

    /// Ends the sessions of `user` (or, with `host`, of that backend):
    /// each client gets a BYE; how many.
    pub fn kick(&self, user: Option<&str>, host: Option<&str>) -> usize {
        let sessions = self.lock();
        let mut n = 0;
        let mut end = |s: &RelayedSession| {
            s.kick.notify_one();
            n += 1;
        };
        match (user, host) {
            (Some(u), None) => sessions.of(u).for_each(&mut end),
            _ => sessions
                .by_id
                .values()
                .filter(|s| {
                    user.is_some_and(|u| u == s.user)
                        || host.is_some_and(|h| h.eq_ignore_ascii_case(&s.backend))
                })
                .for_each(&mut end),
        }
        n
    }
}

/// How this proxy's control reaches the other proxies of its pool.
#[derive(Debug, Clone, Default)]
pub struct ControlPeers {
    /// The other proxies' `proxy.control_listen` addresses.
    pub peers: Vec<String>,
    /// The secret every proxy of the pool shares (`proxy.control_secret`).
    pub secret: Option<String>,
}

/// What the control socket and listener answer to a line they cannot read.
const CONTROL_USAGE: &str =
    "ERR LIST | KICK USER name | KICK HOST host | MOVE user host seconds | UNMOVE user\n";

/// A command of the proxy control socket (`tern proxy ...`) and of the
/// pool's control listener, parsed once from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// The sessions relayed here.
    List,
    /// End a user's relayed sessions.
    KickUser(String),
    /// End the sessions relayed to a backend.
    KickHost(String),
    /// Move a user to a host, holding its new logins meanwhile.
    Move {
        /// The account.
        user: String,
        /// Its new server.
        host: String,
        /// How long new logins wait (capped by [`MAX_MOVE_HOLD`] when run).
        hold: Duration,
    },
    /// End a user's move: its `mailhost` decides again.
    Unmove(String),
}

/// A control line: a command, and whether it is to run on every proxy of
/// the pool (`POOL ` before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLine {
    /// `POOL` was given.
    pub pooled: bool,
    /// The command.
    pub command: ControlCommand,
}

impl ControlLine {
    /// Reads one line (words separated by white space).
    ///
    /// # Errors
    /// The answer to give, for a line that is no command.
    pub fn parse(line: &str) -> Result<ControlLine, &'static str> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (pooled, words) = match words.split_first() {
            Some((&"POOL", rest)) => (true, rest),
            _ => (false, &words[..]),
        };
        let command = match words {
            ["LIST"] => ControlCommand::List,
            ["KICK", "USER", u] => ControlCommand::KickUser((*u).to_owned()),
            ["KICK", "HOST", h] => ControlCommand::KickHost((*h).to_owned()),
            ["MOVE", u, h, secs] => match secs.parse::<u64>() {
                Ok(n) => ControlCommand::Move {
                    user: (*u).to_owned(),
                    host: (*h).to_owned(),
                    hold: Duration::from_secs(n),
                },
                Err(_) => return Err("ERR MOVE user host seconds\n"),
            },
            ["UNMOVE", u] => ControlCommand::Unmove((*u).to_owned()),
            _ => return Err(CONTROL_USAGE),
        };
        Ok(ControlLine { pooled, command })
    }
}

impl ControlCommand {
    /// The line that asks a peer proxy for this command.
    pub fn to_line(&self) -> String {
        match self {
            ControlCommand::List => "LIST".to_owned(),
            ControlCommand::KickUser(u) => format!("KICK USER {u}"),
            ControlCommand::KickHost(h) => format!("KICK HOST {h}"),
            ControlCommand::Move { user, host, hold } => {
                format!("MOVE {user} {host} {}", hold.as_secs())
            }
            ControlCommand::Unmove(u) => format!("UNMOVE {u}"),
        }
    }
}

/// Runs one control command here: the answer text (for the fuzz target).
pub fn run_control_here(command: &ControlCommand, relayed: &Relayed) -> String {
    run_control(command, relayed)
}

/// Runs one control command here: the answer text.
fn run_control(command: &ControlCommand, relayed: &Relayed) -> String {
    match command {
        ControlCommand::List => {
            let mut out = String::new();
            for s in relayed.list() {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    s.user,
                    s.backend,
                    s.client.map(|c| c.to_string()).unwrap_or_default(),
                    s.since.elapsed().as_secs()
                ));
            }
            out
        }
        ControlCommand::KickUser(u) => format!("OK {}\n", relayed.kick(Some(u), None)),
        ControlCommand::KickHost(h) => format!("OK {}\n", relayed.kick(None, Some(h))),
        ControlCommand::Move { user, host, hold } => match relayed.move_user(user, host, *hold) {
            Ok(n) => format!("OK {n}\n"),
            Err(why) => format!("ERR {why}\n"),
        },
        ControlCommand::Unmove(u) => format!("OK {}\n", u8::from(relayed.unmove(u))),
    }
}

/// [`run_control`], and a changed move saved to `proxy.moves_file` before
/// the answer.
async fn run_saved(command: &ControlCommand, relayed: &Relayed) -> String {
    let answer = run_control(command, relayed);
    if matches!(
        command,
        ControlCommand::Move { .. } | ControlCommand::Unmove(_)
    ) {
        if let Err(e) = relayed.save_moves().await {
            tracing::error!(cause = %e, "cannot save proxy.moves_file");
            return format!("ERR in effect here, but not saved to proxy.moves_file: {e}\n");
        }
    }
    answer
}

/// Sends `command` to the peer proxy at `addr` (its control listener,
/// with the pool's secret); its answer.
async fn ask_peer(addr: &str, secret: &str, command: &str) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(format!("SECRET {secret}\n{command}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.take(1 << 20)
            .read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(out)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

/// `POOL ...`: the command here and on every peer. LIST lines get the
/// proxy's name first (`here` or the peer's address); KICK and MOVE answer
/// `OK total`, after a line for each peer that could not be asked.
async fn run_pooled(cmd: &ControlCommand, relayed: &Relayed, peers: &ControlPeers) -> String {
    let command = cmd.to_line();
    let here = run_saved(cmd, relayed).await;
    let listing = matches!(cmd, ControlCommand::List);
    let mut answers = vec![("here".to_owned(), Ok(here))];
    for p in &peers.peers {
        let a = match &peers.secret {
            Some(secret) => ask_peer(p, secret, &command).await,
            None => Err("no proxy.control_secret".to_owned()),
        };
        answers.push((p.clone(), a));
    }
    let mut out = String::new();
    let mut total = 0u64;
    for (name, a) in answers {
        match a {
            Ok(text) if listing => {
                for l in text.lines() {
                    out.push_str(&format!("{name}\t{l}\n"));
                }
            }
            Ok(text) => match text
                .trim()
                .strip_prefix("OK ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(n) => total += n,
                None => out.push_str(&format!("ERR {name}: {}\n", text.trim())),
            },
            Err(e) => out.push_str(&format!("ERR {name}: {e}\n")),
        }
    }
    if !listing {
        out.push_str(&format!("OK {total}\n"));
    }
    out
}

/// Serves `tern proxy list`, `kick` and `move` on a Unix socket (mode
/// 0600 under the server's umask): one command a connection, `LIST`,
/// `KICK USER name`, `KICK HOST host` or `MOVE user host seconds`, each
/// optionally after `POOL ` to run it on every peer proxy as well.
pub async fn control(
    path: std::path::PathBuf,
    relayed: std::sync::Arc<Relayed>,
    peers: std::sync::Arc<ControlPeers>,
) {
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path = %path.display(), cause = %e, "cannot open the proxy control socket");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (relayed, peers) = (relayed.clone(), peers.clone());
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut r = BufReader::new(r.take(4096));
            if tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            }
            let answer = match ControlLine::parse(&line) {
                Ok(ControlLine {
                    pooled: true,
                    command,
                }) => run_pooled(&command, &relayed, &peers).await,
                Ok(ControlLine { command, .. }) => run_saved(&command, &relayed).await,
                Err(usage) => usage.to_owned(),
            };
            let _ = w.write_all(answer.as_bytes()).await;
        });
    }
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The pool's control listener (`proxy.control_listen`): the other
/// proxies send `SECRET s` and one command (never `POOL`: no command goes
/// round the pool twice), run here. At most 16 at once, 4 KiB and 5 s each.
pub async fn control_tcp(
    listener: tokio::net::TcpListener,
    relayed: std::sync::Arc<Relayed>,
    secret: String,
) {
    let running = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let secret = std::sync::Arc::new(secret);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = running.clone().try_acquire_owned() else {
            continue;
        };
        let (relayed, secret) = (relayed.clone(), secret.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r.take(4096));
            let (mut first, mut line) = (String::new(), String::new());
            let wait = Duration::from_secs(5);
            if tokio::time::timeout(wait, r.read_line(&mut first))
                .await
                .is_err()
            {
                return;
            }
            let given = first.trim_end().strip_prefix("SECRET ").unwrap_or("");
            let answer = if !same_secret(given, &secret) {
                tracing::warn!(%peer, "proxy control: wrong secret");
                "ERR not allowed\n".to_owned()
            } else if tokio::time::timeout(wait, r.read_line(&mut line))
                .await
                .is_err()
            {
                return;
            } else {
                match ControlLine::parse(&line) {
                    Ok(ControlLine { pooled: true, .. }) => {
                        "ERR POOL is not forwarded\n".to_owned()
                    }
                    Ok(ControlLine { command, .. }) => run_saved(&command, &relayed).await,
                    Err(usage) => usage.to_owned(),
                }
            };
            let _ = w.write_all(answer.as_bytes()).await;
        });
    }
}

/// A relay buffer's size when little flows, and at most.
const SMALL: usize = 1024;
const LARGE: usize = 16 * 1024;

/// After a read of `n` bytes into `buf`: twice as large when it filled it
/// (up to [`LARGE`]), back to [`SMALL`] when the flow fell to a trickle.
fn resize_for(buf: &mut Vec<u8>, n: usize) {
    if n == buf.len() && buf.len() < LARGE {
        buf.resize(buf.len() * 2, 0);
    } else if n < SMALL / 2 && buf.len() > SMALL {
        *buf = vec![0; SMALL];
    }
}

/// What ends a relayed session besides its two sides: the BYE a kicked
/// client gets, and where the session is listed.
#[derive(Debug)]
pub struct RelayContext<'a> {
    /// The sessions list.
    pub relayed: &'a Relayed,
    /// The account.
    pub user: &'a str,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// The protocol, for what the client is told when the proxy ends it.
    pub leg: Leg,
}

impl Leg {
    /// The last words to a client whose relayed session the proxy ends:
    /// for an idle timeout (`idle`) or a kick.
    fn farewell(self, idle: bool) -> &'static [u8] {
        match (self, idle) {
            (Leg::Imap, true) => b"* BYE Idle for too long\r\n",
            (Leg::Imap, false) => {
                b"* BYE [UNAVAILABLE] This session was ended by the administrator; log in again\r\n"
            }
            (Leg::Pop3, true) => b"-ERR Idle for too long.\r\n",
            (Leg::Pop3, false) => {
                b"-ERR [SYS/TEMP] This session was ended by the administrator; log in again.\r\n"
            }
        }
    }
}

/// The plain TCP socket `s` is, if it is one (not TLS).
fn plain_tcp(s: Box<dyn AsyncStream>) -> Option<TcpStream> {
    s.into_any().downcast::<TcpStream>().ok().map(|t| *t)
}

/// Relays bytes both ways until either side closes, the session is kicked,
/// or nothing moves for `idle`: nothing parsed. Between two cleartext
/// legs with `splice(2)` ([`splice`]), else through buffers that grow
/// with the flow.
pub async fn relay(
    client: Box<dyn AsyncStream>,
    backend: Backend,
    pipelined: Vec<u8>,
    idle: Duration,
    ctx: RelayContext<'_>,
) {
    let (_guard, kick) = ctx.relayed.register(ctx.user, &backend.host, ctx.client);
    let tcp = |s: &dyn AsyncStream| s.as_any().is::<TcpStream>();
    if tcp(client.as_ref()) && tcp(backend.stream.get_ref().as_ref()) {
        let early = backend.stream.buffer().to_vec();
        if let (Some(c), Some(b)) = (plain_tcp(client), plain_tcp(backend.stream.into_inner())) {
            // Both sockets close when dropped here.
            relay_tcp(&c, &b, &early, &pipelined, idle, &ctx, &kick).await;
        }
        return;
    }
    let (mut cr, mut cw) = tokio::io::split(client);
    // What the backend sent after its login answer is in its reader's
    // buffer: it goes to the client first.
    let early = backend.stream.buffer().to_vec();
    let (mut br, mut bw) = tokio::io::split(backend.stream.into_inner());
    if cw.write_all(&early).await.is_err() || bw.write_all(&pipelined).await.is_err() {
        return;
    }
    // Buffers that grow while data flows (to 16 KiB) and shrink back when
    // it trickles: an idle relayed session holds about 2 KiB of them.
    let mut up = Vec::new();
    let mut down = Vec::new();
    up.resize(SMALL, 0);
    down.resize(SMALL, 0);
    loop {
        let step = async {
            tokio::select! {
                r = cr.read(&mut up) => match r {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        let ok = bw.write_all(&up[..n]).await.is_ok();
                        resize_for(&mut up, n);
                        ok
                    }
                },
                r = br.read(&mut down) => match r {
                    Ok(0) | Err(_) => false,
                    Ok(n) => {
                        let ok = cw.write_all(&down[..n]).await.is_ok() && cw.flush().await.is_ok();
                        resize_for(&mut down, n);
                        ok
                    }
                },
            }
        };
        let kicked = kick.notified();
        tokio::select! {
            r = tokio::time::timeout(idle, step) => match r {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    let words = ctx.leg.farewell(true);
                    let _ = tokio::time::timeout(FAREWELL_TIME, cw.write_all(words)).await;
                    break;
                }
            },
            () = kicked => {
                tracing::info!(user = ctx.user, "relayed session ended by tern proxy kick");
                let words = ctx.leg.farewell(false);
                let _ = tokio::time::timeout(FAREWELL_TIME, async {
                    let _ = cw.write_all(words).await;
                    let _ = cw.flush().await;
                })
                .await;
                break;
            }
        }
    }
    let _ = cw.shutdown().await;
    let _ = bw.shutdown().await;
}

/// How long the last words to a relayed client may take: a client that
/// reads nothing (its socket's buffer full) does not keep the relay.
const FAREWELL_TIME: Duration = Duration::from_secs(5);

/// The last words to a relayed client, within [`FAREWELL_TIME`].
async fn farewell(client: &TcpStream, words: &[u8]) {
    let _ = tokio::time::timeout(FAREWELL_TIME, splice::write_all(client, words)).await;
}

/// [`relay`] between two plain TCP sockets: each direction copies through
/// a small buffer and splices while data flows in bulk
/// ([`splice::pass`]).
async fn relay_tcp(
    client: &TcpStream,
    backend: &TcpStream,
    early: &[u8],
    pipelined: &[u8],
    idle: Duration,
    ctx: &RelayContext<'_>,
    kick: &tokio::sync::Notify,
) {
    if splice::write_all(client, early).await.is_err()
        || splice::write_all(backend, pipelined).await.is_err()
    {
        return;
    }
    let (mut up, mut down) = (splice::Direction::new(), splice::Direction::new());
    loop {
        // Only the readiness is raced: what a side has is moved whole
        // once it is ready, never cut off by the other side.
        let step = async {
            tokio::select! {
                r = client.readable() => match r {
                    Ok(()) => splice::pass(client, backend, &mut up).await.unwrap_or(false),
                    Err(_) => false,
                },
                r = backend.readable() => match r {
                    Ok(()) => splice::pass(backend, client, &mut down).await.unwrap_or(false),
                    Err(_) => false,
                },
            }
        };
        tokio::select! {
            r = tokio::time::timeout(idle, step) => match r {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    farewell(client, ctx.leg.farewell(true)).await;
                    break;
                }
            },
            () = kick.notified() => {
                tracing::info!(user = ctx.user, "relayed session ended by tern proxy kick");
                farewell(client, ctx.leg.farewell(false)).await;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let s = ProxySettings {
            self_names: vec!["mail1".into()],
            ..Default::default()
        };
        assert_eq!(route("mail1", "mx.example", &s), None);
        assert_eq!(route("MX.example", "mx.example", &s), None);
        assert_eq!(
            route("b1:143, b2", "mx.example", &s),
            Some(vec!["b1:143".to_owned(), "b2".to_owned()])
        );
        assert_eq!(route("", "mx.example", &s), None);
    }

    #[test]
    fn a_mailhost_naming_one_of_this_servers_listeners_is_served_here() {
        let s = ProxySettings {
            own_listeners: vec![
                "0.0.0.0:143".parse().unwrap(),
                "192.0.2.7:1143".parse().unwrap(),
            ],
            ..Default::default()
        };
        let here = |h: &str| route(h, "mx.example", &s).is_none();
        // The wildcard listener takes any address of this machine on its
        // port, the default port when the mailhost gives none.
        assert!(here("127.0.0.1"));
        assert!(here("127.0.0.1:143"));
        assert!(here("127.0.0.2, 198.51.100.9"), "a list naming this server");
        // Another port, or an address this machine does not have, is
        // another server.
        assert!(!here("127.0.0.1:1144"));
        assert!(!here("198.51.100.9"));
        assert!(!here("[::1]:143"), "a v4 wildcard does not take IPv6");
        // A listener's own address, on its port, whether or not the
        // machine has it (the listener bound it).
        assert!(here("192.0.2.7:1143"));
        assert!(!here("192.0.2.7"));
        // Names are compared as before.
        assert!(!here("localhost"));
    }

    #[test]
    fn the_session_table_ends_a_users_sessions_on_another_backend_only() {
        let r = Relayed::default();
        let (a1, k_a1) = r.register("dave", "b1", None);
        let (_b1, k_b1) = r.register("erin", "b1", None);
        let (_a2, k_a2) = r.register("dave", "B1", None);
        assert_eq!(r.list().len(), 3);
        // dave logs in on b2: his two sessions on b1 are told to end,
        // erin's is not.
        let (_a3, _) = r.register("dave", "b2", None);
        let told = |k: &std::sync::Arc<tokio::sync::Notify>| {
            let n = k.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(told(&k_a1) && told(&k_a2));
        assert!(!told(&k_b1));
        assert_eq!(r.kick(Some("dave"), None), 3);
        assert_eq!(r.kick(None, Some("b1")), 3);
        // A session gone is gone from both indexes.
        drop(a1);
        assert_eq!(r.kick(Some("dave"), None), 2);
        assert_eq!(r.list().len(), 3);
        assert_eq!(r.lock().by_user["dave"].len(), 2);
    }

    #[test]
    fn moves_are_bounded_and_none_is_dropped_for_another() {
        let r = Relayed::default();
        for i in 0..MAX_MOVES {
            assert!(r.move_user(&format!("u{i}"), "b2", Duration::ZERO).is_ok());
        }
        assert!(r.move_user("one-more", "b2", Duration::ZERO).is_err());
        assert!(r.moved("u0").is_some(), "an earlier move was dropped");
        // Moving a moved user again, or after an unmove, is fine.
        assert!(r.move_user("u1", "b3", Duration::ZERO).is_ok());
        assert!(r.unmove("u2"));
        assert!(r.move_user("one-more", "b2", Duration::ZERO).is_ok());
    }

    #[tokio::test]
    async fn moves_are_read_back_from_their_file_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moves");
        // No file yet: no moves.
        let r = Relayed::with_moves_file(path.clone()).unwrap();
        assert!(r.moved("dave").is_none());
        assert_eq!(r.move_user("dave", "b2:143", Duration::ZERO), Ok(0));
        assert_eq!(r.move_user("erin", "b3", Duration::ZERO), Ok(0));
        r.save_moves().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "dave\tb2:143\nerin\tb3\n"
        );
        // A line without a host, or with more fields, is skipped.
        std::fs::write(&path, "dave\tb2:143\nbroken\n\tnobody\nx\ty\tz\nerin\tb3\n").unwrap();
        let r = Relayed::with_moves_file(path.clone()).unwrap();
        assert_eq!(r.moved("dave").map(|m| m.0), Some("b2:143".to_owned()));
        assert_eq!(r.moved("erin").map(|m| m.0), Some("b3".to_owned()));
        assert!(r.moved("broken").is_none() && r.moved("x").is_none());
        // Read back, a move holds no login.
        assert!(!r.hold("dave").await);
        assert!(r.unmove("dave") && !r.unmove("dave"));
        // A file that cannot be read is an error, not an empty table.
        assert!(Relayed::with_moves_file(dir.path().to_path_buf()).is_err());
    }

    #[test]
    fn pools_keep_users_in_place_and_share_by_weight() {
        let pool = Pool {
            servers: vec![("b1".into(), 1), ("b2".into(), 1), ("b3".into(), 2)],
        };
        let users: Vec<String> = (0..20_000)
            .map(|i| format!("user{i}@example.org"))
            .collect();
        let first = |p: &Pool, u: &str| p.order(u).remove(0);
        let mut count: HashMap<String, usize> = HashMap::new();
        for u in &users {
            *count.entry(first(&pool, u)).or_default() += 1;
        }
        // b3 has half of the weight: about half of the users.
        let b3 = count["b3"] as f64 / users.len() as f64;
        assert!((0.47..0.53).contains(&b3), "{count:?}");
        let b1 = count["b1"] as f64 / users.len() as f64;
        assert!((0.22..0.28).contains(&b1), "{count:?}");
        // The same answer every time (every proxy agrees).
        assert_eq!(
            pool.order("user7@example.org"),
            pool.order("user7@example.org")
        );
        // Without b2, only b2's users move.
        let smaller = Pool {
            servers: vec![("b1".into(), 1), ("b3".into(), 2)],
        };
        for u in &users {
            let before = first(&pool, u);
            if before != "b2" {
                assert_eq!(first(&smaller, u), before, "{u} moved");
            }
        }
    }

    #[test]
    fn pool_routes() {
        let mut s = ProxySettings::default();
        s.pools.insert(
            "main".into(),
            Pool {
                servers: vec![("me".into(), 1), ("other".into(), 1)],
            },
        );
        s.default_pool = Some("main".into());
        let mut here = 0;
        for i in 0..1000 {
            let u = format!("u{i}");
            match route_for(&u, None, "me", &s) {
                None => here += 1,
                Some(h) => assert_eq!(h, vec!["other".to_owned()]),
            }
            assert_eq!(
                route_for(&u, Some("pool:main"), "me", &s),
                route_for(&u, None, "me", &s)
            );
        }
        assert!((400..600).contains(&here), "{here}");
        assert_eq!(route_for("u1", Some("pool:nope"), "me", &s), None);
        assert_eq!(
            route_for("u1", Some("b9"), "me", &s),
            Some(vec!["b9".to_owned()])
        );
    }

    #[test]
    fn relay_buffers_grow_with_the_flow_and_shrink_after() {
        let mut b = vec![0; SMALL];
        resize_for(&mut b, SMALL);
        assert_eq!(b.len(), 2 * SMALL);
        for _ in 0..10 {
            let n = b.len();
            resize_for(&mut b, n);
        }
        assert_eq!(b.len(), LARGE, "never past the largest");
        resize_for(&mut b, 1000);
        assert_eq!(b.len(), LARGE, "a fair read keeps it");
        resize_for(&mut b, 10);
        assert_eq!(b.len(), SMALL, "a trickle gives it back");
    }

    #[test]
    fn referrals() {
        assert_eq!(
            referral_host("NO [REFERRAL imap://dave;AUTH=*@b2.example:1143/] Try b2").as_deref(),
            Some("b2.example:1143")
        );
        assert_eq!(
            referral_host("NO [REFERRAL imap://b3/] x").as_deref(),
            Some("b3")
        );
        assert_eq!(referral_host("NO [REFERRAL pop://b3/] x"), None);
        assert_eq!(referral_host("NO [REFERRAL imap://a b/] x"), None);
        assert_eq!(referral_host("NO [AUTHENTICATIONFAILED] x"), None);
    }

    #[test]
    fn addresses() {
        let s = ProxySettings::default();
        assert_eq!(address("b1", &s, Leg::Imap), "b1:143");
        assert_eq!(address("b1:1143", &s, Leg::Imap), "b1:1143");
        assert_eq!(address("b1:1143", &s, Leg::Pop3), "b1:110");
        assert_eq!(address("10.0.0.5", &s, Leg::Pop3), "10.0.0.5:110");
    }

    #[test]
    fn login_arguments() {
        assert_eq!(astring(b"alice").unwrap(), "\"alice\"");
        assert!(astring(b"pa\"ss").is_err());
        assert!(astring("pä".as_bytes()).is_err());
    }

    #[test]
    fn proxy_headers_parse_back() {
        let h = proxy_header(
            "203.0.113.7:5555".parse().unwrap(),
            "10.0.0.1:143".parse().unwrap(),
            false,
        );
        let got = crate::haproxy::parse_v2(h[12], h[13], &h[16..]).unwrap();
        assert_eq!(got.client, Some("203.0.113.7:5555".parse().unwrap()));
        assert!(!got.tls);
        let h = proxy_header(
            "[2001:db8::1]:4000".parse().unwrap(),
            "10.0.0.1:143".parse().unwrap(),
            true,
        );
        let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
        assert_eq!(h.len(), 16 + len);
        let got = crate::haproxy::parse_v2(h[12], h[13], &h[16..]).unwrap();
        assert_eq!(got.client, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert!(got.tls, "the client's TLS is said");
    }
}
