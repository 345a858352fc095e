//! Delivery of one message into a Maildir, as an MDA (Courier's
//! `deliverquota`, Dovecot's LDA) does it: written to `tmp/`, synced,
//! checked against the quota, renamed into `new/` under a unique name that
//! carries `,S=<size>` (and `,W=<size with CRLF>`), then counted in
//! `maildirsize`. A crash at any point leaves either no message or a whole
//! one; a leftover in `tmp/` is removed by the usual 36-hour tmp cleanup.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::dirs::Dirs;
use crate::error::{MaildirError, Result};
use crate::quota::{self, QuotaSpec};
use crate::tmp::{TmpDir, TmpFile};
use crate::unique::{new_base, new_base_with_sizes};
use crate::{FolderName, Maildir};

/// Removes the temporary file unless the delivery completed.
struct TmpGuard(Option<TmpFile>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            let _ = f.remove();
        }
    }
}

/// Delivers the message read from `input` into `folder` (`None`: INBOX)
/// of `maildir`, honouring `quota` (the user database's quota, else the
/// Maildir's own `maildirsize`). Returns the path of the new file.
///
/// # Errors
/// [`MaildirError::OverQuota`] when the message does not fit (nothing is
/// left behind); I/O errors.
pub fn deliver(
    maildir: &Maildir,
    folder: Option<&FolderName>,
    quota: Option<QuotaSpec>,
    input: &mut dyn Read,
) -> Result<PathBuf> {
    let dir = maildir.folder_dir(folder);
    // tmp/ and new/ are reached without following links ([`crate::tmp`]);
    // only the root may be one, where the operator allows it.
    let may_be_link = folder.is_none() && crate::dirs::linked_roots_allowed();
    let open_err = |e: std::io::Error| {
        if crate::dirs::is_link_refusal(&e) {
            MaildirError::NoSuchFolder
        } else {
            MaildirError::io("open", &dir, e)
        }
    };
    let tmp_dir = TmpDir::open(&dir, may_be_link).map_err(open_err)?;
    let dirs = Dirs::open(&dir, may_be_link).map_err(open_err)?;
    let (file, tmp) = tmp_dir
        .create(&format!("{}.deliver", new_base()))
        .map_err(|e| MaildirError::io("create", tmp_dir.path(), e))?;
    let mut guard = TmpGuard(Some(tmp.clone()));
    let (size, crlf_size) = write_tmp(file, &tmp.path(), input)?;
    quota::ensure_room(maildir.root(), quota, folder, size, 1)?;
    let name = new_base_with_sizes(size, crlf_size);
    tmp.rename_to(dirs.sub(true), &name)
        .map_err(|e| MaildirError::io("rename", tmp.path(), e))?;
    guard.0 = None;
    let dest = dir.join("new").join(name);
    // The rename is durable once the directory is synced.
    let _ = rustix::fs::fsync(dirs.sub(true));
    if folder.is_none_or(FolderName::counts_toward_quota) {
        quota::add(maildir.root(), i64::try_from(size).unwrap_or(i64::MAX), 1)?;
    }
    Ok(dest)
}

/// Copies `input` to a new file at `path`, synced; returns its size and
/// its size with every bare LF counted as CRLF.
fn write_tmp(mut f: std::fs::File, path: &Path, input: &mut dyn Read) -> Result<(u64, u64)> {
    let io = |e| MaildirError::io("write", path, e);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut size, mut extra) = (0u64, 0u64);
    let mut prev = 0u8;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(MaildirError::io("read", "standard input", e)),
        };
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                extra += 1;
            }
            prev = b;
        }
        size += n as u64;
        f.write_all(&buf[..n]).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    Ok((size, size + extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_sizes_and_counts_quota() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::new(t.path().join("m"));
        md.ensure().unwrap();
        quota::set(md.root(), QuotaSpec::parse("20S")).unwrap();
        let p = deliver(&md, None, None, &mut &b"Subject: x\n\nhi\n"[..]).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(",S=15,W=18"), "{name}");
        assert_eq!(std::fs::read(&p).unwrap(), b"Subject: x\n\nhi\n");
        assert_eq!(quota::read(md.root()).unwrap().unwrap().usage.bytes, 15);
        // Over quota: refused, nothing left in tmp/ or new/.
        let err = deliver(&md, None, None, &mut &b"0123456789\n"[..]).unwrap_err();
        assert!(matches!(err, MaildirError::OverQuota));
        assert_eq!(std::fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(md.root().join("new")).unwrap().count(), 1);
    }

    #[test]
    fn a_tmp_or_new_that_is_a_link_gets_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (md, other) = (Maildir::new(t.path().join("m")), t.path().join("other"));
        md.ensure().unwrap();
        std::fs::create_dir_all(&other).unwrap();
        for sub in ["tmp", "new"] {
            let real = md.root().join(sub);
            std::fs::rename(&real, t.path().join(format!("{sub}.aside"))).unwrap();
            std::os::unix::fs::symlink(&other, &real).unwrap();
            let err = deliver(&md, None, None, &mut &b"Subject: x\n\nhi\n"[..]).unwrap_err();
            assert!(matches!(err, MaildirError::NoSuchFolder), "{sub}: {err}");
            assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0, "{sub}");
            std::fs::remove_file(&real).unwrap();
            std::fs::rename(t.path().join(format!("{sub}.aside")), &real).unwrap();
        }
        assert!(deliver(&md, None, None, &mut &b"Subject: x\n\nhi\n"[..]).is_ok());
    }
}
