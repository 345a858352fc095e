//! A new UIDVALIDITY for a folder whose UID list is made afresh.
//!
//! Courier-IMAP and Dovecot take the current time. Alone, that gives a
//! folder deleted and created again within the same second its old
//! UIDVALIDITY back, which RFC 3501 §2.3.1.1 forbids: a client that cached
//! the old folder would take the new messages for the old ones. So each
//! Maildir keeps the last value given in `tern-uidvalidity` at its root
//! (a decimal number and a line end), and a new one is the current time or,
//! when that is not larger, the last value plus one. The file is read and
//! replaced under the dot-lock `tern-uidvalidity.lock` beside it (link(2),
//! so also over NFS), so two tern processes never give one value twice; it
//! is written through
//! a temporary file and a rename, so a crash leaves the old value or the
//! new one. Courier reads the resulting `courierimapuiddb` as any other:
//! the value is only a number to it.

use std::path::Path;

use crate::error::{MaildirError, Result};

/// The file holding the last UIDVALIDITY given in this Maildir.
pub const FILE_NAME: &str = "tern-uidvalidity";
const LOCK_NAME: &str = "tern-uidvalidity.lock";

/// The next UIDVALIDITY for a folder of the Maildir at `root`: larger than
/// any this function gave there before and than `floor` (the value of a
/// damaged list being replaced, else 0), and at least the current time.
///
/// # Errors
/// The lock or the file cannot be written (the caller cannot then promise
/// a value never given before).
pub fn next_above(root: &Path, floor: u32) -> Result<u32> {
    let lock = crate::lock::DotLock::acquire(&root.join(LOCK_NAME))?;
    let path = root.join(FILE_NAME);
    // A number and a line end; whatever else someone put there is not read.
    let last = match crate::unique::read_head_nofollow(&path, 64) {
        Ok(data) => parse(&data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(MaildirError::io("read", &path, e)),
    };
    let value = choose(last.max(floor), now());
    crate::unique::write_atomic(&path, format!("{value}\n").as_bytes())?;
    drop(lock);
    Ok(value)
}

/// The value after `last` at time `now` (seconds): never 0, never `last`
/// or below it; past the largest value it wraps to the current time, the
/// one place a value can come back, after 2^32 creations in one Maildir.
fn choose(last: u32, now: u32) -> u32 {
    match last.checked_add(1) {
        Some(after) => now.max(after).max(1),
        None => now.max(1),
    }
}

/// The value of the file; anything else than a number reads as 0 (never
/// given: the current time is then taken).
fn parse(data: &[u8]) -> u32 {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_is_larger_than_the_last() {
        assert_eq!(choose(0, 1_700_000_000), 1_700_000_000);
        assert_eq!(choose(1_700_000_000, 1_700_000_000), 1_700_000_001);
        assert_eq!(choose(1_800_000_000, 1_700_000_000), 1_800_000_001);
        assert_eq!(choose(u32::MAX, 5), 5);
        assert_eq!(choose(0, 0), 1);
        assert_eq!(parse(b"42\n"), 42);
        assert_eq!(parse(b"garbage"), 0);
        assert_eq!(parse(b"42\nmore"), 42);
    }

    #[test]
    fn a_file_holding_more_than_a_number_counts_by_its_first_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut data = b"4000000000\n".to_vec();
        data.resize(8 << 20, b'x');
        std::fs::write(dir.path().join(FILE_NAME), &data).unwrap_or_else(|e| panic!("{e}"));
        let v = next_above(dir.path(), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, 4_000_000_001);
    }

    #[test]
    fn a_maildir_never_gives_one_value_twice() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let v = next_above(dir.path(), 0).unwrap_or_else(|e| panic!("{e}"));
            assert!(seen.insert(v), "{v} given twice");
        }
        // Also from threads at once (two processes take the same lock).
        let values: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..20)
                            .map(|_| next_above(dir.path(), 0).unwrap_or_else(|e| panic!("{e}")))
                            .collect::<Vec<u32>>()
                    })
                })
                .collect();
            hs.into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for v in values {
            assert!(seen.insert(v), "{v} given twice");
        }
    }
}
