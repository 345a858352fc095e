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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;
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
    let mut expunged: Vec<usize> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    let mut held_back = false;
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
                known.push(Known {
                    uid: m.uid,
                    flags: m.flags.clone(),
                    keywords: m.keywords.clone(),
                });
                j += 1;
            }
            _ if expunges == Expunges::Allowed => expunged.push(i + 1),
            _ => {
                held_back = true;
                known.push(k);
            }
        }
    }
    let last_uid = known.last().map(|k| k.uid).unwrap_or(0);
    let mut added = 0;
    for m in &view.messages[j.min(view.messages.len())..] {
        if m.uid > last_uid {
            known.push(Known {
                uid: m.uid,
                flags: m.flags.clone(),
                keywords: m.keywords.clone(),
            });
            added += 1;
        }
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
    if added > 0 {
        let n = known.iter().filter(|k| recent.contains(&k.uid)).count();
        let _ = write!(out, "* {n} RECENT\r\n");
    }
    for idx in changed {
        let k = &known[idx];
        let flags = message_flags(k, recent.contains(&k.uid));
        let _ = write!(
            out,
            "* {} FETCH (UID {} FLAGS ({flags}))\r\n",
            idx + 1,
            k.uid
        );
    }
    // Held-back expunges leave `known` different from the view; otherwise
    // it is the view (but for a message numbered late below a known UID,
    // which cannot be shown in order whatever the next command is).
    let in_step = !held_back;
    Synced {
        known,
        in_step,
        responses: out,
    }
}

#[cfg(test)]
mod tests;
