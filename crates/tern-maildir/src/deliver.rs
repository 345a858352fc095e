//! Delivery of one message into a Maildir, as an MDA (Courier's
//! `deliverquota`, Dovecot's LDA) does it: written to `tmp/`, synced,
//! checked against the quota, renamed into `new/` under a unique name that
//! carries `,S=<size>` (and `,W=<size with CRLF>`), then counted in
//! `maildirsize`. A crash at any point leaves either no message or a whole
//! one; a leftover in `tmp/` is removed by the usual 36-hour tmp cleanup.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{MaildirError, Result};
use crate::quota::{self, QuotaSpec};
use crate::unique::{new_base, new_base_with_sizes};
use crate::{FolderName, Maildir};

/// Removes the temporary file unless the delivery completed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
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
    let tmp = dir.join("tmp").join(format!("{}.deliver", new_base()));
    let mut guard = TmpGuard(Some(tmp.clone()));
    let (size, crlf_size) = write_tmp(&tmp, input)?;
    quota::ensure_room(maildir.root(), quota, folder, size, 1)?;
    let dest = dir.join("new").join(new_base_with_sizes(size, crlf_size));
    std::fs::rename(&tmp, &dest).map_err(|e| MaildirError::io("rename", &tmp, e))?;
    guard.0 = None;
    // The rename is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir.join("new")) {
        let _ = d.sync_all();
    }
    if folder.is_none_or(FolderName::counts_toward_quota) {
        quota::add(maildir.root(), i64::try_from(size).unwrap_or(i64::MAX), 1)?;
    }
    Ok(dest)
}

/// Copies `input` to a new file at `path`, synced; returns its size and
/// its size with every bare LF counted as CRLF.
fn write_tmp(path: &Path, input: &mut dyn Read) -> Result<(u64, u64)> {
    let io = |e| MaildirError::io("write", path, e);
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    crate::owner::inherit(path).map_err(io)?;
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
}
