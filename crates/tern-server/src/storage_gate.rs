//! Bounds on one account's storage work: how many blocking calls it may
//! have at once, and how long a session waits for one.
//!
//! Every storage call runs on tokio's blocking pool, which has a fixed
//! number of threads (`limits.blocking_threads`). A call can be stuck in
//! the kernel for as long as the storage wants (an NFS server gone, a lock
//! another program holds for 45 s): without a bound, the sessions of one
//! account with a slow Maildir would take every thread and every other
//! account would wait. So each logged-in account has a semaphore of
//! `limits.max_storage_jobs_per_account` permits, and a call waits for a
//! permit asynchronously (on no thread) before it takes a thread. And a
//! session waits at most `limits.storage_timeout_secs` for a call: then it
//! answers `NO [UNAVAILABLE]` and goes on; a call that had not started by
//! then never runs, one that had runs to its end, holding its permit.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Why a storage call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    /// The call panicked or the runtime is going away.
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// No answer within the configured time (the call may still finish).
    #[error("storage did not answer within {0:?}")]
    TimedOut(Duration),
}

impl BlockingError {
    /// Whether the storage was too slow (rather than a failure of tern).
    pub fn timed_out(&self) -> bool {
        matches!(self, BlockingError::TimedOut(_))
    }
}

/// As an I/O error, for the paths that carry one: a timeout keeps its kind
/// ([`std::io::ErrorKind::TimedOut`]), which
/// [`crate::imap::session::io_reply`] answers `NO [UNAVAILABLE]`.
impl From<BlockingError> for std::io::Error {
    fn from(e: BlockingError) -> Self {
        let kind = if e.timed_out() {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, e)
    }
}

/// The per-account semaphores and the time limit.
struct Gates {
    per_account: usize,
    timeout: Duration,
    map: Mutex<HashMap<String, Weak<Semaphore>>>,
}

static GATES: OnceLock<Gates> = OnceLock::new();

/// Sets the limits (once, at start; later calls change nothing).
pub fn configure(per_account: usize, timeout: Duration) {
    let _ = GATES.set(Gates {
        per_account: per_account.max(1),
        timeout,
        map: Mutex::new(HashMap::new()),
    });
}

/// How long a session waits for a storage call (`None`: no limit set).
pub fn timeout() -> Option<Duration> {
    GATES.get().map(|g| g.timeout)
}

/// The semaphore of `account`, shared by all its sessions while any holds
/// it (`None` when no limits are configured: `tern imapd`, tests of the
/// library).
pub fn for_account(account: &str) -> Option<Arc<Semaphore>> {
    let g = GATES.get()?;
    let mut map = g.map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = map.get(account).and_then(Weak::upgrade) {
        return Some(s);
    }
    // Forget accounts no session holds any more, now and then, so the map
    // stays as large as the accounts logged in.
    if map.len() >= 1024 && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let s = Arc::new(Semaphore::new(g.per_account));
    map.insert(account.to_owned(), Arc::downgrade(&s));
    Some(s)
}

enum Inner<R> {
    Direct(tokio::task::JoinHandle<R>),
    Gated(tokio::task::JoinHandle<Option<Result<R, tokio::task::JoinError>>>),
}

/// A storage call under way: a future of its result.
pub struct Blocking<R> {
    inner: Inner<R>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
    /// Set when the caller stops waiting: a gated call not started yet is
    /// then never run.
    abandoned: Arc<AtomicBool>,
}

/// Runs `f` on the blocking pool, first waiting (on no thread) for a permit
/// of `gate` when there is one.
pub fn spawn<F, R>(gate: Option<Arc<Semaphore>>, f: F) -> Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let abandoned = Arc::new(AtomicBool::new(false));
    let inner = match gate {
        None => Inner::Direct(tokio::task::spawn_blocking(f)),
        // A permit free now (the usual case): straight to the pool, with
        // no task in between (a hop each call would cost FETCH's many
        // small jobs measurably).
        Some(gate) => match gate.clone().try_acquire_owned() {
            Ok(permit) => Inner::Direct(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                f()
            })),
            Err(_) => wait_then_spawn(gate, abandoned.clone(), f),
        },
    };
    let timeout = timeout().unwrap_or(Duration::ZERO);
    Blocking {
        inner,
        deadline: (!timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(timeout))),
        timeout,
        abandoned,
    }
}

/// The slow path of [`spawn`]: a task waits for a permit, then runs `f`
/// on the pool unless the caller stopped waiting meanwhile.
fn wait_then_spawn<F, R>(gate: Arc<Semaphore>, gone: Arc<AtomicBool>, f: F) -> Inner<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Inner::Gated(tokio::spawn(async move {
        // The semaphore is never closed; a closed one would mean no limit
        // rather than no work.
        let permit = gate.acquire_owned().await.ok();
        if gone.load(Ordering::Acquire) {
            return None;
        }
        Some(
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                f()
            })
            .await,
        )
    }))
}

impl<R> std::fmt::Debug for Blocking<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("gated", &matches!(self.inner, Inner::Gated(_)))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<R> Future for Blocking<R> {
    type Output = Result<R, BlockingError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let done = match &mut this.inner {
            Inner::Direct(h) => match Pin::new(h).poll(cx) {
                Poll::Ready(r) => Some(r.map_err(BlockingError::from)),
                Poll::Pending => None,
            },
            Inner::Gated(h) => match Pin::new(h).poll(cx) {
                Poll::Ready(Ok(Some(r))) => Some(r.map_err(BlockingError::from)),
                // Only when abandoned, which a polled future is not.
                Poll::Ready(Ok(None)) => Some(Err(BlockingError::TimedOut(this.timeout))),
                Poll::Ready(Err(e)) => Some(Err(BlockingError::from(e))),
                Poll::Pending => None,
            },
        };
        if let Some(r) = done {
            return Poll::Ready(r);
        }
        if let Some(d) = &mut this.deadline {
            if d.as_mut().poll(cx).is_ready() {
                this.abandoned.store(true, Ordering::Release);
                tracing::warn!(timeout = ?this.timeout, "a storage call did not answer in time");
                return Poll::Ready(Err(BlockingError::TimedOut(this.timeout)));
            }
        }
        Poll::Pending
    }
}

impl<R> Drop for Blocking<R> {
    fn drop(&mut self) {
        // A caller that went away (a closed connection) does not want the
        // work done if it has not begun.
        self.abandoned.store(true, Ordering::Release);
    }
}
