//! Listeners: accepting connections under the connection limits, TLS
//! handshakes, and graceful shutdown.
//!
//! Shutdown: stop accepting; tell every session through the `watch`
//! channel (each finishes its command, sends `* BYE` and closes); wait for
//! them, at most [`SHUTDOWN_GRACE`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use tracing::Instrument;

use crate::imap::{serve_connection, AsyncStream, Services, SessionStart};

/// How long sessions get to finish after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
    /// LMTP (deliveries from the MTA).
    Lmtp,
}

impl Protocol {
    /// Its name in the logs.
    fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Lmtp => "lmtp",
        }
    }

    /// The line that turns a connection away before its greeting.
    fn refusal(self, why: &str) -> String {
        match self {
            Protocol::Imap => format!("* BYE {why}\r\n"),
            Protocol::Pop3 => format!("-ERR [SYS/TEMP] {why}\r\n"),
            Protocol::Lmtp => format!("421 4.3.2 {why}\r\n"),
        }
    }
}

/// A bound listener: its protocol and whether it speaks implicit TLS.
#[derive(Debug)]
pub struct BoundListener {
    /// The socket.
    pub listener: TcpListener,
    /// Implicit TLS.
    pub tls: bool,
    /// What it speaks.
    pub protocol: Protocol,
    /// Each connection starts with a PROXY protocol header.
    pub haproxy: bool,
}

/// What the PROXY protocol listeners accept.
#[derive(Debug, Clone)]
pub struct HaproxySettings {
    /// The balancers' addresses.
    pub trusted: Vec<crate::haproxy::Network>,
    /// How long the header may take.
    pub timeout: Duration,
}

impl Default for HaproxySettings {
    fn default() -> Self {
        HaproxySettings {
            trusted: Vec::new(),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Counts connections per IP address.
#[derive(Debug, Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

struct IpSlot {
    ip: IpAddr,
    table: Arc<PerIp>,
}

/// A connection's place in the limits (`max_connections`, and
/// `max_connections_per_ip` for its address): given back when dropped.
/// A session drops it before its last answer goes out (LOGOUT, QUIT, a
/// closing BYE), so a client that reconnects at once after reading that
/// answer already finds its place free.
pub struct ConnectionSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _ip: IpSlot,
    /// The account's place, once logged in.
    user: Option<UserSlot>,
}

impl ConnectionSlot {
    /// Takes the logged-in account's place in the per-user limits
    /// (`max_connections_per_user_ip`, `max_connections_per_user`),
    /// kept until the connection's slot is given back.
    ///
    /// # Errors
    /// The limit that is reached, for the answer and the log.
    pub(crate) fn log_in(
        &mut self,
        svc: &Services,
        user: &str,
        protocol: Protocol,
    ) -> Result<(), &'static str> {
        let slot = svc.user_connections.try_take(
            user,
            self._ip.ip,
            protocol,
            svc.limits.max_connections_per_user_ip,
            svc.limits.max_connections_per_user,
        )?;
        self.user = Some(slot);
        Ok(())
    }

    /// Gives the account's place back (a login that failed after all).
    pub(crate) fn log_out(&mut self) {
        self.user = None;
    }
}

/// Logged-in sessions by account, and by account, address and protocol:
/// entries exist only while sessions do, so the table is bounded by
/// `max_connections`.
#[derive(Debug, Default)]
pub struct PerUser {
    counts: Mutex<PerUserCounts>,
}

#[derive(Debug, Default)]
struct PerUserCounts {
    user: HashMap<Arc<str>, usize>,
    user_ip: HashMap<(Arc<str>, IpAddr, Protocol), usize>,
}

/// A logged-in session's place in [`PerUser`]; given back when dropped.
struct UserSlot {
    user: Arc<str>,
    ip: IpAddr,
    protocol: Protocol,
    table: Arc<PerUser>,
}

impl PerUser {
    fn try_take(
        self: &Arc<Self>,
        user: &str,
        ip: IpAddr,
        protocol: Protocol,
        per_user_ip: usize,
        per_user: usize,
    ) -> Result<UserSlot, &'static str> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key: Arc<str> = Arc::from(user);
        let n_user = c.user.get(&key).copied().unwrap_or(0);
        if n_user >= per_user {
            return Err("max_connections_per_user");
        }
        let ip_key = (key.clone(), ip, protocol);
        let n_ip = c.user_ip.get(&ip_key).copied().unwrap_or(0);
        if n_ip >= per_user_ip {
            return Err("max_connections_per_user_ip");
        }
        c.user.insert(key.clone(), n_user + 1);
        c.user_ip.insert(ip_key, n_ip + 1);
        Ok(UserSlot {
            user: key,
            ip,
            protocol,
            table: self.clone(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut c = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.user.remove(&self.user);
            }
        }
        let k = (self.user.clone(), self.ip, self.protocol);
        if let Some(n) = c.user_ip.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                c.user_ip.remove(&k);
            }
        }
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").finish_non_exhaustive()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut c = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            table: self.clone(),
        })
    }
}

/// Serves all listeners until `shutdown` turns true, then drains sessions.
pub async fn run(
    svc: Arc<Services>,
    listeners: Vec<BoundListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let limit = Arc::new(Semaphore::new(svc.limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    // Each session holds a sender; when all are dropped, `recv` returns None
    // (the mini-redis shutdown pattern).
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut accepts = JoinSet::new();
    for l in listeners {
        accepts.spawn(accept_loop(
            svc.clone(),
            l,
            limit.clone(),
            per_ip.clone(),
            tls.clone(),
            alive_tx.clone(),
        ));
    }
    drop(alive_tx);
    let mut shutdown = svc.shutdown.clone();
    let _ = shutdown.wait_for(|v| *v).await;
    accepts.abort_all();
    while accepts.join_next().await.is_some() {}
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
}

/// Session ids for the logs, unique in this process.
static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

async fn accept_loop(
    svc: Arc<Services>,
    l: BoundListener,
    limit: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let (stream, peer) = match l.listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Accepted {
            svc: svc.clone(),
            limit: limit.clone(),
            per_ip: per_ip.clone(),
            tls: if l.tls { tls.clone() } else { None },
            alive: alive.clone(),
            protocol: l.protocol,
            implicit_tls: l.tls,
        };
        if l.haproxy {
            if !svc.haproxy.trusted.iter().any(|n| n.contains(peer.ip())) {
                tracing::warn!(%peer, "connection refused: a PROXY protocol listener, and the address is not in haproxy.trusted_networks");
                continue;
            }
            // The header is read on the connection's own task: a slow
            // balancer never holds up the accept loop.
            tokio::spawn(async move {
                let mut stream = stream;
                let timeout = conn.svc.haproxy.timeout;
                match crate::haproxy::read_header(&mut stream, timeout).await {
                    Ok(h) => conn.admit(stream, h.client.unwrap_or(peer), h.tls).await,
                    Err(why) => {
                        tracing::warn!(%peer, cause = %why, "PROXY protocol header refused")
                    }
                }
            });
            continue;
        }
        conn.admit(stream, peer, false).await;
    }
}

/// A connection accepted, with what admitting it needs.
struct Accepted {
    svc: Arc<Services>,
    limit: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    alive: tokio::sync::mpsc::Sender<()>,
    protocol: Protocol,
    implicit_tls: bool,
}

impl Accepted {
    /// Counts the connection against the limits, with the client's address
    /// `peer` (the balancer's word for it behind a PROXY listener), and
    /// serves it on a task of its own; or turns it away. `balancer_tls`:
    /// the balancer says the client came over TLS it ended.
    async fn admit(self, stream: TcpStream, peer: SocketAddr, balancer_tls: bool) {
        let svc = self.svc;
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                limit = svc.limits.max_connections,
                "connection refused: limits.max_connections reached"
            );
            reject(
                stream,
                &self
                    .protocol
                    .refusal("Too many connections, try again later"),
            )
            .await;
            return;
        };
        let Some(ip_slot) = self
            .per_ip
            .try_take(peer.ip(), svc.limits.max_connections_per_ip)
        else {
            tracing::warn!(
                %peer,
                limit = svc.limits.max_connections_per_ip,
                "connection refused: limits.max_connections_per_ip reached for this address"
            );
            reject(
                stream,
                &self
                    .protocol
                    .refusal("Too many connections from your address"),
            )
            .await;
            return;
        };
        let slot = ConnectionSlot {
            _permit: permit,
            _ip: ip_slot,
            user: None,
        };
        let (tls, alive, protocol) = (self.tls, self.alive, self.protocol);
        // Every log line of the connection carries its span: a session id,
        // the peer, the protocol, TLS, and the user once logged in.
        let span = tracing::info_span!(
            "session",
            id = NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            %peer,
            proto = protocol.name(),
            tls = self.implicit_tls,
            user = tracing::field::Empty,
            client = tracing::field::Empty,
        );
        tokio::spawn(
            async move {
                let _alive = alive;
                serve(svc, stream, peer, tls, balancer_tls, protocol, slot).await;
            }
            .instrument(span),
        );
    }
}

async fn reject(mut stream: TcpStream, msg: &str) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(msg.as_bytes())).await;
}

async fn serve(
    svc: Arc<Services>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    balancer_tls: bool,
    protocol: Protocol,
    slot: ConnectionSlot,
) {
    // The connection's own source: the balancer's behind a PROXY listener.
    let hop = stream.peer_addr().ok().map(|a| a.ip());
    let (stream, binding): (Box<dyn AsyncStream>, Option<crate::tls::ChannelBindings>) = match tls {
        Some(acceptor) => {
            // Boxed, as the session below: this task's own state stays
            // small, and the handshake's and each protocol's are each only
            // as large as they are, and only while they last (an idle
            // session's memory is mostly its task).
            match tokio::time::timeout(
                svc.limits.preauth_timeout(),
                Box::pin(acceptor.accept(stream)),
            )
            .await
            {
                Ok(Ok(s)) => {
                    let b = crate::tls::ChannelBindings::of(
                        s.get_ref().1,
                        svc.sasl.end_point.as_deref(),
                        svc.sasl.cert_field,
                    );
                    (Box::new(s), Some(b))
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, cause = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        None => (Box::new(stream), None),
    };
    let tls = binding.is_some() || balancer_tls;
    match protocol {
        Protocol::Imap => {
            let start = SessionStart::Login {
                peer: Some(peer),
                hop,
                tls,
                binding,
                slot: Some(slot),
            };
            Box::pin(serve_connection(svc, stream, start)).await
        }
        Protocol::Pop3 => {
            Box::pin(crate::pop3::serve_pop3(
                svc,
                stream,
                Some(peer),
                hop,
                tls,
                binding,
                Some(slot),
            ))
            .await
        }
        Protocol::Lmtp => {
            Box::pin(crate::lmtp::serve_lmtp(svc, stream, Some(peer), Some(slot))).await
        }
    }
}
