//! `maildirmake`: creating Maildirs, folders and the quota file as
//! Courier's `maildirmake` does (same layout, modes and `maildirsize`).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{MaildirError, Result};
use crate::name::FolderName;

/// Maildir++ quota file.
pub const MAILDIRSIZE: &str = crate::quota::MAILDIRSIZE;

fn mkdir_700(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                MaildirError::FolderExists
            } else {
                MaildirError::io("mkdir", path, e)
            }
        })
}

/// Creates `dir` with `cur/ new/ tmp/`, mode 0700.
///
/// # Errors
/// [`MaildirError::FolderExists`] when `dir` exists; I/O errors.
pub fn make_maildir(dir: &Path) -> Result<()> {
    mkdir_700(dir)?;
    for sub in ["tmp", "new", "cur"] {
        mkdir_700(&dir.join(sub))?;
    }
    Ok(())
}

/// Creates the folder `name` inside the Maildir `dir` (`.name` with a
/// `maildirfolder` file, mode 0600).
///
/// # Errors
/// [`MaildirError::NoSuchFolder`] when `dir` is not a Maildir,
/// [`MaildirError::FolderExists`], I/O errors.
pub fn make_folder(dir: &Path, name: &FolderName) -> Result<()> {
    if !dir.join("cur").is_dir() {
        return Err(MaildirError::NoSuchFolder);
    }
    // The name as given, in UTF-8, as Courier 5's maildirmake writes it.
    let fdir = dir.join(format!(".{name}"));
    make_maildir(&fdir)?;
    let marker = fdir.join("maildirfolder");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker)
        .map_err(|e| MaildirError::io("create", marker, e))?;
    Ok(())
}

/// Checks a Maildir++ quota specification such as `10000000S,1000C`.
pub fn valid_quota(spec: &str) -> bool {
    !spec.is_empty()
        && spec.split(',').all(|part| {
            let (num, kind) = part.split_at(part.len().saturating_sub(1));
            matches!(kind, "S" | "C") && !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Writes `maildirsize` with the quota line and the current totals,
/// counted as every Maildir++ quota recalculation counts them
/// ([`crate::quota::recalculate`]).
///
/// # Errors
/// [`MaildirError::InvalidName`] for a bad specification; I/O errors.
pub fn write_quota(dir: &Path, spec: &str) -> Result<()> {
    let spec = crate::quota::QuotaSpec::parse(spec)
        .ok_or(MaildirError::InvalidName("quota specification"))?;
    crate::quota::recalculate(dir, spec).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_specs() {
        assert!(valid_quota("10000000S,1000C"));
        assert!(valid_quota("5000S"));
        assert!(!valid_quota("5000"));
        assert!(!valid_quota("S"));
        assert!(!valid_quota("10X"));
    }
}
