//! What IMAP and POP3 logins share: the cleartext policy, the password
//! check off the async threads, the growing delay after failures, and the
//! work done once per login (the Maildir made, old trash swept).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Cleartext;
use crate::imap::Services;
use crate::users::{LoginResult, User};

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

/// Checks a password on a blocking thread (hashing is CPU-heavy).
pub(crate) async fn verify(svc: &Arc<Services>, user: String, pass: Vec<u8>) -> LoginResult {
    let svc = svc.clone();
    tokio::task::spawn_blocking(move || match &svc.users {
        Some(db) => db.login(&user, &pass),
        None => LoginResult::Failed,
    })
    .await
    .unwrap_or_else(|e| LoginResult::TempFail(e.to_string()))
}

/// Sleeps after the `failures`-th failed login: the configured delay,
/// doubled for each further failure, at most 30 seconds.
pub(crate) async fn failure_pause(svc: &Services, failures: u32) {
    let delay = svc
        .failure_delay
        .saturating_mul(1 << failures.saturating_sub(1).min(5));
    tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
}

/// Once per login: creates the Maildir if needed and sweeps old trash.
///
/// # Errors
/// The Maildir cannot be created.
pub(crate) async fn prepare(svc: &Arc<Services>, user: &User) -> Result<(), String> {
    let svc = svc.clone();
    let user = user.clone();
    tokio::task::spawn_blocking(move || {
        user.maildir.ensure().map_err(|e| e.to_string())?;
        if !svc.policy.empty_trash.is_empty() {
            crate::trash::sweep(&svc.folders, &user.maildir, &svc.policy.empty_trash);
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}
