//! A folder's `cur/` and `new/`, held open and reached without following
//! links.
//!
//! tern may serve every account from one system user (`vmail`), so the
//! kernel cannot keep a user who can write into their own Maildir (a shell,
//! FTP, a webmail upload) from planting `INBOX.x/cur -> ../../bob/Maildir/cur`:
//! every path tern built as `folder/cur/name` would then read, rename and
//! unlink bob's mail. So the two directories that hold messages are opened
//! once per scan with `O_NOFOLLOW` (and the folder directory too, unless it
//! is the Maildir root, which the operator may link), and every message
//! operation afterwards is relative to those descriptors (`openat`,
//! `renameat`, `unlinkat`, `statat`, `linkat`). A link swapped in after the
//! scan changes nothing: the descriptors still name the directories that
//! were checked, and the next scan refuses the link.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

use crate::watch::WatchState;

/// Whether a Maildir root may be a symbolic link (`mail.linked_maildir`).
static LINKED_ROOTS: AtomicBool = AtomicBool::new(false);

/// Lets Maildir roots be symbolic links (`~/Maildir -> /srv/mail/alice`),
/// or not. Off by default: a user who can write their home directory could
/// otherwise point `~/Maildir` at another account's. Set once at startup
/// from the configuration; folders below a root are never links.
pub fn allow_linked_roots(yes: bool) {
    LINKED_ROOTS.store(yes, Ordering::Relaxed);
}

/// Whether [`allow_linked_roots`] was given `true`.
pub fn linked_roots_allowed() -> bool {
    LINKED_ROOTS.load(Ordering::Relaxed)
}

/// The open `cur/` and `new/` of one folder.
#[derive(Debug)]
pub struct Dirs {
    cur: OwnedFd,
    new: OwnedFd,
    /// The inode numbers of `cur/` and `new/`: a writer compares them with
    /// what the paths name now, and opens again when a folder was deleted
    /// and created again under the same name.
    inodes: (u64, u64),
    /// Where each change made through these is announced, so that the
    /// folder's inotify watch tells it from someone else's ([`crate::watch`]).
    watch: Option<Arc<WatchState>>,
}

/// What [`Dirs::stat`] tells of a message file.
#[derive(Debug, Clone, Copy)]
pub struct FileStat {
    /// Its length.
    pub len: u64,
    /// Its mtime, in seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Whether it is a regular file (not a link, FIFO or directory).
    pub regular: bool,
}

/// Whether an open with `O_NOFOLLOW` (and `O_DIRECTORY`) failed because
/// the name is a symbolic link: `ELOOP`, `ENOTDIR` for a directory open,
/// `EMLINK` on some BSD-derived systems.
pub fn is_link_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EMLINK)
    )
}

/// Opens the directory `name` (relative to `at`), refusing a link there
/// with `nofollow`.
pub(crate) fn open_dir(at: impl AsFd, name: &Path, nofollow: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    Ok(rustix::fs::openat(at, name, flags, Mode::empty())?)
}

impl Dirs {
    /// Opens `dir/cur` and `dir/new`, refusing a link at either, and at
    /// `dir` itself unless `dir_may_be_link` (the Maildir root).
    ///
    /// # Errors
    /// I/O errors; a link gives `ELOOP` (or `ENOTDIR`).
    pub fn open(dir: &Path, dir_may_be_link: bool) -> std::io::Result<Dirs> {
        let base = open_dir(CWD, dir, !dir_may_be_link)?;
        let cur = open_dir(&base, Path::new("cur"), true)?;
        let new = open_dir(&base, Path::new("new"), true)?;
        let inodes = (
            rustix::fs::fstat(&cur)?.st_ino,
            rustix::fs::fstat(&new)?.st_ino,
        );
        Ok(Dirs {
            cur,
            new,
            inodes,
            watch: None,
        })
    }

    /// These directories, with each change made through them announced to
    /// `watch`.
    pub fn announcing_to(mut self, watch: Arc<WatchState>) -> Dirs {
        self.watch = Some(watch);
        self
    }

    /// Whether these are the directories with inode numbers `cur` and
    /// `new`.
    pub fn are(&self, cur: u64, new: u64) -> bool {
        self.inodes == (cur, new)
    }

    /// `new/` or `cur/`.
    pub fn sub(&self, in_new: bool) -> BorrowedFd<'_> {
        if in_new {
            self.new.as_fd()
        } else {
            self.cur.as_fd()
        }
    }

    /// Opens a message file for reading: never through a link, never
    /// blocking on a FIFO another program left there, and only a regular
    /// file.
    ///
    /// # Errors
    /// I/O errors; `InvalidData` for what is not a regular file.
    pub fn open_file(&self, in_new: bool, name: &str) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            self.sub(in_new),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let f = File::from(fd);
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// Calls `each` with every name in `new/` or `cur/` (`.` and `..`
    /// left out).
    ///
    /// # Errors
    /// I/O errors of the directory read.
    pub fn list(&self, in_new: bool, mut each: impl FnMut(&OsStr)) -> std::io::Result<()> {
        let mut dir = rustix::fs::Dir::read_from(self.sub(in_new))?;
        while let Some(ent) = dir.read() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            if name != "." && name != ".." {
                each(name);
            }
        }
        Ok(())
    }

    /// Renames a message file within the folder (a flag change, new/ to
    /// cur/).
    ///
    /// # Errors
    /// I/O errors of the rename.
    pub fn rename(
        &self,
        from_new: bool,
        from: &str,
        to_new: bool,
        to: &str,
    ) -> std::io::Result<()> {
        if let Some(w) = &self.watch {
            w.expect_departure(from_new, from);
            w.expect_arrival(to_new, to);
        }
        Ok(rustix::fs::renameat(
            self.sub(from_new),
            from,
            self.sub(to_new),
            to,
        )?)
    }

    /// Moves `src` (a finished file in a `tmp/`) to `cur/name`.
    ///
    /// # Errors
    /// I/O errors of the rename.
    pub fn rename_in(&self, src: &crate::tmp::TmpFile, name: &str) -> std::io::Result<()> {
        if let Some(w) = &self.watch {
            w.expect_arrival(false, name);
        }
        src.rename_to(self.sub(false), name)
    }

    /// Hard-links a message file of this folder to `to` (a name in another
    /// folder's `tmp/`). The name itself is linked, never a link's target.
    ///
    /// # Errors
    /// I/O errors of the link.
    pub fn link_out(
        &self,
        in_new: bool,
        name: &str,
        to: &crate::tmp::TmpFile,
    ) -> std::io::Result<()> {
        Ok(rustix::fs::linkat(
            self.sub(in_new),
            name,
            to.dir().fd(),
            to.name(),
            AtFlags::empty(),
        )?)
    }

    /// Removes a message file.
    ///
    /// # Errors
    /// I/O errors of the unlink.
    pub fn unlink(&self, in_new: bool, name: &str) -> std::io::Result<()> {
        if let Some(w) = &self.watch {
            w.expect_departure(in_new, name);
        }
        Ok(rustix::fs::unlinkat(
            self.sub(in_new),
            name,
            AtFlags::empty(),
        )?)
    }

    /// Looks at a message file without following a link.
    ///
    /// # Errors
    /// I/O errors of the stat.
    pub fn stat(&self, in_new: bool, name: &str) -> std::io::Result<FileStat> {
        let st = rustix::fs::statat(self.sub(in_new), name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileStat {
            len: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0)),
            regular: rustix::fs::FileType::from_raw_mode(st.st_mode).is_file(),
        })
    }
}

impl FileStat {
    /// The mtime as a time.
    pub fn modified(&self) -> std::time::SystemTime {
        let (s, ns) = self.mtime;
        let d = std::time::Duration::new(s.unsigned_abs(), ns);
        if s >= 0 {
            std::time::UNIX_EPOCH + d
        } else {
            std::time::UNIX_EPOCH - d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_and_a_swap_after_the_open_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (mine, theirs) = (t.path().join("mine"), t.path().join("theirs"));
        for d in [&mine, &theirs] {
            std::fs::create_dir_all(d.join("cur")).unwrap();
            std::fs::create_dir_all(d.join("new")).unwrap();
        }
        std::fs::write(mine.join("cur/1:2,"), "mine").unwrap();
        std::fs::write(theirs.join("cur/1:2,"), "theirs").unwrap();
        let dirs = Dirs::open(&mine, false).unwrap();
        // The owner swaps cur/ for a link to another's after the open.
        std::fs::rename(mine.join("cur"), mine.join("old")).unwrap();
        std::os::unix::fs::symlink(theirs.join("cur"), mine.join("cur")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut dirs.open_file(false, "1:2,").unwrap(), &mut s).unwrap();
        assert_eq!(s, "mine");
        dirs.unlink(false, "1:2,").unwrap();
        assert!(theirs.join("cur/1:2,").exists());
        // Opened again, the link is refused; so is a linked folder.
        assert!(Dirs::open(&mine, false).is_err());
        let linked = t.path().join("linked");
        std::os::unix::fs::symlink(&theirs, &linked).unwrap();
        assert!(Dirs::open(&linked, false).is_err());
        assert!(Dirs::open(&linked, true).is_ok(), "a linked Maildir root");
        // A link in cur/ is not opened, and stat sees it as what it is.
        let d = Dirs::open(&theirs, false).unwrap();
        std::os::unix::fs::symlink(theirs.join("cur/1:2,"), theirs.join("cur/2:2,")).unwrap();
        assert!(d.open_file(false, "2:2,").is_err());
        assert!(!d.stat(false, "2:2,").unwrap().regular);
        assert!(d.stat(false, "1:2,").unwrap().regular);
        let mut names = Vec::new();
        d.list(false, |n| names.push(n.to_owned())).unwrap();
        names.sort();
        assert_eq!(names, ["1:2,", "2:2,"]);
    }
}
