//! A folder's `tmp/`, held open and reached without following links.
//!
//! Every new message, every copied one, a new `maildirsize` and a folder
//! being made or deleted pass through `tmp/`. A user who can write into
//! their own Maildir could make `tmp` a link to another account's
//! directory; a path built as `folder/tmp/name` would then write, rename
//! and remove there. So `tmp/` is opened once per operation with
//! `O_NOFOLLOW` (and the folder directory too, unless it is the Maildir
//! root and the operator lets roots be links, [`crate::dirs`]), and every
//! file in it is then made, read, renamed and removed relative to that
//! descriptor. A link swapped in afterwards changes nothing.
//!
//! It also removes what crashed writers left: files older than 36 hours,
//! as Courier-IMAP and Dovecot do ([`TmpDir::sweep`]).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

use crate::dirs::open_dir;

/// The age after which a file in `tmp/` is a crashed writer's leftover
/// (Courier's and Dovecot's figure).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(36 * 3600);

/// How many names one sweep looks at: a `tmp/` someone filled with a
/// million files costs a sweep this many, never one long call (the rest
/// of such a `tmp/` may then wait; only leftovers of crashes are at stake).
const SWEEP_AT_MOST: usize = 10_000;

/// An open `tmp/` of one folder.
#[derive(Debug)]
pub struct TmpDir {
    /// The folder directory `tmp/` is in.
    base: OwnedFd,
    fd: OwnedFd,
    /// Its path, for log lines and errors only.
    path: PathBuf,
}

/// A file in a [`TmpDir`]: the directory it is in and its name there.
#[derive(Debug, Clone)]
pub struct TmpFile {
    dir: Arc<TmpDir>,
    name: String,
}

impl TmpDir {
    /// Opens `dir/tmp`, refusing a link there, and at `dir` itself unless
    /// `dir_may_be_link`. A folder some other program made without `tmp/`
    /// gets one (Courier would fail; tern goes on).
    ///
    /// # Errors
    /// I/O errors; a link gives `ELOOP` (or `ENOTDIR`).
    pub fn open(dir: &Path, dir_may_be_link: bool) -> std::io::Result<Arc<TmpDir>> {
        let base = open_dir(CWD, dir, !dir_may_be_link)?;
        let fd = match open_dir(&base, Path::new("tmp"), true) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match rustix::fs::mkdirat(&base, "tmp", Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let fd = open_dir(&base, Path::new("tmp"), true)?;
                crate::owner::inherit_fd(base.as_fd(), fd.as_fd())?;
                fd
            }
            other => other?,
        };
        Ok(Arc::new(TmpDir {
            base,
            fd,
            path: dir.join("tmp"),
        }))
    }

    /// The directory, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The folder directory it is in, as opened (for renames beside it:
    /// a new `maildirsize`, a folder made or deleted).
    pub fn base(&self) -> BorrowedFd<'_> {
        self.base.as_fd()
    }

    /// Its path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the file `name`, which must not exist, for writing (mode
    /// 0666 less the umask, the owner of `tmp/` under root).
    ///
    /// # Errors
    /// I/O errors; `AlreadyExists` when the name is taken (or a link).
    pub fn create(self: &Arc<Self>, name: &str) -> std::io::Result<(File, TmpFile)> {
        self.create_mode(name, 0o666)
    }

    /// As [`TmpDir::create`] with the mode `mode` (less the umask).
    ///
    /// # Errors
    /// As [`TmpDir::create`].
    pub fn create_mode(
        self: &Arc<Self>,
        name: &str,
        mode: u32,
    ) -> std::io::Result<(File, TmpFile)> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        let file = TmpFile {
            dir: self.clone(),
            name: name.to_owned(),
        };
        if let Err(e) = crate::owner::inherit_fd(self.fd(), fd.as_fd()) {
            let _ = file.remove();
            return Err(e);
        }
        Ok((File::from(fd), file))
    }

    /// Creates a new file under a fresh unique name.
    ///
    /// # Errors
    /// As [`TmpDir::create`].
    pub fn create_unique(self: &Arc<Self>) -> std::io::Result<(File, TmpFile)> {
        self.create(&crate::unique::new_base())
    }

    /// The file `name` in here (which may not exist yet).
    pub fn file(self: &Arc<Self>, name: &str) -> TmpFile {
        TmpFile {
            dir: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Makes the directory `name` in here (for a folder being built).
    ///
    /// # Errors
    /// I/O errors of the mkdir or of handing on the owner.
    pub fn make_dir(self: &Arc<Self>, name: &str) -> std::io::Result<TmpFile> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777))?;
        let sub = open_dir(&self.fd, Path::new(name), true)?;
        let made = self.file(name);
        crate::owner::inherit_fd(self.fd(), sub.as_fd())?;
        Ok(made)
    }

    /// Builds a Maildir++ folder `name` in here (`cur/ new/ tmp/` and the
    /// `maildirfolder` marker), to be renamed into place whole.
    ///
    /// # Errors
    /// I/O errors; what was made is removed.
    pub fn make_folder(self: &Arc<Self>, name: &str) -> std::io::Result<TmpFile> {
        let made = self.make_dir(name)?;
        let res = (|| {
            let top = open_dir(&self.fd, Path::new(name), true)?;
            for sub in ["tmp", "new", "cur"] {
                rustix::fs::mkdirat(&top, sub, Mode::from_raw_mode(0o777))?;
                let d = open_dir(&top, Path::new(sub), true)?;
                crate::owner::inherit_fd(top.as_fd(), d.as_fd())?;
            }
            let marker = rustix::fs::openat(
                &top,
                "maildirfolder",
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )?;
            crate::owner::inherit_fd(top.as_fd(), marker.as_fd())
        })();
        if let Err(e) = res {
            let _ = made.remove_tree();
            return Err(e);
        }
        Ok(made)
    }

    /// Removes files older than [`LEFTOVER_AGE`] (what writers killed
    /// mid-write left), and folders tern was making or deleting then
    /// (`*.newfolder`, `*.deleted`), at most [`SWEEP_AT_MOST`] names
    /// looked at. Only regular files and those directories go, never a
    /// link or what it names. Returns how many were removed.
    pub fn sweep(&self, now: SystemTime) -> usize {
        self.sweep_older_than(now, LEFTOVER_AGE)
    }

    /// As [`TmpDir::sweep`], for files older than `age`.
    pub fn sweep_older_than(&self, now: SystemTime, age: Duration) -> usize {
        let Ok(mut dir) = rustix::fs::Dir::read_from(&self.fd) else {
            return 0;
        };
        let mut removed = 0;
        for ent in std::iter::from_fn(|| dir.read()).take(SWEEP_AT_MOST) {
            let Ok(ent) = ent else { break };
            let name = ent.file_name();
            let Ok(st) = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            // tern's own folders being made or deleted, which a crash
            // left, go too; no other directory.
            let own_dir = kind.is_dir() && {
                let n = name.to_bytes();
                n.ends_with(b".deleted") || n.ends_with(b".newfolder")
            };
            if !kind.is_file() && !own_dir {
                continue;
            }
            // The later of the change and modification times: a file that
            // was just written into, or just renamed here, is not old.
            let newest = st.st_mtime.max(st.st_ctime);
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(newest.max(0).unsigned_abs());
            let old = now.duration_since(mtime).is_ok_and(|a| a > age);
            if !old {
                continue;
            }
            let gone = if own_dir {
                remove_tree_at(self.fd(), &name.to_string_lossy(), TREE_DEPTH).is_ok()
            } else {
                rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).is_ok()
            };
            if gone {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(dir = %self.path.display(), removed, "removed crashed writers' leftovers from tmp/");
        }
        removed
    }
}

impl TmpFile {
    /// Its name in `tmp/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open `tmp/` it is in.
    pub fn dir(&self) -> &Arc<TmpDir> {
        &self.dir
    }

    /// Its path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    /// Opens it for reading (never through a link).
    ///
    /// # Errors
    /// I/O errors.
    pub fn open_read(&self) -> std::io::Result<File> {
        self.open(OFlags::RDONLY)
    }

    /// Opens it for writing at its end (never through a link).
    ///
    /// # Errors
    /// I/O errors.
    pub fn open_append(&self) -> std::io::Result<File> {
        self.open(OFlags::WRONLY | OFlags::APPEND)
    }

    fn open(&self, how: OFlags) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &self.dir.fd,
            self.name.as_str(),
            how | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Sets its modification time (a message's internal date).
    ///
    /// # Errors
    /// I/O errors.
    pub fn set_modified(&self, when: SystemTime) -> std::io::Result<()> {
        self.open(OFlags::WRONLY)?.set_modified(when)
    }

    /// Removes it (a file; an empty directory with [`TmpFile::remove_dir`]).
    ///
    /// # Errors
    /// I/O errors of the unlink.
    pub fn remove(&self) -> std::io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.dir.fd,
            self.name.as_str(),
            AtFlags::empty(),
        )?)
    }

    /// Removes it, a directory, with what is in it down to
    /// [`TREE_DEPTH`] levels (a Maildir++ folder has two: `cur/` and its
    /// files). Links are removed, never followed. Anything deeper (which
    /// no mail program makes) stays, and the directory with it.
    ///
    /// # Errors
    /// I/O errors; `ENOTEMPTY` when something deeper stayed.
    pub fn remove_tree(&self) -> std::io::Result<()> {
        remove_tree_at(self.dir.fd(), &self.name, TREE_DEPTH)
    }

    /// Moves it to `dir/name` (`dir` an open directory, or a path relative
    /// to `CWD` with `to` absolute).
    ///
    /// # Errors
    /// I/O errors of the rename.
    pub fn rename_to(&self, dir: impl AsFd, to: impl AsRef<Path>) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.dir.fd,
            self.name.as_str(),
            dir,
            to.as_ref(),
        )?)
    }
}

/// How deep [`TmpFile::remove_tree`] goes.
pub const TREE_DEPTH: usize = 4;

/// Removes `name` in `dir` and its contents, `depth` levels down at most.
/// The recursion is bounded by `depth`, a constant, not by the input.
fn remove_tree_at(dir: BorrowedFd<'_>, name: &str, depth: usize) -> std::io::Result<()> {
    let sub = open_dir(dir, Path::new(name), true)?;
    let mut names = Vec::new();
    {
        let mut rd = rustix::fs::Dir::read_from(&sub)?;
        while let Some(ent) = rd.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(ent.file_name().to_owned());
            }
        }
    }
    for n in &names {
        let is_dir = rustix::fs::statat(&sub, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
        if is_dir && depth > 0 {
            let _ = remove_tree_at(sub.as_fd(), &n.to_string_lossy(), depth - 1);
        } else if !is_dir {
            let _ = rustix::fs::unlinkat(&sub, n.as_c_str(), AtFlags::empty());
        }
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_linked_tmp_is_refused_and_a_swap_after_the_open_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (mine, theirs) = (t.path().join("mine"), t.path().join("theirs"));
        std::fs::create_dir_all(mine.join("tmp")).unwrap();
        std::fs::create_dir_all(theirs.join("tmp")).unwrap();
        let tmp = TmpDir::open(&mine, false).unwrap();
        let (mut f, file) = tmp.create("m1").unwrap();
        f.write_all(b"hello").unwrap();
        // tmp/ swapped for a link to someone else's.
        std::fs::rename(mine.join("tmp"), mine.join("old-tmp")).unwrap();
        std::os::unix::fs::symlink(theirs.join("tmp"), mine.join("tmp")).unwrap();
        let (_, second) = tmp.create("m2").unwrap();
        let mut s = String::new();
        file.open_read().unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        second.remove().unwrap();
        assert_eq!(std::fs::read_dir(theirs.join("tmp")).unwrap().count(), 0);
        assert!(mine.join("old-tmp/m1").is_file());
        // Opened again, the link is refused.
        let e = TmpDir::open(&mine, false).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
            "{e}"
        );
        // The folder directory itself as a link is refused too, unless allowed.
        std::os::unix::fs::symlink(&theirs, t.path().join("linked")).unwrap();
        assert!(TmpDir::open(&t.path().join("linked"), false).is_err());
        assert!(TmpDir::open(&t.path().join("linked"), true).is_ok());
    }

    #[test]
    fn a_missing_tmp_is_made_and_a_link_in_it_is_not_opened() {
        let t = tempfile::tempdir().unwrap();
        let tmp = TmpDir::open(t.path(), false).unwrap();
        assert!(t.path().join("tmp").is_dir());
        std::fs::write(t.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("tmp/l")).unwrap();
        assert!(tmp.file("l").open_read().is_err());
        assert!(tmp.create("l").is_err(), "create went through a link");
        assert_eq!(
            std::fs::read_to_string(t.path().join("secret")).unwrap(),
            "s"
        );
    }

    #[test]
    fn a_folder_is_built_and_removed_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let tmp = TmpDir::open(t.path(), false).unwrap();
        let f = tmp.make_folder("x.newfolder").unwrap();
        for sub in ["cur", "new", "tmp", "maildirfolder"] {
            assert!(t.path().join("tmp/x.newfolder").join(sub).exists());
        }
        std::fs::write(t.path().join("tmp/x.newfolder/cur/1:2,"), "m").unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/keep"), "k").unwrap();
        std::os::unix::fs::symlink(
            t.path().join("outside"),
            t.path().join("tmp/x.newfolder/new/l"),
        )
        .unwrap();
        f.remove_tree().unwrap();
        assert!(!t.path().join("tmp/x.newfolder").exists());
        assert!(t.path().join("outside/keep").is_file());
        // A tree deeper than any Maildir stays, with a clear error.
        let deep = t.path().join("tmp/d/1/2/3/4/5/6");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), "f").unwrap();
        assert!(tmp.file("d").remove_tree().is_err());
        assert!(deep.join("f").is_file());
    }

    #[test]
    fn the_sweep_removes_old_files_only_and_no_link_target() {
        let t = tempfile::tempdir().unwrap();
        let tmp = TmpDir::open(t.path(), false).unwrap();
        tmp.create("fresh").unwrap();
        tmp.create("old").unwrap();
        std::fs::create_dir(t.path().join("tmp/olddir")).unwrap();
        tmp.make_folder("1.M2.h.deleted").unwrap();
        std::fs::write(t.path().join("target"), "keep").unwrap();
        std::os::unix::fs::symlink(t.path().join("target"), t.path().join("tmp/link")).unwrap();
        // Two days on: everything is old but only regular files go.
        let later = SystemTime::now() + Duration::from_secs(48 * 3600);
        assert_eq!(tmp.sweep(SystemTime::now()), 0);
        assert_eq!(tmp.sweep(later), 3);
        assert!(!t.path().join("tmp/1.M2.h.deleted").exists());
        assert!(t.path().join("tmp/olddir").is_dir());
        assert!(t.path().join("tmp/link").symlink_metadata().is_ok());
        assert_eq!(
            std::fs::read_to_string(t.path().join("target")).unwrap(),
            "keep"
        );
    }
}
