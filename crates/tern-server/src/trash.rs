//! Trash expiry, as Courier's `IMAP_EMPTYTRASH=Trash:7`: at login, the
//! messages that have been in the named folders for more than so many days
//! are removed.
//!
//! Cheap by design: a stamp file in each such folder records the last
//! sweep, and a login within [`SWEEP_EVERY`] of it costs one `stat`. Age is
//! the file's ctime, which a move into the folder (rename or link) sets;
//! the mtime is the message's INTERNALDATE and says nothing about when it
//! was thrown away. A flag change also sets the ctime, which only ever
//! delays a removal, never hastens it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_maildir::folder::MoveNew;
use tern_maildir::{FolderName, Maildir};

use crate::folders::FolderRegistry;

/// The stamp file, inside the folder's directory.
pub const STAMP: &str = "tern-emptytrash";

/// Sweeps of one folder are at least this far apart.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

fn due(stamp: &Path, now: SystemTime) -> bool {
    match std::fs::metadata(stamp).and_then(|m| m.modified()) {
        Ok(t) => now.duration_since(t).map_or(true, |age| age >= SWEEP_EVERY),
        Err(_) => true,
    }
}

/// Removes old messages from the folders of `rules` (name, days) in
/// `maildir`; returns how many. Runs on a blocking thread.
pub fn sweep(registry: &FolderRegistry, maildir: &Maildir, rules: &[(String, u32)]) -> usize {
    let now = SystemTime::now();
    let mut total = 0;
    for (name, days) in rules {
        let Ok(fname) = FolderName::new(name) else {
            continue;
        };
        if !maildir.folder_exists(Some(&fname)) {
            continue;
        }
        let dir = maildir.folder_dir(Some(&fname));
        let stamp = dir.join(STAMP);
        if !due(&stamp, now) {
            continue;
        }
        // Claim the sweep first: concurrent logins of the same user skip it.
        if let Err(e) =
            std::fs::write(&stamp, b"").and_then(|()| tern_maildir::owner::inherit(&stamp))
        {
            tracing::warn!(folder = %dir.display(), cause = %e, "cannot write the trash stamp");
            continue;
        }
        let cutoff = now
            .checked_sub(Duration::from_secs(u64::from(*days) * 86_400))
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let open = registry.get(&dir);
        let view = match open.folder.refresh(MoveNew::No) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(folder = %dir.display(), cause = %e, "trash sweep failed");
                continue;
            }
        };
        let old: Vec<u32> = view
            .messages
            .iter()
            .filter(|m| {
                std::fs::symlink_metadata(m.path(&dir))
                    .is_ok_and(|md| u64::try_from(md.ctime()).unwrap_or(0) < cutoff)
            })
            .map(|m| m.uid)
            .collect();
        if old.is_empty() {
            continue;
        }
        match open.folder.expunge(&old) {
            Ok(removed) => {
                tracing::info!(folder = %dir.display(), removed = removed.len(), days, "old messages removed from trash");
                total += removed.len();
                open.changed.notify_waiters();
            }
            Err(e) => tracing::warn!(folder = %dir.display(), cause = %e, "trash sweep failed"),
        }
    }
    total
}
