//! Unique Maildir file names and atomic file replacement.
//!
//! New message names follow the Maildir convention
//! `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>`: `S=` is the
//! Maildir++ size that quota code reads, `W=` the size with CRLF line ends
//! that IMAP reports as RFC822.SIZE (Dovecot writes the same field).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{MaildirError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The host name part of unique names, with `/` and `:` escaped as Maildir asks.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "localhost".to_owned());
    raw.trim()
        .replace('/', "\\057")
        .replace(':', "\\072")
        .replace(',', "\\054")
}

/// The host name as the system gives it, for lock files that other
/// programs read (Courier's liblock compares it with gethostname()).
pub fn raw_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// A new unique base name (no sizes, no info).
pub fn new_base() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        hostname()
    )
}

/// A new unique base name carrying the sizes of the message.
pub fn new_base_with_sizes(size: u64, crlf_size: u64) -> String {
    format!("{},S={},W={}", new_base(), size, crlf_size)
}

/// Reads a whole file without following a symbolic link: tern's own files
/// in a Maildir (`courierimapuiddb`, keyword lists, subscriptions) must not
/// be links that make it read another file.
///
/// # Errors
/// Any I/O error; a symbolic link gives `ELOOP`.
pub fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    read_head_nofollow(path, u64::MAX)
}

/// As [`read_nofollow`], at most the first `max` bytes: for files of which
/// only a first line matters, whatever size someone made them.
///
/// # Errors
/// As [`read_nofollow`].
pub fn read_head_nofollow(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Makes the entries of a directory durable: after a rename into it, the
/// new name survives a power loss only once the directory itself is synced
/// (the file's own fsync does not cover its name).
///
/// # Errors
/// The I/O error of opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| MaildirError::io("sync directory", dir, e))
}

/// Writes `data` to `path` atomically and durably: a temporary file beside
/// it, fsync, rename, fsync of the directory. A crash leaves either the old
/// or the new content, never a mix; once this returns, the new content
/// survives a power loss.
///
/// # Errors
/// Any I/O error; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(data))
}

/// As [`write_atomic`], with the content written by `fill` through a
/// buffer: a large file (a summary cache of 100,000 messages) never has to
/// be held in memory whole.
///
/// # Errors
/// I/O errors of `fill`, of the write, or of the rename.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{}.{}.tmp", file_name, new_base()));
    let res = (|| {
        let file = File::create(&tmp)?;
        crate::owner::inherit(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(MaildirError::io("write", path, e));
    }
    sync_dir(dir)
}
