//! Maildir++ quotas: the `maildirsize` file, read and written as Courier's
//! maildirquota library (and Dovecot's Maildir++ quota backend) do.
//!
//! ```text
//! 10000000S,1000C          <- quota: bytes (S) and/or messages (C)
//!      1234567           42 <- total from the last recalculation
//!         2345            1 <- one line per delivery ...
//!        -2345           -1 <- ... and per removal
//! ```
//! Every line after the first holds two numbers, right-aligned in 12
//! columns; the sum of all of them is the Maildir's usage. Nothing is
//! locked: a writer appends its line with one `O_APPEND` write, and drift
//! from races is bounded because the file is recalculated from the
//! directories when it reaches 5120 bytes, when a total goes negative, and
//! when it says "over quota" while it has deltas or is 15 minutes old.
//!
//! As in Courier's default build, `.Trash` and messages flagged `T`
//! (deleted, not yet expunged) do not count.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{MaildirError, Result};
use crate::flags::{name_field, split_name};
use crate::name::FolderName;

/// The quota file in the Maildir root.
pub const MAILDIRSIZE: &str = "maildirsize";

/// A `maildirsize` at least this long is recalculated.
const MAX_FILE: usize = 5120;

/// An over-quota answer from a one-line file younger than this is trusted.
const TRUST_OVER: Duration = Duration::from_secs(15 * 60);

/// How often a recalculation that raced with a change is repeated.
const RECALC_TRIES: usize = 5;

/// A quota: at most `bytes` bytes and `messages` messages; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaSpec {
    /// Byte limit (`S`), 0 for none.
    pub bytes: u64,
    /// Message limit (`C`), 0 for none.
    pub messages: u64,
}

impl QuotaSpec {
    /// Parses `10000000S,1000C` the way Courier does: every number followed
    /// by `S` or `C` counts, anything else is skipped. `None` when neither
    /// limit is set.
    pub fn parse(text: &str) -> Option<QuotaSpec> {
        let mut spec = QuotaSpec::default();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n: u64 = text[start..i].parse().unwrap_or(u64::MAX);
            match b.get(i) {
                Some(b'S') => spec.bytes = n,
                Some(b'C') => spec.messages = n,
                _ => {}
            }
        }
        (spec.bytes > 0 || spec.messages > 0).then_some(spec)
    }

    /// Whether `usage` is within this quota (Courier: over when greater).
    pub fn allows(&self, usage: Usage) -> bool {
        let fits = |limit: u64, used: i64| limit == 0 || used <= 0 || (used as u64) <= limit;
        fits(self.bytes, usage.bytes) && fits(self.messages, usage.messages)
    }
}

impl std::fmt::Display for QuotaSpec {
    /// The first line of `maildirsize`, as Courier writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bytes > 0 {
            write!(f, "{}S", self.bytes)?;
        }
        if self.messages > 0 {
            if self.bytes > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}C", self.messages)?;
        }
        Ok(())
    }
}

/// Bytes and messages used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes (sizes as stored, LF line ends).
    pub bytes: i64,
    /// Messages.
    pub messages: i64,
}

impl Usage {
    fn plus(self, bytes: i64, messages: i64) -> Usage {
        Usage {
            bytes: self.bytes.saturating_add(bytes),
            messages: self.messages.saturating_add(messages),
        }
    }
}

/// What `maildirsize` says.
#[derive(Debug, Clone)]
pub struct QuotaFile {
    /// The quota of its first line.
    pub spec: Option<QuotaSpec>,
    /// The sum of its other lines.
    pub usage: Usage,
    /// Lines after the first.
    pub lines: usize,
    /// When it was last written.
    pub mtime: SystemTime,
    /// Too long, or a total went negative: recalculate before use.
    pub stale: bool,
}

/// The answer to "may this be added?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The Maildir has no quota.
    NoQuota,
    /// Within the quota; the usage includes what was asked about.
    Within(QuotaSpec, Usage),
    /// Over the quota; the usage includes what was asked about.
    Over(QuotaSpec, Usage),
}

fn file_path(root: &Path) -> PathBuf {
    root.join(MAILDIRSIZE)
}

/// The content of a `maildirsize`: its quota line, the sum of its usage
/// lines, how many there are, and whether the file reached the size at
/// which Courier recalculates (then the sum is not used).
pub fn parse_file(buf: &[u8]) -> (Option<QuotaSpec>, Usage, usize, bool) {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split('\n');
    let spec = lines.next().and_then(QuotaSpec::parse);
    if buf.len() >= MAX_FILE {
        return (spec, Usage::default(), 0, true);
    }
    let mut usage = Usage::default();
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let mut nums = line.split_ascii_whitespace().map(str::parse::<i64>);
        if let (Some(Ok(b)), Some(Ok(c))) = (nums.next(), nums.next()) {
            usage = usage.plus(b, c);
        }
        count += 1;
    }
    (spec, usage, count, false)
}

/// Reads `maildirsize`; `None` when there is none.
///
/// # Errors
/// I/O errors other than "not found".
pub fn read(root: &Path) -> Result<Option<QuotaFile>> {
    let path = file_path(root);
    let mut f = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MaildirError::io("open", path, e)),
    };
    let mut buf = Vec::with_capacity(1024);
    (&mut f)
        .take(MAX_FILE as u64)
        .read_to_end(&mut buf)
        .map_err(|e| MaildirError::io("read", &path, e))?;
    let mtime = f
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| MaildirError::io("stat", &path, e))?;
    let (spec, usage, count, overlong) = parse_file(&buf);
    if overlong {
        return Ok(Some(QuotaFile {
            spec,
            usage: Usage::default(),
            lines: 0,
            mtime,
            stale: true,
        }));
    }
    Ok(Some(QuotaFile {
        spec,
        usage,
        lines: count,
        mtime,
        stale: usage.bytes < 0 || usage.messages < 0,
    }))
}

/// Whether messages in the folder directory `dir_name` (`.Name`) count.
pub fn counts_folder(dir_name: &str) -> bool {
    dir_name != ".Trash"
}

/// Whether the message file `name` counts: not when flagged `T`.
pub fn counts_file(name: &str) -> bool {
    let (_, info) = split_name(name);
    !info.is_some_and(|f| {
        f.bytes()
            .take_while(u8::is_ascii_uppercase)
            .any(|b| b == b'T')
    })
}

/// The size a message counts with: `,S=` of its name, else its length.
pub fn file_size(name: &str, path: &Path) -> Option<u64> {
    let (base, _) = split_name(name);
    name_field(base, 'S').or_else(|| std::fs::symlink_metadata(path).ok().map(|m| m.len()))
}

/// The directories whose messages count: the root and every folder but
/// Trash, each with the mtimes seen of `new/` and `cur/`.
fn counted_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_owned()];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if FolderName::is_folder_dir(&n)
                && counts_folder(&n)
                && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            {
                dirs.push(e.path());
            }
        }
    }
    dirs
}

fn newest_mtime(dirs: &[PathBuf]) -> Option<SystemTime> {
    dirs.iter()
        .flat_map(|d| [d.join("new"), d.join("cur")])
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

fn count_dirs(dirs: &[PathBuf]) -> Usage {
    let mut usage = Usage::default();
    for d in dirs {
        for sub in ["new", "cur"] {
            let dir = d.join(sub);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with('.') || !counts_file(&n) {
                    continue;
                }
                // A file removed since readdir simply does not count.
                if let Some(size) = file_size(&n, &dir.join(&*n)) {
                    usage = usage.plus(i64::try_from(size).unwrap_or(i64::MAX), 1);
                }
            }
        }
    }
    usage
}

/// Counts the Maildir from its directories and writes a fresh
/// `maildirsize` for `spec` (through `tmp/` and a rename). When the
/// directories changed during the count it counts again, a few times.
///
/// # Errors
/// I/O errors writing the file.
pub fn recalculate(root: &Path, spec: QuotaSpec) -> Result<Usage> {
    let dirs = counted_dirs(root);
    let mut usage = Usage::default();
    for _ in 0..RECALC_TRIES {
        let before = newest_mtime(&dirs);
        usage = count_dirs(&dirs);
        write_file(root, spec, usage)?;
        if newest_mtime(&dirs) == before {
            break;
        }
    }
    tracing::debug!(maildir = %root.display(), bytes = usage.bytes, messages = usage.messages, "maildirsize recalculated");
    Ok(usage)
}

fn write_file(root: &Path, spec: QuotaSpec, usage: Usage) -> Result<()> {
    let text = format!("{spec}\n{:>12} {:>12}\n", usage.bytes, usage.messages);
    let dest = file_path(root);
    let mut made = None;
    let res = (|| {
        let tmp = crate::tmp::TmpDir::open(root, crate::dirs::linked_roots_allowed())?;
        let (mut f, file) = tmp.create_mode(
            &format!("{}_NeWmAiLdIrSiZe", crate::unique::new_base()),
            0o644,
        )?;
        made = Some(file.clone());
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        file.rename_to(tmp.base(), MAILDIRSIZE)
    })();
    if let Err(e) = res {
        if let Some(f) = made {
            let _ = f.remove();
        }
        return Err(MaildirError::io("write", dest, e));
    }
    Ok(())
}

/// May `bytes` and `messages` more be added? `user_spec` is the quota the
/// user database gives; when it differs from the file's first line the file
/// is rewritten with it. Without either there is no quota.
///
/// # Errors
/// I/O errors reading or recalculating `maildirsize`.
pub fn check(
    root: &Path,
    user_spec: Option<QuotaSpec>,
    bytes: i64,
    messages: i64,
) -> Result<Check> {
    let file = read(root)?;
    let (spec, mut recalc, usage, lines, mtime) = match (&file, user_spec) {
        (None, None) => return Ok(Check::NoQuota),
        (None, Some(s)) => (s, true, Usage::default(), 0, SystemTime::UNIX_EPOCH),
        (Some(f), user) => {
            let spec = match (user, f.spec) {
                (Some(u), _) => u,
                (None, Some(s)) => s,
                (None, None) => return Ok(Check::NoQuota),
            };
            (
                spec,
                f.stale || f.spec != Some(spec),
                f.usage,
                f.lines,
                f.mtime,
            )
        }
    };
    if !recalc {
        let wanted = usage.plus(bytes, messages);
        if spec.allows(wanted) {
            return Ok(Check::Within(spec, wanted));
        }
        let young = SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age < TRUST_OVER);
        if lines == 1 && young {
            return Ok(Check::Over(spec, wanted));
        }
        recalc = true;
    }
    debug_assert!(recalc);
    let wanted = recalculate(root, spec)?.plus(bytes, messages);
    Ok(if spec.allows(wanted) {
        Check::Within(spec, wanted)
    } else {
        Check::Over(spec, wanted)
    })
}

/// Fails with [`MaildirError::OverQuota`] when adding `bytes` and
/// `messages` to `folder` (`None`: INBOX) of the Maildir at `root` would
/// exceed its quota. Folders that do not count (Trash) always have room.
///
/// # Errors
/// [`MaildirError::OverQuota`], or I/O errors from [`check`].
pub fn ensure_room(
    root: &Path,
    user_spec: Option<QuotaSpec>,
    folder: Option<&FolderName>,
    bytes: u64,
    messages: u64,
) -> Result<()> {
    if folder.is_some_and(|f| !f.counts_toward_quota()) {
        return Ok(());
    }
    let b = i64::try_from(bytes).unwrap_or(i64::MAX);
    let m = i64::try_from(messages).unwrap_or(i64::MAX);
    match check(root, user_spec, b, m)? {
        Check::Over(..) => Err(MaildirError::OverQuota),
        Check::NoQuota | Check::Within(..) => Ok(()),
    }
}

/// The usage and quota, recalculating when the file asks for it; `None`
/// when the Maildir has no quota.
///
/// # Errors
/// As [`check`].
pub fn usage(root: &Path, user_spec: Option<QuotaSpec>) -> Result<Option<(QuotaSpec, Usage)>> {
    Ok(match check(root, user_spec, 0, 0)? {
        Check::NoQuota => None,
        Check::Within(s, u) | Check::Over(s, u) => Some((s, u)),
    })
}

/// Records that `bytes` and `messages` were added (negative: removed), by
/// appending one line to `maildirsize` when the Maildir has one.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn add(root: &Path, bytes: i64, messages: i64) -> Result<()> {
    if bytes == 0 && messages == 0 {
        return Ok(());
    }
    let path = file_path(root);
    let mut f = match std::fs::File::options()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(MaildirError::io("open", path, e)),
    };
    // One write, so that concurrent appenders never interleave a line.
    f.write_all(format!("{bytes:>12} {messages:>12}\n").as_bytes())
        .map_err(|e| MaildirError::io("append", path, e))
}

/// Removes `maildirsize` when the quota is lifted, or writes it for a new one.
///
/// # Errors
/// I/O errors.
pub fn set(root: &Path, spec: Option<QuotaSpec>) -> Result<()> {
    match spec {
        Some(s) => recalculate(root, s).map(|_| ()),
        None => match std::fs::remove_file(file_path(root)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MaildirError::io("remove", file_path(root), e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        crate::make::make_maildir(&t.path().join("m")).unwrap();
        t
    }

    fn put(dir: &Path, sub: &str, name: &str, len: usize) {
        std::fs::write(dir.join(sub).join(name), vec![b'x'; len]).unwrap();
    }

    #[test]
    fn specs_parse_and_print_as_courier() {
        let s = QuotaSpec::parse("10000000S,1000C").unwrap();
        assert_eq!((s.bytes, s.messages), (10_000_000, 1000));
        assert_eq!(s.to_string(), "10000000S,1000C");
        assert_eq!(QuotaSpec::parse("1000C").unwrap().to_string(), "1000C");
        assert_eq!(QuotaSpec::parse("500S").unwrap().to_string(), "500S");
        assert_eq!(QuotaSpec::parse("nothing"), None);
        assert_eq!(QuotaSpec::parse("0S"), None);
    }

    #[test]
    fn trash_and_deleted_do_not_count() {
        assert!(!counts_file("123.x,S=5:2,ST"));
        assert!(counts_file("123.x,S=5:2,S"));
        assert!(counts_file("123.x,S=5"));
        assert!(!counts_folder(".Trash"));
        assert!(counts_folder(".Trash.Old"));
    }

    #[test]
    fn recalculation_counts_sizes_from_names_and_files() {
        let t = maildir();
        let m = t.path().join("m");
        put(&m, "new", "1.a.host,S=100", 3);
        put(&m, "cur", "2.b.host:2,S", 7);
        put(&m, "cur", "3.c.host,S=50:2,T", 50);
        crate::make::make_folder(&m, &FolderName::new("Trash").unwrap()).unwrap();
        put(&m.join(".Trash"), "cur", "4.d.host,S=1000:2,", 1000);
        crate::make::make_folder(&m, &FolderName::new("Work").unwrap()).unwrap();
        put(&m.join(".Work"), "cur", "5.e.host,S=20:2,", 20);
        let spec = QuotaSpec::parse("1000S").unwrap();
        let u = recalculate(&m, spec).unwrap();
        assert_eq!((u.bytes, u.messages), (127, 3));
        let text = std::fs::read_to_string(m.join(MAILDIRSIZE)).unwrap();
        assert_eq!(text, "1000S\n         127            3\n");
    }

    #[test]
    fn deltas_add_up_and_over_quota_is_rechecked() {
        let t = maildir();
        let m = t.path().join("m");
        let spec = QuotaSpec::parse("100S,2C").unwrap();
        assert_eq!(check(&m, None, 10, 1).unwrap(), Check::NoQuota);
        // The user's quota creates the file.
        assert!(
            matches!(check(&m, Some(spec), 10, 1).unwrap(), Check::Within(_, u) if u.bytes == 10)
        );
        put(&m, "new", "1.a.host,S=60", 60);
        add(&m, 60, 1).unwrap();
        let f = read(&m).unwrap().unwrap();
        assert_eq!((f.usage.bytes, f.usage.messages, f.lines), (60, 1, 2));
        assert!(matches!(check(&m, None, 41, 1).unwrap(), Check::Over(..)));
        assert!(matches!(check(&m, None, 40, 1).unwrap(), Check::Within(..)));
        // Someone removed the message behind our back. A fresh one-line
        // file is trusted when it says "over"; once 15 minutes old it is
        // recalculated, and the answer turns out fine.
        std::fs::remove_file(m.join("new/1.a.host,S=60")).unwrap();
        assert!(matches!(check(&m, None, 90, 1).unwrap(), Check::Over(..)));
        let old = SystemTime::now() - Duration::from_secs(16 * 60);
        std::fs::File::options()
            .write(true)
            .open(m.join(MAILDIRSIZE))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(check(&m, None, 90, 1).unwrap(), Check::Within(_, u) if u.bytes == 90));
    }

    #[test]
    fn a_long_or_negative_file_is_recalculated() {
        let t = maildir();
        let m = t.path().join("m");
        std::fs::write(m.join(MAILDIRSIZE), "100S\n  -5  -1\n").unwrap();
        assert!(read(&m).unwrap().unwrap().stale);
        let mut long = String::from("100000S\n");
        for _ in 0..400 {
            long.push_str("           1            1\n");
        }
        std::fs::write(m.join(MAILDIRSIZE), long).unwrap();
        assert!(read(&m).unwrap().unwrap().stale);
        assert!(matches!(check(&m, None, 0, 0).unwrap(), Check::Within(_, u) if u.messages == 0));
        assert_eq!(read(&m).unwrap().unwrap().lines, 1);
    }
}
