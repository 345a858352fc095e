//! An NFS-safe dot-lock that serialises UID assignment between processes.
//!
//! A folder is locked twice, always in this order: Courier-IMAP's own
//! `tmp/courier.lock` (so that Courier's imapd serving the same Maildir at
//! the same time waits for tern, and tern for it), then tern's
//! `courierimapuiddb.lock` (which earlier tern versions take alone).
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

/// Courier-IMAP's lock of a folder, relative to the folder's directory:
/// its imapd holds it around reading and rewriting `courierimapuiddb`
/// (courier-libs maildir/maildirwatch.h `WATCHDOTLOCK`, taken in
/// maildirlock.C with liblock's `ll_dotlock`; seen with strace around an
/// APPEND of Debian's imapd).
pub const COURIER_LOCK: &str = "tmp/courier.lock";

/// Courier's liblock breaks a lock of another host once it is this old
/// (maildirlock.C `LOCK_TIMEOUT`); tern does the same for that lock.
pub const COURIER_STALE_AFTER: Duration = Duration::from_secs(120);

/// Whose format a lock file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `<pid> <host>\n`, broken after [`STALE_AFTER`].
    Tern,
    /// `<pid>:<host>` as liblock writes it, so that Courier can tell a dead
    /// tern from a live one; broken after [`COURIER_STALE_AFTER`].
    Courier,
}

/// A held dot-lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
}

impl DotLock {
    /// Takes Courier-IMAP's lock of the folder at `dir`
    /// ([`COURIER_LOCK`]), as its imapd does, so that tern and Courier
    /// serving one Maildir at the same time never number messages at once.
    ///
    /// # Errors
    /// As [`DotLock::acquire`].
    pub fn acquire_courier(dir: &Path) -> Result<DotLock> {
        let path = dir.join(COURIER_LOCK);
        // tmp/ is opened as every use of it is (never through a link), and
        // made when some other program made the folder without it (Courier
        // would fail here; tern goes on). The folder directory itself was
        // checked by whoever holds it. A link swapped in after this check
        // could take only the lock file elsewhere, never a message.
        crate::tmp::TmpDir::open(dir, true).map_err(|e| {
            if crate::dirs::is_link_refusal(&e) {
                tracing::warn!(dir = %dir.display(), "refusing to lock a folder whose tmp/ is a symbolic link");
            }
            MaildirError::io("open", dir.join("tmp"), e)
        })?;
        Self::acquire_styled(&path, Style::Courier)
    }

    /// Takes one of Dovecot's dot-locks (`dovecot-keywords.lock`): Dovecot
    /// writes `<pid>:<host>` as liblock does and breaks such a lock after
    /// 120 s, as Courier's, so the same style serves both.
    ///
    /// # Errors
    /// As [`DotLock::acquire`].
    pub fn acquire_dovecot(path: &Path) -> Result<DotLock> {
        Self::acquire_styled(path, Style::Courier)
    }

    /// Takes the lock `path`, waiting for another holder up to [`MAX_WAIT`].
    ///
    /// # Errors
    /// [`MaildirError::LockTimeout`] when the lock stays held, or an I/O error.
    pub fn acquire(path: &Path) -> Result<DotLock> {
        Self::acquire_styled(path, Style::Tern)
    }

    fn acquire_styled(path: &Path, style: Style) -> Result<DotLock> {
        // The lock appears with its content or not at all: written to a
        // file of this process first, then linked into place (link(2)
        // fails when the lock exists, also over NFS). A process killed
        // between creating an empty lock and writing its PID would
        // otherwise block everyone until the lock is old enough to break.
        let own = own_file(path);
        let content = match style {
            Style::Tern => format!("{} {}\n", std::process::id(), crate::unique::hostname()),
            Style::Courier => format!("{}:{}", std::process::id(), crate::unique::raw_hostname()),
        };
        std::fs::write(&own, content)
            .and_then(|()| crate::owner::inherit(&own))
            .map_err(|e| MaildirError::io("write lock", &own, e))?;
        let res = Self::link_into_place(&own, path, style);
        let _ = std::fs::remove_file(&own);
        res
    }

    fn link_into_place(own: &Path, path: &Path, style: Style) -> Result<DotLock> {
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
                    if is_stale(path, style) {
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

/// Whether the lock at `path` was left by a process that is gone: one of
/// this host whose PID no longer runs (either format: `<pid> <host>` or
/// Courier's `<pid>:<host>`), or any lock older than its style's limit.
fn is_stale(path: &Path, style: Style) -> bool {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut f = text.split(|c: char| c == ':' || c.is_whitespace());
        if let (Some(pid), Some(host)) = (f.next(), f.next()) {
            let here = host == crate::unique::hostname() || host == crate::unique::raw_hostname();
            let pid_ok = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
            if here && pid_ok && !Path::new("/proc").join(pid).exists() {
                return true;
            }
        }
    }
    let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
    let limit = match (empty, style) {
        (true, _) => EMPTY_STALE_AFTER,
        (false, Style::Tern) => STALE_AFTER,
        (false, Style::Courier) => COURIER_STALE_AFTER,
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
    fn courier_lock_in_a_folder_without_tmp() {
        let dir = tempfile::tempdir().unwrap();
        drop(DotLock::acquire_courier(dir.path()).unwrap());
        assert!(dir.path().join("tmp").is_dir());
    }

    #[test]
    fn courier_lock_is_courier_s_file_in_its_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let l = DotLock::acquire_courier(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("tmp/courier.lock")).unwrap();
        assert_eq!(
            text,
            format!("{}:{}", std::process::id(), crate::unique::raw_hostname())
        );
        drop(l);
        assert!(!dir.path().join("tmp/courier.lock").exists());
        // A lock Courier's imapd left when it died on this host is broken;
        // a live one is waited for.
        let host = crate::unique::raw_hostname();
        std::fs::write(
            dir.path().join("tmp/courier.lock"),
            format!("2147483646:{host}"),
        )
        .unwrap();
        drop(DotLock::acquire_courier(dir.path()).unwrap());
        std::fs::write(
            dir.path().join("tmp/courier.lock"),
            format!("{}:{host}", std::process::id()),
        )
        .unwrap();
        assert!(!is_stale(
            &dir.path().join("tmp/courier.lock"),
            Style::Courier
        ));
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
