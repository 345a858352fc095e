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
    /// Notified after any change made through this process.
    pub changed: Notify,
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
