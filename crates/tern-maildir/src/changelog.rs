//! The change log of a folder: for each view the folder publishes, the UIDs
//! whose entry differs from the view before (added, removed, flags or
//! keywords changed).
//!
//! A session that was in step with the view of generation `g` brings itself
//! up to date by looking at those UIDs only, so that one change in a folder
//! of 100,000 messages costs each of the sessions on it a few lookups, not a
//! walk of its whole list. The log is bounded (entries and UIDs); a session
//! further behind than it reaches, or a change too large to be worth listing
//! (a rescan that found half the folder renamed), gets `None` and compares
//! everything, as before the log existed.

use std::collections::VecDeque;

use crate::folder::MessageEntry;

/// Views remembered.
const MAX_ENTRIES: usize = 1024;
/// UIDs remembered over all entries.
const MAX_UIDS: usize = 1 << 16;
/// A change touching more UIDs than this is recorded as "unknown": whoever
/// must catch up with it compares everything anyway.
const MAX_UIDS_PER_ENTRY: usize = MAX_UIDS / 4;

/// The touched UIDs of recent views, by generation.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    /// (generation, sorted UIDs or unknown), oldest first, generations
    /// consecutive.
    entries: VecDeque<(u64, Option<Box<[u32]>>)>,
    uids: usize,
}

impl ChangeLog {
    /// Records the UIDs view `generation` touched.
    pub(crate) fn record(&mut self, generation: u64, mut touched: Vec<u32>) {
        if self
            .entries
            .back()
            .is_some_and(|(g, _)| g.checked_add(1) != Some(generation))
        {
            // Not the next view (cannot happen through Folder): forget all
            // rather than answer wrongly.
            self.entries.clear();
            self.uids = 0;
        }
        let touched = (touched.len() <= MAX_UIDS_PER_ENTRY).then(|| {
            touched.sort_unstable();
            touched.dedup();
            touched.into_boxed_slice()
        });
        self.uids += touched.as_ref().map_or(0, |t| t.len());
        self.entries.push_back((generation, touched));
        while self.entries.len() > MAX_ENTRIES || self.uids > MAX_UIDS {
            match self.entries.pop_front() {
                Some((_, t)) => self.uids -= t.map_or(0, |t| t.len()),
                None => break,
            }
        }
    }

    /// The UIDs touched by the views after `from` up to `to`, sorted and
    /// without repeats; `None` when the log does not reach back to `from` or
    /// a change in between is unknown.
    pub(crate) fn between(&self, from: u64, to: u64) -> Option<Vec<u32>> {
        if from == to {
            return Some(Vec::new());
        }
        if from > to {
            return None;
        }
        let oldest = self.entries.front()?.0;
        if oldest > from.checked_add(1)? {
            return None;
        }
        let mut out = Vec::new();
        for (g, t) in &self.entries {
            if *g <= from || *g > to {
                continue;
            }
            out.extend_from_slice(t.as_deref()?);
        }
        if self.entries.back().is_none_or(|(g, _)| *g < to) {
            return None;
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// The UIDs whose entry differs between two views' message lists (each in
/// ascending UID order): in one only, or with other flags or keywords. A
/// rename that changes neither (new/ to cur/) is no change for a client.
pub(crate) fn diff(old: &[MessageEntry], new: &[MessageEntry]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < old.len() || j < new.len() {
        // Only in the old view (gone), or only in the new (added)?
        let gone = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.uid == b.uid => {
                if a.flags != b.flags || a.keywords != b.keywords {
                    out.push(a.uid);
                }
                i += 1;
                j += 1;
                continue;
            }
            (Some(a), Some(b)) => a.uid < b.uid,
            (a, _) => a.is_some(),
        };
        if gone {
            out.push(old[i].uid);
            i += 1;
        } else {
            out.push(new[j].uid);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Flag, Flags};

    fn entry(uid: u32, seen: bool) -> MessageEntry {
        let mut flags = Flags::empty();
        flags.set(Flag::Seen, seen);
        MessageEntry {
            uid,
            base: Arc::from(format!("m{uid}")),
            file_name: Arc::from(format!("m{uid}:2,")),
            in_new: false,
            flags,
            keywords: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn diff_names_added_removed_and_changed() {
        let old = [entry(1, false), entry(2, false), entry(4, true)];
        let mut moved = entry(4, true);
        moved.in_new = true;
        let new = [entry(2, true), entry(3, false), moved, entry(9, false)];
        assert_eq!(diff(&old, &new), vec![1, 2, 3, 9]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn between_unions_the_views_in_range() {
        let mut log = ChangeLog::default();
        log.record(1, vec![5, 3]);
        log.record(2, vec![3, 7]);
        log.record(3, vec![1]);
        assert_eq!(log.between(0, 3), Some(vec![1, 3, 5, 7]));
        assert_eq!(log.between(1, 2), Some(vec![3, 7]));
        assert_eq!(log.between(3, 3), Some(vec![]));
        assert_eq!(log.between(2, 4), None, "not published yet");
        assert_eq!(log.between(3, 2), None);
    }

    #[test]
    fn unknown_or_forgotten_changes_give_none() {
        let mut log = ChangeLog::default();
        log.record(1, vec![1]);
        log.record(2, (0..MAX_UIDS_PER_ENTRY as u32 + 1).collect());
        log.record(3, vec![2]);
        assert_eq!(log.between(0, 3), None, "too large to list");
        assert_eq!(log.between(2, 3), Some(vec![2]));
        for g in 4..4 + MAX_ENTRIES as u64 {
            log.record(g, vec![1]);
        }
        assert_eq!(log.between(2, 3), None, "forgotten");
        log.record(4 + MAX_ENTRIES as u64, vec![1]);
        let last = 4 + MAX_ENTRIES as u64;
        assert_eq!(log.between(last - 1, last), Some(vec![1]));
    }

    #[test]
    fn the_log_stays_within_its_uid_bound() {
        let mut log = ChangeLog::default();
        for g in 1..=100u64 {
            log.record(g, (0..MAX_UIDS_PER_ENTRY as u32).collect());
        }
        assert!(log.uids <= MAX_UIDS);
        assert!(log.between(99, 100).is_some());
        assert!(log.between(1, 100).is_none());
    }
}
