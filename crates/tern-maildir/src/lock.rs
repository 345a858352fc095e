//! An NFS-safe dot-lock that serialises UID assignment between processes.
//!
//! Courier-IMAP (with IMAP_USELOCKS) and Dovecot (`dovecot-uidlist.lock`) take
//! the same kind of lock: a file that only one process can create. tern
//! writes its own file first and links it into place (link(2) is atomic,
//! also over NFS), so a lock never exists without its content. Deliveries never take it; only writers of `courierimapuiddb` and
//! `courierimapkeywords/:list` do, for the few milliseconds a rewrite takes.
//! The lock file holds `<pid> <host>`. A lock whose process is gone from
//! this host, or any lock older than [`STALE_AFTER`], was left by a crashed
//! process and is broken (Dovecot's dot-locks do the same).

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
        // The lock appears with its content or not at all: written to a
        // file of this process first, then linked into place (link(2)
        // fails when the lock exists, also over NFS). A process killed
        // between creating an empty lock and writing its PID would
        // otherwise block everyone until the lock is old enough to break.
        let own = own_file(path);
        let content = format!("{} {}\n", std::process::id(), crate::unique::hostname());
        std::fs::write(&own, content).map_err(|e| MaildirError::io("write lock", &own, e))?;
        let res = Self::link_into_place(&own, path);
        let _ = std::fs::remove_file(&own);
        res
    }

    fn link_into_place(own: &Path, path: &Path) -> Result<DotLock> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match std::fs::hard_link(own, path) {
                Ok(()) => {
                    return Ok(DotLock {
                        path: path.to_owned(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_stale(path) {
                        // Another waiter may break it at the same time; both
                        // then race on the link, which only one wins.
                        let _ = std::fs::remove_file(path);
                        // A crash leaves its process's own file too.
                        remove_dead_own_files(path);
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

/// The file a process writes before linking it to `lock`: beside it, named
/// after the process so that no two writers share one.
fn own_file(lock: &Path) -> PathBuf {
    let name = lock
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    lock.with_file_name(format!(
        "{name}.{}.{}",
        std::process::id(),
        crate::unique::hostname()
    ))
}

/// Removes the files that processes of this host which are gone wrote
/// before linking `lock` (`<lock>.<pid>.<host>`): a process killed between
/// writing its file and removing it leaves one behind. Called only when a
/// stale lock was broken, the sign that some process crashed here.
fn remove_dead_own_files(lock: &Path) {
    let (Some(dir), Some(name)) = (lock.parent(), lock.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let suffix = format!(".{}", crate::unique::hostname());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        let dead = pid.bytes().all(|b| b.is_ascii_digit())
            && !pid.is_empty()
            && !Path::new("/proc").join(pid).exists();
        if dead {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// An empty lock (left by an older tern or another program killed between
/// creating and writing it) older than this is broken.
const EMPTY_STALE_AFTER: Duration = Duration::from_secs(2);

fn is_stale(path: &Path) -> bool {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut f = text.split_whitespace();
        if let (Some(pid), Some(host)) = (f.next(), f.next()) {
            if host == crate::unique::hostname() && !Path::new("/proc").join(pid).exists() {
                return true;
            }
        }
    }
    let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
    let limit = if empty {
        EMPTY_STALE_AFTER
    } else {
        STALE_AFTER
    };
    match std::fs::metadata(path).and_then(|m| m.modified()) {
        Ok(mtime) => SystemTime::now()
            .duration_since(mtime)
            .map(|age| age > limit)
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
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .starts_with(&format!("{} ", std::process::id())));
    }

    #[test]
    fn breaking_a_dead_process_lock_removes_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let host = crate::unique::hostname();
        std::fs::write(&p, format!("2147483646 {host}\n")).unwrap();
        let dead_own = dir.path().join(format!("x.lock.2147483646.{host}"));
        std::fs::write(&dead_own, "2147483646\n").unwrap();
        // A live process's file and another host's are left alone.
        let live_own = dir
            .path()
            .join(format!("x.lock.{}.{host}", std::process::id()));
        let other_host = dir.path().join("x.lock.2147483646.elsewhere");
        std::fs::write(&other_host, "x").unwrap();
        let l = DotLock::acquire(&p).unwrap();
        assert!(!dead_own.exists());
        assert!(other_host.exists());
        assert!(!live_own.exists(), "our own file is removed once linked");
        drop(l);
    }

    #[test]
    fn an_empty_lock_of_a_killed_writer_is_broken_soon() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let f = std::fs::File::create(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(5))
            .unwrap();
        drop(f);
        let start = std::time::Instant::now();
        let l = DotLock::acquire(&p).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(l);
        // Nothing but the lock's own file was ever written beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
