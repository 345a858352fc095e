//! Storage work done with the account's own credentials.
//!
//! Where accounts have uids of their own (system accounts, PAM, or any
//! account whose entry gives a uid and gid when `mail.account_uids = "all"`),
//! tern runs as root and each storage operation runs with the account's
//! uid, gid and only that group, so that the kernel, not only tern's own
//! path checks, keeps one account out of another's Maildir (a symbolic
//! link an account planted in its own Maildir leads nowhere it could not
//! go itself).
//!
//! How: Linux keeps credentials per thread, and the raw `setresuid`,
//! `setresgid` and `setgroups` system calls (rustix's `set_thread_*`; not
//! glibc's wrappers, which change every thread) change only the calling
//! one. Every storage operation already runs on the blocking pool
//! ([`spawn_blocking`]); there the thread takes the session's account's
//! effective uid and gid for the closure's run and gives them back after
//! (in a guard, so a panic gives them back too; a thread that cannot is
//! not allowed to go on: the process aborts). The real and saved uid stay
//! 0, which is what lets the thread return to root. Threads a closure
//! starts (parallel searches, a cache writer) inherit its credentials.
//! The session's account is a task-local the session sets at login.
//!
//! Why not a worker process per account (Dovecot's way, with a fork per
//! login): a thread's switch costs four system calls per operation against
//! a process and an IPC hop per command, and tern's shared folder state
//! (one view per folder for every session) would have to be split per
//! process. The price: the async workers themselves stay root, so nothing
//! may touch a Maildir there (all storage calls go through the blocking
//! pool, as they must anyway so that a slow disk never stalls the runtime).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Gid, Uid};

/// An account's uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// The uid.
    pub uid: u32,
    /// The primary (and only) group.
    pub gid: u32,
}

/// Whether this process switches credentials at all (it runs as root and
/// `mail.account_uids` is not `none`).
static SWITCHING: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    static SESSION: Cell<Option<Creds>>;
    /// The session's account's bound on storage work
    /// ([`crate::storage_gate`]).
    static GATE: std::cell::RefCell<Option<std::sync::Arc<tokio::sync::Semaphore>>>;
}

thread_local! {
    /// The credentials the closure this thread runs took ([`run_as`]):
    /// what [`current`] answers there, where the session's task-local is
    /// out of reach (a folder opened from the blocking pool).
    static THREAD: Cell<Option<Creds>> = const { Cell::new(None) };
}

/// Turns switching on: called once at start, when running as root.
pub fn enable() {
    SWITCHING.store(true, Ordering::Release);
}

/// Whether switching is on.
pub fn enabled() -> bool {
    SWITCHING.load(Ordering::Acquire)
}

/// Runs a session's future with a place for its account's credentials.
/// Not an `async fn`, which would hold `f` twice (as its argument and
/// inside the scope it awaits) for the session's whole life.
pub fn scope<F: Future>(f: F) -> impl Future<Output = F::Output> {
    SESSION.scope(
        Cell::new(None),
        GATE.scope(std::cell::RefCell::new(None), f),
    )
}

/// Puts the session's storage calls under its account's bound (at login).
pub fn set_account(account: &str) {
    let gate = crate::storage_gate::for_account(account);
    let _ = GATE.try_with(|g| *g.borrow_mut() = gate);
}

/// Sets the session's account's credentials (at login).
pub fn set(c: Option<Creds>) {
    let _ = SESSION.try_with(|s| s.set(c));
}

/// The session's account's credentials, if the caller is in a session
/// whose account has them, or on a thread running storage work with an
/// account's credentials.
pub fn current() -> Option<Creds> {
    SESSION
        .try_with(Cell::get)
        .ok()
        .flatten()
        .or_else(|| THREAD.with(Cell::get))
}

/// [`tokio::task::spawn_blocking`] with the session's account's
/// credentials, under its account's bound on storage work
/// ([`crate::storage_gate`]): what every storage operation of a session
/// goes through.
pub fn spawn_blocking<F, R>(f: F) -> crate::storage_gate::Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let c = current();
    let gate = GATE.try_with(|g| g.borrow().clone()).ok().flatten();
    crate::storage_gate::spawn(gate, move || run_as(c, f))
}

/// [`tokio::task::spawn_blocking`] with the credentials `c` (a folder's
/// owner, for work no session asked for).
pub fn spawn_blocking_as<F, R>(c: Option<Creds>, f: F) -> crate::storage_gate::Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    crate::storage_gate::spawn(None, move || run_as(c, f))
}

/// Runs `f` on this thread with the credentials `c` (root's for `None`),
/// then gives root's back.
///
/// # Panics
/// When the thread cannot take `c`: the work must not run as root instead.
pub fn run_as<R>(c: Option<Creds>, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let guard = Switched::to(c);
    if let Err(e) = &guard.result {
        // The guard has put the thread back to root; the work is refused.
        panic!("cannot take the account's credentials {c:?}: {e}");
    }
    let r = f();
    drop(guard);
    r
}

/// Credentials taken by this thread, given back (to root) when dropped,
/// with what [`current`] said on this thread before.
struct Switched {
    result: std::io::Result<()>,
    before: Option<Creds>,
}

/// Back to root's effective ids and no supplementary groups; a thread that
/// cannot get there aborts the process rather than go on with an
/// account's credentials.
fn back_to_root() {
    let r = rustix::thread::set_thread_res_uid(None, Some(Uid::ROOT), None)
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Some(Gid::ROOT), None))
        .and_then(|()| rustix::thread::set_thread_groups(&[]));
    if let Err(e) = r {
        tracing::error!(cause = %e, "a thread cannot return to root's credentials; stopping");
        std::process::abort();
    }
}

/// From root's, this thread takes `c`'s effective ids and only its group.
fn take(c: Creds) -> std::io::Result<()> {
    let gid = Gid::from_raw(c.gid);
    rustix::thread::set_thread_groups(&[gid])
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Some(gid), None))
        .and_then(|()| rustix::thread::set_thread_res_uid(None, Some(Uid::from_raw(c.uid)), None))
        .map_err(std::io::Error::from)
}

impl Switched {
    fn to(c: Option<Creds>) -> Switched {
        // Whatever the thread held before (a thread may have been started
        // by one that held an account's), it starts from root's.
        back_to_root();
        let result = match c {
            None => Ok(()),
            Some(c) => {
                let r = take(c);
                if r.is_err() {
                    back_to_root();
                }
                r
            }
        };
        let before = THREAD.with(|t| t.replace(if result.is_ok() { c } else { None }));
        Switched { result, before }
    }
}

impl Drop for Switched {
    /// Back to what the thread held before: root's, or, for work nested in
    /// an account's, that account's again.
    fn drop(&mut self) {
        back_to_root();
        if let Some(p) = self.before {
            if let Err(e) = take(p) {
                tracing::error!(cause = %e, "a thread cannot take back its account's credentials; stopping");
                std::process::abort();
            }
        }
        THREAD.with(|t| t.set(self.before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn a_thread_takes_an_accounts_credentials_and_gives_them_back_nested_or_not() {
        assert_eq!(euid(), 0, "the credential tests run as root, as CI does");
        enable();
        let (a, b) = (
            Creds {
                uid: 4001,
                gid: 4001,
            },
            Creds {
                uid: 4002,
                gid: 4003,
            },
        );
        let seen = run_as(Some(a), || {
            let outer = (euid(), rustix::process::getegid().as_raw(), current());
            let inner = run_as(Some(b), || {
                (euid(), rustix::process::getegid().as_raw(), current())
            });
            (outer, inner, (euid(), current()))
        });
        assert_eq!(seen.0, (4001, 4001, Some(a)));
        assert_eq!(seen.1, (4002, 4003, Some(b)));
        assert_eq!(seen.2, (4001, Some(a)), "back to the outer account");
        assert_eq!((euid(), current()), (0, None), "back to root");
        // The real and saved uids stayed root's all along, and a panic in
        // the work gives the credentials back too.
        let r = std::panic::catch_unwind(|| run_as(Some(a), || panic!("in the work")));
        assert!(r.is_err());
        assert_eq!((euid(), current()), (0, None));
        // A file the work creates is the account's.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(4001), Some(4001)).unwrap();
        let f = dir.path().join("f");
        run_as(Some(a), || std::fs::write(&f, "x")).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (4001, 4001));
        // And the account cannot reach root's 0700 directory.
        let private = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            private.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(private.path().join("secret"), "s").unwrap();
        let p = private.path().join("secret");
        assert!(run_as(Some(b), || std::fs::read(&p)).is_err());
        assert!(std::fs::read(&p).is_ok());
    }
}
