//! The process-wide registry of open folders.
//!
//! Every session that opens a folder gets the same [`Folder`] (one scan, one
//! in-memory view for all sessions of all users of this process) and the same
//! change signal, so that a change made by one session wakes the others
//! (IDLE) at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tern_maildir::Folder;
use tokio::sync::Notify;

/// A shared folder and the signal that its contents changed.
#[derive(Debug)]
pub struct OpenFolder {
    /// The folder.
    pub folder: Folder,
    /// Notified after any change made through this process, and (once
    /// [`OpenFolder::watch`] ran) after any change inotify reports in `new/`
    /// or `cur/`, whoever made it.
    pub changed: Notify,
    /// Set once an inotify watcher runs for this folder.
    watching: std::sync::atomic::AtomicBool,
    /// The watcher task, stopped when the folder is dropped.
    watcher: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for OpenFolder {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.watcher.lock() {
            if let Some(h) = slot.take() {
                h.abort();
            }
        }
    }
}

impl OpenFolder {
    /// Starts (once) an inotify watcher on `new/` and `cur/` that wakes the
    /// sessions idling on this folder when another program delivers, renames
    /// or removes a message. Where inotify says nothing (NFS), the periodic
    /// rescan of IDLE remains the safety net. Must run inside the runtime.
    pub fn watch(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let dir = self.folder.dir().to_owned();
        let setup = || -> std::io::Result<inotify::EventStream<[u8; 4096]>> {
            let ino = inotify::Inotify::init()?;
            let mask = inotify::WatchMask::CREATE
                | inotify::WatchMask::MOVED_TO
                | inotify::WatchMask::MOVED_FROM
                | inotify::WatchMask::DELETE;
            ino.watches().add(dir.join("new"), mask)?;
            ino.watches().add(dir.join("cur"), mask)?;
            ino.into_event_stream([0u8; 4096])
        };
        let mut events = match setup() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), cause = %e, "no inotify watch; IDLE falls back to polling");
                return;
            }
        };
        let task = tokio::spawn(async move {
            use futures_util::StreamExt as _;
            while let Some(ev) = events.next().await {
                let Some(open) = weak.upgrade() else { break };
                if ev.is_err() {
                    break;
                }
                open.changed.notify_waiters();
            }
        });
        if let Ok(mut slot) = self.watcher.lock() {
            *slot = Some(task.abort_handle());
        }
    }
}

/// Folders kept open although no session uses them, so that a second
/// SELECT finds the view warm and \Recent survives until someone selects.
const KEEP_IDLE: usize = 256;

/// Path → open folder. Folders in use stay; of the others, those with
/// unclaimed \Recent messages stay and up to [`KEEP_IDLE`] more.
#[derive(Debug, Default)]
pub struct FolderRegistry {
    map: Mutex<HashMap<PathBuf, Arc<OpenFolder>>>,
}

impl FolderRegistry {
    /// The shared folder at `dir`, opened if needed.
    pub fn get(&self, dir: &Path) -> Arc<OpenFolder> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(dir) {
            return f.clone();
        }
        let f = Arc::new(OpenFolder {
            folder: Folder::new(dir.to_owned()),
            changed: Notify::new(),
            watching: std::sync::atomic::AtomicBool::new(false),
            watcher: Mutex::new(None),
        });
        map.insert(dir.to_owned(), f.clone());
        if map.len() > KEEP_IDLE {
            let mut idle = 0;
            map.retain(|_, f| {
                if Arc::strong_count(f) > 1 || f.folder.unclaimed_recent_count() > 0 {
                    return true;
                }
                idle += 1;
                idle <= KEEP_IDLE / 2
            });
        }
        f
    }

    /// Wakes the sessions watching `dir`, if it is open.
    pub fn notify(&self, dir: &Path) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(dir) {
            f.changed.notify_waiters();
        }
    }
}
