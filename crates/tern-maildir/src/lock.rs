//! An NFS-safe dot-lock that serialises UID assignment between processes.
//!
//! Courier-IMAP (with IMAP_USELOCKS) and Dovecot (`dovecot-uidlist.lock`) take
//! the same kind of lock: a file created with `O_EXCL`, which NFSv3 and later
//! honour. Deliveries never take it; only writers of `courierimapuiddb` and
//! `courierimapkeywords/:list` do, for the few milliseconds a rewrite takes.
//! The lock file holds `<pid> <host>`. A lock whose process is gone from
//! this host, or any lock older than [`STALE_AFTER`], was left by a crashed
//! process and is broken (Dovecot's dot-locks do the same).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{MaildirError, Result};

/// A lock file older than this is taken to be left by a crashed process.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How long [`DotLock::acquire`] waits before it gives up: longer than
/// [`STALE_AFTER`], so that a stale lock from another host is broken in time.
pub const MAX_WAIT: Duration = Duration::from_secs(45);

/// A held dot-lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
}

impl DotLock {
    /// Takes the lock `path`, waiting for another holder up to [`MAX_WAIT`].
    ///
    /// # Errors
    /// [`MaildirError::LockTimeout`] when the lock stays held, or an I/O error.
    pub fn acquire(path: &Path) -> Result<DotLock> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    // The content only helps an operator who finds a stale lock.
                    let _ = writeln!(f, "{} {}", std::process::id(), crate::unique::hostname());
                    return Ok(DotLock {
                        path: path.to_owned(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_stale(path) {
                        // Another waiter may break it at the same time; both
                        // then race on create_new, which only one wins.
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if start.elapsed() > MAX_WAIT {
                        return Err(MaildirError::LockTimeout(path.to_owned()));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(MaildirError::io("create lock", path, e)),
            }
        }
    }
}

fn is_stale(path: &Path) -> bool {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut f = text.split_whitespace();
        if let (Some(pid), Some(host)) = (f.next(), f.next()) {
            if host == crate::unique::hostname() && !Path::new("/proc").join(pid).exists() {
                return true;
            }
        }
    }
    match std::fs::metadata(path).and_then(|m| m.modified()) {
        Ok(mtime) => SystemTime::now()
            .duration_since(mtime)
            .map(|age| age > STALE_AFTER)
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let l = DotLock::acquire(&p).unwrap();
        let p2 = p.clone();
        let t = std::thread::spawn(move || DotLock::acquire(&p2).map(|_| ()));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        drop(l);
        t.join().unwrap().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn lock_of_a_dead_process_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        // PID 0x7ffffffe is never a live process.
        std::fs::write(&p, format!("2147483646 {}\n", crate::unique::hostname())).unwrap();
        let start = std::time::Instant::now();
        let _l = DotLock::acquire(&p).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
