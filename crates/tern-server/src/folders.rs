//! The process-wide registry of open folders, and what wakes the sessions
//! idling on them.
//!
//! Every session that opens a folder gets the same [`Folder`] (one scan, one
//! in-memory view for all sessions of all users of this process) and the same
//! change signal, so that a change made by one session wakes the others
//! (IDLE) at once.
//!
//! ```text
//!   change through tern ─────────────────────────┐
//!   inotify (one instance, 2 watches per folder) ─┼─► OpenFolder::changed ─► idling sessions
//!   safety-net rescan (one timer per folder)  ────┘
//! ```
//! Changes by other programs arrive through one inotify instance for the
//! whole process (the kernel allows only 128 instances per user by default,
//! and a server idles on thousands of folders). Where inotify says nothing
//! (NFS written by other hosts), a rescan per watched folder every
//! `limits.idle_check_interval_secs` (or `limits.poll_interval_ms` when
//! inotify is unavailable) is the safety net. Sessions hold no timers of
//! their own: 10,000 idle sessions cost nothing while nothing changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use inotify::{WatchDescriptor, WatchMask, Watches};
use tern_maildir::folder::MoveNew;
use tern_maildir::Folder;
use tokio::sync::Notify;

/// Default safety-net rescan while inotify works (Dovecot's
/// `mailbox_idle_check_interval` is 30 s as well).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Default rescan interval where inotify cannot be used.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The process's one inotify instance and the folders its watches belong to.
struct Watcher {
    watches: Mutex<Watches>,
    by_wd: Mutex<HashMap<WatchDescriptor, Weak<OpenFolder>>>,
}

impl Watcher {
    /// Starts the instance and the task that reads it. Must run inside the
    /// runtime; `None` when inotify is not available.
    fn start() -> Option<Arc<Watcher>> {
        let ino = match inotify::Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(cause = %e, "no inotify; IDLE falls back to polling");
                return None;
            }
        };
        let watches = ino.watches();
        let mut events = match ino.into_event_stream(vec![0u8; 64 * 1024]) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(cause = %e, "no inotify stream; IDLE falls back to polling");
                return None;
            }
        };
        let w = Arc::new(Watcher {
            watches: Mutex::new(watches),
            by_wd: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&w);
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            while let Some(ev) = events.next().await {
                let Ok(ev) = ev else { break };
                let Some(w) = weak.upgrade() else { break };
                let target = {
                    let map = w.by_wd.lock().unwrap_or_else(|p| p.into_inner());
                    map.get(&ev.wd).and_then(Weak::upgrade)
                };
                if let Some(open) = target {
                    open.changed.notify_waiters();
                }
            }
            tracing::warn!("inotify stream ended");
        });
        Some(w)
    }
}

/// What the folders of one registry share.
struct Hub {
    watcher: OnceLock<Option<Arc<Watcher>>>,
    check_interval: Duration,
    poll_interval: Duration,
}

impl Hub {
    fn watcher(&self) -> Option<&Arc<Watcher>> {
        self.watcher.get_or_init(Watcher::start).as_ref()
    }
}

/// A shared folder and the signal that its contents changed.
pub struct OpenFolder {
    /// The folder.
    pub folder: Folder,
    /// Notified after any change made through this process, and (once
    /// [`OpenFolder::watch`] ran) after any change inotify or the rescan
    /// finds, whoever made it.
    pub changed: Notify,
    /// UIDLs and sizes of the last POP3 login (INBOX only).
    pub pop3: tern_maildir::pop3list::Pop3Cache,
    /// ENVELOPE, BODYSTRUCTURE and sort fields of the messages.
    pub summaries: crate::summaries::SummaryCache,
    hub: Arc<Hub>,
    /// The inotify watches of `new/` and `cur/`, once watched.
    wds: Mutex<Option<Vec<WatchDescriptor>>>,
    /// The rescan task, stopped when the folder is dropped.
    checker: Mutex<Option<tokio::task::AbortHandle>>,
    /// When a session last opened it.
    last_used: Mutex<Instant>,
    /// Whose credentials the work no session asks for (rescans, cache
    /// writes) runs with: those of the session that opened it.
    pub owner: Option<crate::creds::Creds>,
}

impl std::fmt::Debug for OpenFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFolder")
            .field("dir", &self.folder.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for OpenFolder {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.checker.lock() {
            if let Some(h) = slot.take() {
                h.abort();
            }
        }
        let wds = self.wds.lock().ok().and_then(|mut w| w.take());
        let (Some(wds), Some(Some(w))) = (wds, self.hub.watcher.get()) else {
            return;
        };
        let mut map = w.by_wd.lock().unwrap_or_else(|p| p.into_inner());
        for wd in wds {
            // The same path opened again gets the same descriptor: only a
            // watch that still belongs to this (dying) folder is removed.
            if map.get(&wd).is_some_and(|f| f.strong_count() == 0) {
                map.remove(&wd);
                let _ = w
                    .watches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(wd);
            }
        }
    }
}

impl OpenFolder {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Starts (once) watching the folder for changes by other programs:
    /// inotify on `new/` and `cur/`, and the safety-net rescan. Must run
    /// inside the runtime.
    pub fn watch(self: &Arc<Self>) {
        {
            let mut wds = self.wds.lock().unwrap_or_else(|p| p.into_inner());
            if wds.is_some() {
                return;
            }
            *wds = Some(Vec::new());
        }
        let mut interval = self.hub.poll_interval;
        if let Some(w) = self.hub.watcher() {
            let dir = self.folder.dir();
            let mask =
                WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM | WatchMask::DELETE;
            let mut added = Vec::new();
            {
                let mut watches = w.watches.lock().unwrap_or_else(|p| p.into_inner());
                for sub in ["new", "cur"] {
                    match watches.add(dir.join(sub), mask) {
                        Ok(wd) => added.push(wd),
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), cause = %e, "no inotify watch; IDLE falls back to polling");
                        }
                    }
                }
            }
            if added.len() == 2 {
                interval = self.hub.check_interval;
            }
            let mut map = w.by_wd.lock().unwrap_or_else(|p| p.into_inner());
            for wd in &added {
                map.insert(wd.clone(), Arc::downgrade(self));
            }
            *self.wds.lock().unwrap_or_else(|p| p.into_inner()) = Some(added);
        }
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(open) = weak.upgrade() else { break };
                // The registry and this task hold references; anyone else
                // is a session that may be waiting.
                if Arc::strong_count(&open) <= 2 {
                    continue;
                }
                let o = open.clone();
                let changed = crate::creds::spawn_blocking_as(open.owner, move || {
                    let before = o.folder.view();
                    o.folder
                        .refresh(MoveNew::No)
                        .map(|after| !Arc::ptr_eq(&before, &after))
                        .unwrap_or(true)
                })
                .await
                .unwrap_or(false);
                if changed {
                    open.changed.notify_waiters();
                }
            }
        });
        *self.checker.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }
}

/// Folders kept open although no session uses them, so that a second
/// SELECT finds the view warm and \Recent survives until someone selects.
const KEEP_IDLE: usize = 256;

/// A folder nobody has used for this long gives back the memory of its
/// summaries (they stay in `tern.cache`): a webmail that logs in for every
/// page finds them warm, a folder read once a day does not hold them.
const SUMMARIES_IDLE: Duration = Duration::from_secs(120);

/// How often [`FolderRegistry::get`] looks for such folders.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Path → open folder. Folders in use stay; of the others, those with
/// unclaimed \Recent messages stay and up to [`KEEP_IDLE`] more.
pub struct FolderRegistry {
    map: Mutex<HashMap<PathBuf, Arc<OpenFolder>>>,
    hub: Arc<Hub>,
    last_sweep: Mutex<Instant>,
    /// The size above which the next eviction pass runs.
    evict_at: Mutex<usize>,
}

impl std::fmt::Debug for FolderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderRegistry").finish_non_exhaustive()
    }
}

impl Default for FolderRegistry {
    fn default() -> Self {
        FolderRegistry::new(DEFAULT_CHECK_INTERVAL, DEFAULT_POLL_INTERVAL)
    }
}

impl FolderRegistry {
    /// A registry whose watched folders are rescanned every
    /// `check_interval` while inotify works, else every `poll_interval`.
    pub fn new(check_interval: Duration, poll_interval: Duration) -> FolderRegistry {
        FolderRegistry {
            map: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
            evict_at: Mutex::new(KEEP_IDLE),
            hub: Arc::new(Hub {
                watcher: OnceLock::new(),
                check_interval,
                poll_interval,
            }),
        }
    }

    /// The shared folder at `dir`, opened if needed.
    ///
    /// Called on the runtime's workers, so it never waits for a folder: the
    /// registry's lock is held only for map work, a busy folder is kept
    /// rather than asked, and the periodic sweep runs on the blocking pool.
    pub fn get(&self, dir: &Path) -> Arc<OpenFolder> {
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.elapsed() >= SWEEP_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            let unused = self.unused(SUMMARIES_IDLE);
            let unload = move || {
                for f in unused {
                    crate::creds::run_as(f.owner, || f.summaries.unload(&f.folder));
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(unload)),
                Err(_) => unload(),
            }
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(dir) {
            f.touch();
            return f.clone();
        }
        let f = Arc::new(OpenFolder {
            folder: Folder::new(dir.to_owned()),
            changed: Notify::new(),
            pop3: Default::default(),
            summaries: Default::default(),
            hub: self.hub.clone(),
            wds: Mutex::new(None),
            checker: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            owner: crate::creds::current(),
        });
        map.insert(dir.to_owned(), f.clone());
        let mut evict_at = self.evict_at.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > (*evict_at).max(KEEP_IDLE) {
            let mut idle = 0;
            map.retain(|_, f| {
                // In use, busy (kept rather than waited for), or holding
                // \Recent messages nobody has claimed: kept.
                if Arc::strong_count(f) > 1
                    || f.folder.try_unclaimed_recent_count().is_none_or(|n| n > 0)
                {
                    return true;
                }
                idle += 1;
                idle <= KEEP_IDLE / 2
            });
            // The next pass only after as many more folders again: with
            // thousands of folders in use, a pass per lookup would walk
            // them all every time.
            *evict_at = map.len() + KEEP_IDLE / 2;
        }
        f
    }

    /// The folders no session has used for `idle`.
    fn unused(&self, idle: Duration) -> Vec<Arc<OpenFolder>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|f| Arc::strong_count(f) == 1 && f.idle_for() >= idle)
            .cloned()
            .collect()
    }

    /// Drops from memory the summaries of the folders no session has used
    /// for `idle` (they are written to `tern.cache` first if new ones were
    /// made). Blocking: writing a large cache takes a while.
    pub fn sweep(&self, idle: Duration) {
        // Outside the registry's lock.
        for f in self.unused(idle) {
            f.summaries.unload(&f.folder);
        }
    }

    /// Wakes the sessions watching `dir`, if it is open.
    pub fn notify(&self, dir: &Path) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(dir) {
            f.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_maildir::folder::MoveNew;

    /// A folder that is busy (here: waiting for its UID lock, held by
    /// another process) never makes a lookup of another folder wait, even
    /// when the registry is full and evicts.
    #[test]
    fn a_busy_folder_never_stalls_lookups_of_others() {
        let base = tempfile::tempdir().unwrap();
        let mk = |n: usize| {
            let d = base.path().join(format!("f{n}"));
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(d.join(sub)).unwrap();
            }
            d
        };
        let reg = Arc::new(FolderRegistry::default());
        let busy_dir = mk(0);
        // Another live process (this one) holds the folder's lock.
        let lock = busy_dir.join(tern_maildir::folder::LOCK_NAME);
        std::fs::write(
            &lock,
            format!(
                "{} {}\n",
                std::process::id(),
                tern_maildir::unique::hostname()
            ),
        )
        .unwrap();
        let busy = reg.get(&busy_dir);
        let b = busy.clone();
        let waiting = std::thread::spawn(move || b.folder.refresh(MoveNew::No).map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        drop(busy);
        // Fill the registry past its limit: every lookup returns while the
        // busy folder still waits for its lock.
        for n in 1..=(KEEP_IDLE + 50) {
            drop(reg.get(&mk(n)));
        }
        assert!(!waiting.is_finished(), "the busy folder waited all along");
        assert!(
            reg.map.lock().unwrap().contains_key(&busy_dir),
            "busy: kept"
        );
        std::fs::remove_file(&lock).unwrap();
        waiting.join().unwrap().unwrap();
    }

    /// A folder nobody uses gives back its summaries' memory; they are
    /// on disk and come back on the next use.
    #[test]
    fn idle_folders_give_back_their_summaries() {
        let dir = crate::test_support::maildir_with_one_message("kept");
        let reg = FolderRegistry::default();
        let open = reg.get(dir.path());
        let view = open.folder.refresh(MoveNew::No).unwrap();
        let s = open.summaries.get(&open.folder, &view.messages[0]).unwrap();
        assert_eq!(s.subject(), "kept");
        assert_eq!(open.summaries.len(), 1);
        // In use: kept, however long.
        reg.sweep(Duration::ZERO);
        assert_eq!(open.summaries.len(), 1);
        drop(open);
        reg.sweep(Duration::ZERO);
        let open = reg.get(dir.path());
        assert!(open.summaries.is_empty());
        let cache = dir.path().join(crate::summaries::FILE);
        for _ in 0..200 {
            if cache.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(cache.exists(), "written before it was dropped");
        let s = open.summaries.get(&open.folder, &view.messages[0]).unwrap();
        assert_eq!(s.subject(), "kept");
    }
}
