//! Resolving sequence sets (RFC 3501 §9 `sequence-set`) against a mailbox.
//!
//! Ranges are unordered (`3:1` is `1:3`). For message sequence numbers `*` is
//! the number of messages, and a number beyond it is a client error. For UIDs
//! `*` is the highest UID in use, UIDs that name no message are ignored, and
//! `n:*` always includes the last message even when `n` is above every UID.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::ids::Seq;

/// A sequence set that does not fit the mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqSetError {
    /// A message sequence number beyond the number of messages.
    #[error("message sequence number {0} does not exist (the mailbox has {1} messages)")]
    OutOfRange(u32, u32),
    /// `*` used on an empty mailbox with sequence numbers.
    #[error("'*' names no message: the mailbox is empty")]
    EmptyStar,
}

fn value(v: &SeqOrUid, star: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    }
}

/// The ranges of a set as inclusive `(low, high)` pairs with `*` replaced.
fn ranges(set: &SequenceSet, star: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
    set.0.as_ref().iter().map(move |s| match s {
        Sequence::Single(v) => {
            let x = value(v, star);
            (x, x)
        }
        Sequence::Range(a, b) => {
            let (x, y) = (value(a, star), value(b, star));
            (x.min(y), x.max(y))
        }
    })
}

/// Resolves message sequence numbers: sorted, without duplicates.
///
/// # Errors
/// [`SeqSetError`] when a number is beyond `exists` (RFC 3501 §9: such a
/// set is invalid), or `*` is used in an empty mailbox.
pub fn resolve_seqs(set: &SequenceSet, exists: u32) -> Result<Vec<Seq>, SeqSetError> {
    let mut out: Vec<Seq> = Vec::new();
    for (lo, hi) in ranges(set, exists) {
        if lo == 0 {
            return Err(SeqSetError::EmptyStar);
        }
        if hi > exists {
            return Err(SeqSetError::OutOfRange(hi, exists));
        }
        out.extend((lo..=hi).filter_map(Seq::new));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Resolves UIDs against the sorted UIDs of a mailbox; returns the 0-based
/// indices of the messages named, sorted, without duplicates.
pub fn resolve_uids(set: &SequenceSet, uids: &[u32]) -> Vec<usize> {
    resolve_uids_by(set, uids, |u| *u)
}

/// As [`resolve_uids`], over the mailbox's own entries (sorted by UID),
/// `uid` reading each one's: no list of UIDs is built per command.
pub fn resolve_uids_by<T>(set: &SequenceSet, items: &[T], uid: impl Fn(&T) -> u32) -> Vec<usize> {
    let Some(max) = items.last().map(&uid) else {
        return Vec::new();
    };
    let mut out: Vec<usize> = Vec::new();
    for (lo, hi) in ranges(set, max) {
        let start = items.partition_point(|m| uid(m) < lo);
        let end = items.partition_point(|m| uid(m) <= hi);
        out.extend(start..end);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// True if `uid` is in the set (for `SEARCH UID`), `*` being `max_uid`.
pub fn contains(set: &SequenceSet, n: u32, star: u32) -> bool {
    ranges(set, star).any(|(lo, hi)| lo <= n && n <= hi)
}

/// Formats numbers as a compact sequence set (`1:3,7,9:10`), for
/// COPYUID/APPENDUID. `nums` need not be sorted; order is kept.
pub fn format_compact(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j].wrapping_add(1) {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}:{}", start, nums[j]));
        } else {
            out.push_str(&start.to_string());
        }
        i = j + 1;
    }
    out
}

/// The numbers `nums` as a sequence set (compact: runs become ranges);
/// `None` when there are none (an empty set has no form in IMAP) or one is
/// zero.
pub fn to_sequence_set(nums: &[u32]) -> Option<SequenceSet> {
    if nums.is_empty() || nums.contains(&0) {
        return None;
    }
    SequenceSet::try_from(format_compact(nums).as_str()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::sequence::SequenceSet;

    fn set(s: &str) -> SequenceSet {
        s.try_into().unwrap()
    }

    #[test]
    fn seqs() {
        let n = |s: &str| -> Vec<u32> {
            resolve_seqs(&set(s), 5)
                .unwrap()
                .into_iter()
                .map(Seq::get)
                .collect()
        };
        assert_eq!(n("3:1"), vec![1, 2, 3]);
        assert_eq!(n("*:4"), vec![4, 5]);
        assert_eq!(n("2,2,1"), vec![1, 2]);
        assert!(resolve_seqs(&set("6"), 5).is_err());
        assert!(resolve_seqs(&set("*"), 0).is_err());
    }

    #[test]
    fn uids() {
        let u = [3, 5, 9];
        assert_eq!(resolve_uids(&set("1:4"), &u), vec![0]);
        assert_eq!(resolve_uids(&set("10:*"), &u), vec![2]);
        assert_eq!(resolve_uids(&set("100"), &u), Vec::<usize>::new());
        assert_eq!(resolve_uids(&set("*"), &[]), Vec::<usize>::new());
        assert_eq!(resolve_uids(&set("9:1"), &u), vec![0, 1, 2]);
        let entries = [(3, 'a'), (5, 'b'), (9, 'c')];
        assert_eq!(resolve_uids_by(&set("4:*"), &entries, |e| e.0), vec![1, 2]);
    }

    #[test]
    fn compact() {
        assert_eq!(format_compact(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(format_compact(&[5]), "5");
        assert_eq!(to_sequence_set(&[4, 5, 6, 9]), Some(set("4:6,9")));
        assert_eq!(to_sequence_set(&[]), None);
        assert_eq!(to_sequence_set(&[0, 1]), None);
    }
}
