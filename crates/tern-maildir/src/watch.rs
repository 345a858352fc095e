//! Whether anyone but this process changed a folder's `cur/` or `new/`
//! since its last scan, told by inotify.
//!
//! A folder's view is exact when the directories' mtimes have not moved
//! since its last scan, but only once that scan started a little after
//! the mtimes (a change in the same clock tick leaves an mtime as it was;
//! see `folder.rs`). A folder this process changes all the time (ten
//! sessions appending, flagging and expunging) therefore never has
//! trusted mtimes, and every SELECT listed the whole folder again: at
//! 2,000 messages that was 40% of the server's time in the stress
//! benchmark. With an inotify watch on both directories, each change this
//! process makes is announced here before its system call
//! ([`WatchState::expect`]); an event that matches no announcement is
//! someone else's change and the next exact refresh scans. A lost watch, a
//! queue overflow or no inotify at all leave the folder to the mtimes, as
//! before; so do folders only listed (STATUS), which hold no watch.
//!
//! Events are read without blocking, under one lock for the process, at
//! each check: the kernel queues an event before the system call that
//! caused it returns, so a change made before a check is seen by it.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::dirs::Dirs;

/// What an event says happened to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Created or moved in.
    Arrived,
    /// Removed or moved out.
    Left,
}

/// One folder's watches and what this process said it would do there.
#[derive(Debug, Default)]
pub struct WatchState {
    inner: Mutex<StateInner>,
}

#[derive(Debug, Default)]
struct StateInner {
    /// Changes this process announced and the kernel has not yet reported.
    expected: HashMap<(Kind, bool, Box<str>), u32>,
    /// A change since the last scan that nobody announced (or a watch
    /// lost, an overflow).
    foreign: bool,
    /// The watches on `cur/` and `new/`, once set.
    wds: Option<(WatchDescriptor, WatchDescriptor)>,
}

/// The process's inotify instance.
struct Hub {
    ino: Inotify,
    watches: Watches,
    by_wd: HashMap<WatchDescriptor, (Weak<WatchState>, bool)>,
    buf: Vec<u8>,
}

static HUB: OnceLock<Option<Mutex<Hub>>> = OnceLock::new();

fn hub() -> Option<&'static Mutex<Hub>> {
    HUB.get_or_init(|| match Inotify::init() {
        Ok(ino) => {
            let watches = ino.watches();
            Some(Mutex::new(Hub {
                ino,
                watches,
                by_wd: HashMap::new(),
                buf: vec![0u8; 64 * 1024],
            }))
        }
        Err(e) => {
            tracing::warn!(cause = %e, "no inotify: folders rely on directory mtimes alone");
            None
        }
    })
    .as_ref()
}

/// Whether this process can watch folders (inotify could be started).
pub fn available() -> bool {
    hub().is_some()
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

impl Hub {
    /// Reads every queued event and settles it against what the folders
    /// announced.
    fn drain(&mut self) {
        loop {
            let events = match self.ino.read_events(&mut self.buf) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(cause = %e, "reading inotify events failed");
                    self.all_foreign();
                    return;
                }
            };
            let mut any = false;
            let mut overflow = false;
            let mut lost = Vec::new();
            for ev in events {
                any = true;
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                let Some((state, in_new)) = self.by_wd.get(&ev.wd) else {
                    continue;
                };
                let Some(state) = state.upgrade() else {
                    continue;
                };
                let mut s = state.lock();
                let kind = if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                    Kind::Arrived
                } else if ev
                    .mask
                    .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                {
                    Kind::Left
                } else {
                    // The directory itself removed or moved, the watch
                    // dropped: nothing can be told any more.
                    s.foreign = true;
                    lost.push(ev.wd.clone());
                    if let Some((c, n)) = s.wds.take() {
                        lost.extend([c, n]);
                    }
                    continue;
                };
                let name = ev.name.map(|n| n.to_string_lossy()).unwrap_or_default();
                let key = (kind, *in_new, Box::<str>::from(name.as_ref()));
                match s.expected.get_mut(&key) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        s.expected.remove(&key);
                    }
                    None => s.foreign = true,
                }
            }
            // The kernel may give a dropped watch's number to the next
            // directory watched: it must not still name this folder.
            for wd in lost {
                if self.by_wd.remove(&wd).is_some() {
                    // The other directory's watch is still live.
                    let _ = self.watches.remove(wd);
                }
            }
            if overflow {
                self.all_foreign();
            }
            if !any {
                return;
            }
        }
    }

    fn all_foreign(&mut self) {
        for (state, _) in self.by_wd.values() {
            if let Some(s) = state.upgrade() {
                s.lock().foreign = true;
            }
        }
    }
}

impl WatchState {
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At the start of a full scan through `dirs`: whatever happened until
    /// now the scan will see, so what was announced or reported is
    /// forgotten; the directories are watched from here on (`watch`), or
    /// no longer. Returns whether they are watched.
    pub fn begin_scan(self: &Arc<Self>, dirs: &Dirs, watch: bool) -> bool {
        // A folder only listed that was never watched has nothing to
        // forget: no process-wide lock, no read (STATUS of a thousand
        // folders).
        if !watch && self.lock().wds.is_none() {
            return false;
        }
        let Some(hub) = hub() else { return false };
        let mut h = hub.lock().unwrap_or_else(|p| p.into_inner());
        h.drain();
        let mut s = self.lock();
        s.expected.clear();
        s.foreign = false;
        // No watch for a folder only listed; nor where inotify reports
        // only this kernel's changes, on a file system other hosts write
        // (NFS, CIFS, a cluster file system): it would call a folder clean
        // that another host changed.
        if !watch || !on_local_file_system(dirs) {
            if let Some((c, n)) = s.wds.take() {
                forget(&mut h, self, c);
                forget(&mut h, self, n);
            }
            return false;
        }
        // The watches go on the very directories the scan reads (their
        // descriptors, not their paths, which a link could redirect).
        let mut add = |fd: i32, in_new: bool| -> Option<WatchDescriptor> {
            let path = format!("/proc/self/fd/{fd}");
            let wd = h.watches.add(&path, MASK).ok()?;
            match h.by_wd.get(&wd).and_then(|(w, _)| w.upgrade()) {
                // The same directory under another folder object (a link):
                // its events could not be told apart.
                Some(other) if !Arc::ptr_eq(&other, self) => None,
                _ => {
                    h.by_wd.insert(wd.clone(), (Arc::downgrade(self), in_new));
                    Some(wd)
                }
            }
        };
        let cur = add(dirs.sub(false).as_raw_fd(), false);
        let new = add(dirs.sub(true).as_raw_fd(), true);
        let old = s.wds.take();
        s.wds = match (cur, new) {
            (Some(c), Some(n)) => Some((c, n)),
            _ => None,
        };
        // Watches of directories this folder no longer has (deleted and
        // created again) are dropped.
        if let Some((c, n)) = old {
            for wd in [c, n] {
                let kept = s.wds.as_ref().is_some_and(|(a, b)| *a == wd || *b == wd);
                if !kept {
                    forget(&mut h, self, wd);
                }
            }
        }
        s.wds.is_some()
    }

    /// Announces a change this process is about to make in `new/`
    /// (`in_new`) or `cur/`.
    fn expect(&self, kind: Kind, in_new: bool, name: &str) {
        let mut s = self.lock();
        if s.wds.is_some() {
            *s.expected
                .entry((kind, in_new, Box::from(name)))
                .or_insert(0) += 1;
        }
    }

    /// Announces a file arriving in `new/` or `cur/`.
    pub fn expect_arrival(&self, in_new: bool, name: &str) {
        self.expect(Kind::Arrived, in_new, name);
    }

    /// Announces a file leaving `new/` or `cur/`.
    pub fn expect_departure(&self, in_new: bool, name: &str) {
        self.expect(Kind::Left, in_new, name);
    }

    /// Whether both directories are watched and every change in them
    /// since the last scan was this process's own.
    pub fn clean(&self) -> bool {
        let Some(hub) = hub() else { return false };
        if self.lock().wds.is_none() {
            return false;
        }
        hub.lock().unwrap_or_else(|p| p.into_inner()).drain();
        let s = self.lock();
        s.wds.is_some() && !s.foreign
    }
}

/// Whether `dirs` lie on a file system only this machine writes: one of
/// the local kinds by its magic number (`statfs(2)`); anything else
/// (NFS, CIFS, FUSE, Ceph, GFS2, OCFS2, Lustre, 9P...) is left to the mtimes.
fn on_local_file_system(dirs: &Dirs) -> bool {
    const LOCAL: [i64; 7] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x2FC1_2FC1, // zfs
        0xF2F5_2010, // f2fs
        0x794C_7630, // overlayfs
    ];
    match rustix::fs::fstatfs(dirs.sub(false)) {
        // `f_type` is an i64 here and narrower on other targets.
        #[allow(clippy::useless_conversion)]
        Ok(st) => LOCAL.contains(&i64::from(st.f_type)),
        Err(_) => false,
    }
}

/// Drops `wd` if it is `state`'s.
fn forget(h: &mut Hub, state: &Arc<WatchState>, wd: WatchDescriptor) {
    let ours = h
        .by_wd
        .get(&wd)
        .is_some_and(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(state)));
    if ours {
        h.by_wd.remove(&wd);
        let _ = h.watches.remove(wd);
    }
}

impl Drop for WatchState {
    fn drop(&mut self) {
        let Some(wds) = self.lock().wds.take() else {
            return;
        };
        let Some(hub) = hub() else { return };
        let mut h = hub.lock().unwrap_or_else(|p| p.into_inner());
        for wd in [wds.0, wds.1] {
            // Only while no other folder took this watch over (dead
            // entries, whose Weak no longer upgrades, are ours).
            let dead = h.by_wd.get(&wd).is_some_and(|(w, _)| w.strong_count() == 0);
            if dead {
                h.by_wd.remove(&wd);
                let _ = h.watches.remove(wd);
            }
        }
    }
}
