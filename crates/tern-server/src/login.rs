//! What IMAP and POP3 logins share: the cleartext policy, the password
//! check off the async threads, the growing delay after failures, and the
//! work done once per login (the Maildir made, old trash swept).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Cleartext;
use crate::imap::Services;
use crate::users::{LoginResult, User};
use tern_auth::sql::Request;

/// Whether a password may be sent on this connection.
pub(crate) fn cleartext_allowed(
    svc: &Services,
    tls_active: bool,
    peer: Option<SocketAddr>,
) -> bool {
    if tls_active {
        return true;
    }
    match svc.cleartext {
        Cleartext::Always => true,
        Cleartext::Never => false,
        Cleartext::Loopback => peer.map(|p| p.ip().is_loopback()).unwrap_or(true),
    }
}

/// Password checks waiting for a hashing thread at most; more get "try
/// again later" at once instead of a place in the queue.
const MAX_WAITING_CHECKS: usize = 1024;

type Check = Box<dyn FnOnce() + Send>;

/// The threads that check passwords: as many as the machine has cores, and
/// no more, whatever the number of clients. A memory-hard hash (Argon2id,
/// what `tern pw` writes, 19 MiB a check) then costs at most that many
/// checks' memory at once, on that many threads' allocator arenas, instead
/// of one of each per blocking-pool thread (a storm of wrong passwords
/// drove the server to 2.1 GB that way). A client waiting for its turn
/// holds no thread; it waits on a channel.
fn checkers() -> &'static std::sync::mpsc::SyncSender<Check> {
    static POOL: std::sync::OnceLock<std::sync::mpsc::SyncSender<Check>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Check>(MAX_WAITING_CHECKS);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(p) => p.into_inner().recv(),
                    };
                    match job {
                        // A check that panics loses its answer (the client
                        // is told to try again), never the thread.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(cause = %e, "cannot start a password-checking thread");
            }
        }
        tx
    })
}

/// Runs `f` on one of the password threads ([`checkers`]); `None` when too
/// many checks are waiting or the check was lost.
pub(crate) async fn on_checker<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Check = Box::new(move || {
        let _ = tx.send(f());
    });
    if checkers().try_send(job).is_err() {
        tracing::warn!("password check refused: too many checks waiting");
        return None;
    }
    rx.await.ok()
}

/// The request a login makes of the backends.
fn request<'a>(user: &'a str, service: &'static str, remote: &'a str) -> Request<'a> {
    Request {
        user,
        service,
        remote,
    }
}

/// The password a login by `user` may pass on to a backend (the proxy): the
/// user's own, never a master user's (`user*master`).
pub(crate) fn forwardable(
    svc: &Services,
    user: &str,
    pass: &[u8],
) -> Option<tern_auth::Secret<Vec<u8>>> {
    let master = svc
        .users
        .as_ref()
        .is_some_and(|u| u.split_master(user).is_some());
    (!master).then(|| tern_auth::Secret::new(pass.to_vec()))
}

/// Finds the account (in the backends, on the runtime: a database query
/// is I/O) and checks the password on one of the password threads
/// ([`checkers`]). `service` is `imap` or `pop3`. A name of the form
/// `user*master` (the separator is `auth.master_separator`) is a master
/// user's login as `user` ([`verify_master`]).
pub(crate) async fn verify(
    svc: &Arc<Services>,
    user: String,
    pass: Vec<u8>,
    service: &'static str,
    peer: Option<SocketAddr>,
    tls: bool,
) -> LoginResult {
    let Some(db) = &svc.users else {
        return LoginResult::Failed;
    };
    if let Some((target, master)) = db.split_master(&user) {
        let (target, master) = (target.to_owned(), master.to_owned());
        return verify_master(svc, &target, &master, pass, service, peer, tls).await;
    }
    if svc.login_failures.blocked(peer.map(|p| p.ip())) {
        return LoginResult::Blocked;
    }
    let remote = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let req = request(&user, service, &remote);
    let entry = match db.lookup(&req).await {
        Ok(e) => e,
        Err(e) => return LoginResult::TempFail(e.to_string()),
    };
    // An account its backend checks itself (an LDAP bind as its DN, a
    // checkpassword program).
    if let Some(e) = &entry {
        if let Some(checked) = db.check_by_backend(e, &pass, &req).await {
            let result = match checked {
                Ok(Some(found)) => LoginResult::Ok(db.user_for(&found)),
                Ok(None) => LoginResult::Failed,
                Err(err) => LoginResult::TempFail(err.to_string()),
            };
            return finish(svc, peer, result, service, tls);
        }
    }
    // No such account, where accounts are checked by binding: a bind that
    // fails costs what a known account's wrong password does.
    if entry.is_none() && db.decoy_bind(&req, &pass).await {
        return LoginResult::Failed;
    }
    if db.check_is_cleartext(entry.as_ref()) {
        let result = db.check(entry.as_ref(), &pass);
        return finish(svc, peer, result, service, tls);
    }
    let shared = svc.clone();
    let result = on_checker(move || match &shared.users {
        Some(db) => db.check(entry.as_ref(), &pass),
        None => LoginResult::Failed,
    })
    .await
    .unwrap_or_else(|| LoginResult::TempFail("too many password checks waiting".to_owned()));
    finish(svc, peer, result, service, tls)
}

/// A master user's login as `target` (Dovecot's `target*master`, or PLAIN
/// and SCRAM with `target` as the authorization identity): the master's
/// password is checked against `auth.master_passwd_file`, then `target` must
/// exist. The session is `target`'s, under `target`'s account options.
pub(crate) async fn verify_master(
    svc: &Arc<Services>,
    target: &str,
    master: &str,
    pass: Vec<u8>,
    service: &'static str,
    peer: Option<SocketAddr>,
    tls: bool,
) -> LoginResult {
    let Some(db) = &svc.users else {
        return LoginResult::Failed;
    };
    if svc.login_failures.blocked(peer.map(|p| p.ip())) {
        return LoginResult::Blocked;
    }
    let shared = svc.clone();
    let name = master.to_owned();
    let checked = on_checker(move || match &shared.users {
        Some(db) => db.check_master(&name, &pass),
        None => Ok(false),
    })
    .await;
    match checked {
        Some(Ok(true)) => {}
        Some(Ok(false)) => {
            tracing::info!(master, target, "master login failed");
            return LoginResult::Failed;
        }
        Some(Err(e)) => return LoginResult::TempFail(e.to_string()),
        None => return LoginResult::TempFail("too many password checks waiting".to_owned()),
    }
    master_target(svc, db, target, master, service, peer, tls).await
}

/// After a master user proved itself: the session of `target`, if it
/// exists.
pub(crate) async fn master_target(
    svc: &Arc<Services>,
    db: &crate::users::UserDb,
    target: &str,
    master: &str,
    service: &'static str,
    peer: Option<SocketAddr>,
    tls: bool,
) -> LoginResult {
    let remote = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let result = match db.lookup(&request(target, service, &remote)).await {
        Ok(Some(e)) => {
            tracing::info!(master, target, "master user login");
            LoginResult::Ok(db.user_for(&e))
        }
        Ok(None) => {
            tracing::info!(master, target, "master user login as an unknown user");
            LoginResult::Failed
        }
        Err(e) => LoginResult::TempFail(e.to_string()),
    };
    finish(svc, peer, result, service, tls)
}

/// A good login clears its address's failures.
pub(crate) fn finish(
    svc: &Services,
    peer: Option<SocketAddr>,
    result: LoginResult,
    service: &'static str,
    tls: bool,
) -> LoginResult {
    let result = refused_by_options(result, service, tls);
    if matches!(result, LoginResult::Ok(_)) {
        svc.login_failures.succeeded(peer.map(|p| p.ip()));
    }
    result
}

/// Only a right password learns that the account is refused here.
fn refused_by_options(result: LoginResult, service: &'static str, tls: bool) -> LoginResult {
    match result {
        LoginResult::Ok(u) => match u.access.check(service, tls) {
            Ok(()) => LoginResult::Ok(u),
            Err(d) => {
                tracing::info!(user = %u.name, service, tls, reason = ?d, "login refused by account options");
                LoginResult::Denied(d)
            }
        },
        other => other,
    }
}

/// What is left of the login's time for a connection that began at
/// `started`: the whole login has one deadline, `limits.preauth_timeout_secs`
/// after connecting, however slowly the client trickles its bytes in (a
/// timeout per read would restart with each byte).
pub(crate) fn time_left(svc: &Services, started: std::time::Instant) -> Duration {
    (started + svc.limits.preauth_timeout()).saturating_duration_since(std::time::Instant::now())
}

/// Failed logins by client address, so that a client cannot start its
/// count again by reconnecting: the pause after a failure grows with the
/// address's failures too, and an address with `block_after` failures
/// within `block_for` is refused for `block_for` (its logins are answered
/// at once, no password checked), then forgiven. A good login clears its
/// address. Bounded: at most [`MAX_ADDRESSES`] addresses are tracked.
///
/// Loopback addresses are not counted unless told to: the local webmail,
/// a proxy, or a test suite on the same host would otherwise block or slow
/// every user behind them.
#[derive(Debug, Default)]
pub struct FailureLedger {
    block_after: u32,
    block_for: Duration,
    loopback: bool,
    by_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

/// Addresses tracked at most; beyond, the oldest records are dropped.
pub const MAX_ADDRESSES: usize = 100_000;

impl FailureLedger {
    /// A ledger blocking after `block_after` failures (0: never) for
    /// `block_for`; `loopback`: count loopback addresses too.
    pub fn new(block_after: u32, block_for: Duration, loopback: bool) -> FailureLedger {
        FailureLedger {
            block_after,
            block_for,
            loopback,
            by_ip: Default::default(),
        }
    }

    /// The address to count, if this one is counted.
    fn counted(&self, ip: Option<std::net::IpAddr>) -> Option<std::net::IpAddr> {
        ip.filter(|ip| self.loopback || !ip.is_loopback())
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>,
    > {
        self.by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` is blocked now.
    pub fn blocked(&self, ip: Option<std::net::IpAddr>) -> bool {
        let Some(ip) = self.counted(ip) else {
            return false;
        };
        if self.block_after == 0 {
            return false;
        }
        let mut m = self.map();
        match m.get(&ip) {
            Some((n, last)) if *n >= self.block_after => {
                if last.elapsed() < self.block_for {
                    true
                } else {
                    m.remove(&ip);
                    false
                }
            }
            _ => false,
        }
    }

    /// Records a failure of `ip`; its failures within the window.
    pub fn failed(&self, ip: Option<std::net::IpAddr>) -> u32 {
        let Some(ip) = self.counted(ip) else {
            return 0;
        };
        let mut m = self.map();
        if m.len() >= MAX_ADDRESSES && !m.contains_key(&ip) {
            let window = self.block_for.max(Duration::from_secs(60));
            m.retain(|_, (_, last)| last.elapsed() < window);
            if m.len() >= MAX_ADDRESSES {
                m.clear();
            }
        }
        let now = std::time::Instant::now();
        let e = m.entry(ip).or_insert((0, now));
        if e.1.elapsed() >= self.block_for.max(Duration::from_secs(60)) {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        if self.block_after > 0 && e.0 == self.block_after {
            tracing::warn!(
                client = %ip,
                failures = e.0,
                seconds = self.block_for.as_secs(),
                "blocking logins from this address"
            );
        }
        e.0
    }

    /// A good login from `ip`: its record goes.
    pub fn succeeded(&self, ip: Option<std::net::IpAddr>) {
        if let Some(ip) = self.counted(ip) {
            self.map().remove(&ip);
        }
    }
}

/// Sleeps after a failed login: the configured delay, doubled for each
/// further failure of this connection or of its address (whichever is
/// more), at most 30 seconds.
pub(crate) async fn failure_pause(svc: &Services, failures: u32, peer: Option<SocketAddr>) {
    let n = failures.max(svc.login_failures.failed(peer.map(|p| p.ip())));
    let delay = svc
        .failure_delay
        .saturating_mul(1 << n.saturating_sub(1).min(5));
    tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
}

/// Once per login: creates the Maildir if needed and sweeps old trash.
///
/// # Errors
/// The Maildir cannot be created.
pub(crate) async fn prepare(svc: &Arc<Services>, user: &User) -> Result<(), String> {
    let svc = svc.clone();
    let user = user.clone();
    // With the account's credentials, whether or not the session has taken
    // them yet: a ~/Maildir the account pointed elsewhere leads nowhere.
    crate::creds::spawn_blocking_as(user.creds, move || {
        user.maildir.ensure().map_err(|e| e.to_string())?;
        if !svc.policy.empty_trash.is_empty() {
            crate::trash::sweep(&svc.folders, &user.maildir, &svc.policy.empty_trash);
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}
