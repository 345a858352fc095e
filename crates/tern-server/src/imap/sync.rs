//! The synchronisation step: from what a session last told its client
//! about the selected mailbox, and the folder as it is now, the untagged
//! responses allowed at this point (RFC 3501 §7.4.1, §5.2) and the
//! session's new picture. Pure: no I/O, no locks, unit- and model-tested.
//!
//! ```text
//!  session's `known` ──┐
//!                      ├─► synchronize ─► EXPUNGE (descending) · FLAGS · EXISTS · RECENT · FETCH FLAGS
//!  folder's view ──────┘                └► new `known` (+ whether it equals the view)
//! ```
//!
//! Rules: a message gone from the view is announced with EXPUNGE only where
//! the command allows it ([`Expunges::Allowed`]; not during FETCH, STORE,
//! SEARCH or COPY by sequence number), else it stays in the picture until a
//! later command; a message numbered below one the client knows cannot be
//! shown in order and waits (as with another program's late numbering);
//! new messages above the last known UID are EXISTS (and RECENT); a message
//! whose flags or keywords changed gets an untagged FETCH of its FLAGS; new
//! keywords make a new FLAGS (and PERMANENTFLAGS when writable) before.
//!
//! Two ways to the same answer: [`synchronize`] compares the whole picture
//! with the whole view; [`synchronize_changes`] looks only at the UIDs the
//! folder's change log names since the view the session was in step with
//! (and at what lies above its last UID), so that one change in a folder of
//! 100,000 messages costs each session a few lookups. A model test holds
//! the second to the first's answers, line for line.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;
use tern_imap_proto::ids::Seq;
use tern_maildir::FolderView;

use super::selected::{flag_list, message_flags};
use super::session::Known;

/// Whether EXPUNGE responses may be sent now (RFC 3501 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expunges {
    /// After any command but FETCH, STORE, SEARCH and COPY by number.
    Allowed,
    /// Held back: the client numbers messages by position.
    HeldBack,
}

/// Whether PERMANENTFLAGS goes with a new FLAGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// SELECT.
    ReadWrite,
    /// EXAMINE.
    ReadOnly,
}

/// What one synchronisation gives.
#[derive(Debug)]
pub(crate) struct Synced {
    /// The session's new picture, in sequence order.
    pub known: Vec<Known>,
    /// True when nothing was held back: comparing again is needless until
    /// the view changes.
    pub in_step: bool,
    /// The untagged responses, each with its CRLF, in the order to send.
    pub responses: String,
}

/// One synchronisation step; `keywords` is the set already announced in
/// FLAGS, grown by the keywords now in use; `recent` the UIDs that are
/// \Recent for this session.
pub(crate) fn synchronize(
    old: Vec<Known>,
    view: &FolderView,
    expunges: Expunges,
    recent: &HashSet<u32>,
    keywords: &mut BTreeSet<Arc<str>>,
    access: Access,
) -> Synced {
    let old_len = old.len();
    let mut known: Vec<Known> = Vec::with_capacity(view.messages.len());
    let mut expunged: Vec<Seq> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    let mut held_back = false;
    // A \Recent message of this session was expunged: the count changed.
    let mut recent_gone = false;
    let mut j = 0;
    for (i, k) in old.into_iter().enumerate() {
        while j < view.messages.len() && view.messages[j].uid < k.uid {
            j += 1; // numbered below a known UID: cannot be shown in order
        }
        match view.messages.get(j) {
            Some(m) if m.uid == k.uid => {
                if m.flags != k.flags
                    || (!Arc::ptr_eq(&m.keywords, &k.keywords) && m.keywords != k.keywords)
                {
                    changed.push(known.len());
                }
                known.push(Known::of(m));
                j += 1;
            }
            _ if expunges == Expunges::Allowed => {
                recent_gone |= recent.contains(&k.uid);
                expunged.extend(Seq::from_index(i))
            }
            _ => {
                held_back = true;
                known.push(k);
            }
        }
    }
    let last_uid = known.last().map(|k| k.uid).unwrap_or(0);
    let mut added = 0;
    // Everything above the last UID kept is new, also a message numbered
    // late that was below a known UID until that one was expunged now.
    let above = view.messages.partition_point(|m| m.uid <= last_uid);
    for m in &view.messages[above..] {
        known.push(Known::of(m));
        added += 1;
    }
    let mut out = String::new();
    // Descending numbers stay valid as each EXPUNGE renumbers only later
    // messages.
    for seq in expunged.iter().rev() {
        let _ = write!(out, "* {seq} EXPUNGE\r\n");
    }
    let in_use: BTreeSet<Arc<str>> = known
        .iter()
        .flat_map(|k| k.keywords.iter().cloned())
        .collect();
    if !in_use.is_subset(keywords) {
        keywords.extend(in_use);
        let fl = flag_list(keywords);
        let _ = write!(out, "* FLAGS ({fl})\r\n");
        if access == Access::ReadWrite {
            let _ = write!(out, "* OK [PERMANENTFLAGS ({fl} \\*)] Flags permitted\r\n");
        }
    }
    if added > 0 || (!expunged.is_empty() && known.len() != old_len - expunged.len()) {
        let _ = write!(out, "* {} EXISTS\r\n", known.len());
    }
    // RECENT with EXISTS, and with EXPUNGE when the count fell (as
    // Dovecot sends it; RFC 3501 §7.3.2 allows it at any time).
    if added > 0 || recent_gone {
        let n = known.iter().filter(|k| recent.contains(&k.uid)).count();
        let _ = write!(out, "* {n} RECENT\r\n");
    }
    for idx in changed {
        let k = &known[idx];
        let flags = message_flags(k, recent.contains(&k.uid));
        let _ = write!(
            out,
            "* {} FETCH (UID {} FLAGS ({flags}))\r\n",
            Seq::at(idx),
            k.uid
        );
    }
    // Held-back expunges leave `known` different from the view; otherwise
    // it is the view (but for a message numbered late below a known UID,
    // which cannot be shown in order until the UIDs above it are gone: a
    // later step finds it above the last kept UID, with or without the
    // change log naming it).
    let in_step = !held_back;
    Synced {
        known,
        in_step,
        responses: out,
    }
}

/// The same step for a session that was in step with an earlier view of
/// the folder, given the UIDs the views since then touched (sorted, from
/// the folder's change log): only those are looked at, so a change costs a
/// lookup per touched UID and per session, not a walk of the folder.
/// Answers exactly what [`synchronize`] answers (the model test holds them
/// to it); `None` where it cannot, a message gone while EXPUNGE must be
/// held back, and the caller falls back to [`synchronize`].
pub(crate) fn synchronize_changes(
    mut known: Vec<Known>,
    view: &FolderView,
    touched: &[u32],
    expunges: Expunges,
    recent: &HashSet<u32>,
    keywords: &mut BTreeSet<Arc<str>>,
    access: Access,
) -> Result<Synced, Vec<Known>> {
    // A message that left while EXPUNGE must wait keeps the session out of
    // step: that is the whole comparison's work, before anything changes.
    if expunges == Expunges::HeldBack
        && touched
            .iter()
            .any(|u| view.find(*u).is_none() && known.binary_search_by_key(u, |k| k.uid).is_ok())
    {
        return Err(known);
    }
    // Positions in the old numbering of the messages that left.
    let mut expunged: Vec<usize> = Vec::new();
    let mut changed: Vec<u32> = Vec::new();
    let mut recent_gone = false;
    for &uid in touched {
        let at = known.binary_search_by_key(&uid, |k| k.uid);
        match (at, view.find(uid)) {
            (Ok(i), Some(m)) => {
                let k = &mut known[i];
                if m.flags != k.flags
                    || (!Arc::ptr_eq(&m.keywords, &k.keywords) && m.keywords != k.keywords)
                {
                    k.flags = m.flags.clone();
                    k.keywords = m.keywords.clone();
                    changed.push(uid);
                }
            }
            (Ok(i), None) => {
                recent_gone |= recent.contains(&uid);
                expunged.push(i)
            }
            // New, or numbered late: found from the view below.
            (Err(_), _) => {}
        }
    }
    if !expunged.is_empty() {
        let mut gone = expunged.iter().peekable();
        let mut i = 0;
        known.retain(|_| {
            let keep = gone.peek() != Some(&&i);
            if !keep {
                gone.next();
            }
            i += 1;
            keep
        });
    }
    // Everything above the last UID the session keeps is new, whether the
    // log names it or not: a message numbered late below a known UID (as
    // above) becomes showable once the messages above it are expunged.
    let last_uid = known.last().map(|k| k.uid).unwrap_or(0);
    let above = view.messages.partition_point(|m| m.uid <= last_uid);
    let added: Vec<Known> = view.messages[above..].iter().map(Known::of).collect();
    let new_keywords = changed
        .iter()
        .filter_map(|u| known.binary_search_by_key(u, |k| k.uid).ok())
        .map(|i| &known[i])
        .chain(added.iter())
        .flat_map(|k| k.keywords.iter())
        .any(|kw| !keywords.contains(kw));
    let added_any = !added.is_empty();
    known.extend(added);
    let mut out = String::new();
    for seq in expunged.iter().rev().filter_map(|&i| Seq::from_index(i)) {
        let _ = write!(out, "* {seq} EXPUNGE\r\n");
    }
    if new_keywords {
        keywords.extend(known.iter().flat_map(|k| k.keywords.iter().cloned()));
        let fl = flag_list(keywords);
        let _ = write!(out, "* FLAGS ({fl})\r\n");
        if access == Access::ReadWrite {
            let _ = write!(out, "* OK [PERMANENTFLAGS ({fl} \\*)] Flags permitted\r\n");
        }
    }
    if added_any {
        let _ = write!(out, "* {} EXISTS\r\n", known.len());
    }
    if added_any || recent_gone {
        // Whichever is smaller: the session's \Recent set or its list.
        let n = if recent.len() < known.len() / 8 {
            recent
                .iter()
                .filter(|u| known.binary_search_by_key(*u, |k| k.uid).is_ok())
                .count()
        } else {
            known.iter().filter(|k| recent.contains(&k.uid)).count()
        };
        let _ = write!(out, "* {n} RECENT\r\n");
    }
    for uid in changed {
        if let Ok(i) = known.binary_search_by_key(&uid, |k| k.uid) {
            let k = &known[i];
            let flags = message_flags(k, recent.contains(&k.uid));
            let _ = write!(
                out,
                "* {} FETCH (UID {} FLAGS ({flags}))\r\n",
                Seq::at(i),
                k.uid
            );
        }
    }
    Ok(Synced {
        known,
        in_step: true,
        responses: out,
    })
}

#[cfg(test)]
mod tests;
