//! Who owns what tern creates in a Maildir.
//!
//! Courier-IMAP and Dovecot run as the mail account and create 0700
//! folders and 0600 files; a Maildir tern served must stay theirs, or
//! Courier running as `vmail` cannot rewrite `courierimapuiddb` after a
//! switch back, and a local user could read mail that arrived by APPEND.
//! Modes come from the process umask (tern sets 077, see the `tern`
//! binary). Ownership: tern normally runs as the mail user already
//! (`mail.user`), and then everything it creates is that user's. When an
//! operator lets it run as root (`mail.allow_root`), each file and
//! directory it creates is given the owner of the directory it is created
//! in, so the Maildir keeps one owner whoever wrote into it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether this process runs as root, where ownership must be handed on.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives `path` (just created) the owner and group of its parent directory
/// when tern runs as root and the parent belongs to someone else. A
/// symbolic link is never followed.
///
/// # Errors
/// I/O errors of the stat or the chown.
pub fn inherit(path: &Path) -> std::io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let p = std::fs::metadata(parent)?;
    let m = std::fs::symlink_metadata(path)?;
    if (m.uid(), m.gid()) == (p.uid(), p.gid()) {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(p.uid()), Some(p.gid()))
}

/// As [`inherit`], for `file` (just created) in the open directory `dir`:
/// for what is made relative to a descriptor, never by path.
///
/// # Errors
/// I/O errors of the stats or the chown.
pub fn inherit_fd(
    dir: std::os::fd::BorrowedFd<'_>,
    file: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let (d, f) = (rustix::fs::fstat(dir)?, rustix::fs::fstat(file)?);
    if (d.st_uid, d.st_gid) == (f.st_uid, f.st_gid) {
        return Ok(());
    }
    rustix::fs::fchown(
        file,
        Some(rustix::fs::Uid::from_raw(d.st_uid)),
        Some(rustix::fs::Gid::from_raw(d.st_gid)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_takes_its_directorys_owner_under_root() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        inherit(&f).unwrap();
        let (fm, dm) = (
            std::fs::metadata(&f).unwrap(),
            std::fs::metadata(t.path()).unwrap(),
        );
        assert_eq!((fm.uid(), fm.gid()), (dm.uid(), dm.gid()));
        if running_as_root() {
            // As root: a directory of another owner hands it on.
            std::os::unix::fs::chown(t.path(), Some(65534), Some(65534)).unwrap();
            let g = t.path().join("g");
            std::fs::write(&g, "y").unwrap();
            inherit(&g).unwrap();
            let gm = std::fs::metadata(&g).unwrap();
            assert_eq!((gm.uid(), gm.gid()), (65534, 65534));
        }
    }
}
