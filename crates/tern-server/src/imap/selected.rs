//! The untagged updates that keep a client's view of the selected mailbox
//! current, and what SELECT, CLOSE, EXPUNGE and IDLE (their handlers in
//! [`super::cmd`]) share.
//!
//! Changes found on disk (other sessions, other programs) are announced
//! after each command, but EXPUNGE only where RFC 3501 §7.4.1 allows it:
//! never after FETCH, STORE, SEARCH or COPY by sequence number, because the
//! client's numbers would shift under it.

use std::collections::BTreeSet;

use rustc_hash::FxHashSet as HashSet;
use std::sync::Arc;

use tern_imap_proto::response::Code;
use tern_maildir::folder::MoveNew;
use tern_maildir::Flag;

use super::session::{blocking, Known, Reply, Session, State};

/// The FLAGS/PERMANENTFLAGS list: system flags and keywords in use.
pub(crate) fn flag_list(keywords: &BTreeSet<Arc<str>>) -> String {
    let mut s = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for k in keywords {
        s.push(' ');
        s.push_str(k);
    }
    s
}

/// The FLAGS of one message as FETCH shows them.
pub(crate) fn message_flags(k: &Known, recent: bool) -> String {
    let mut out = Vec::with_capacity(32);
    write_flags(&mut out, k, recent);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the flags of one message (without parentheses), allocation-free.
pub(crate) fn write_flags(out: &mut Vec<u8>, k: &Known, recent: bool) {
    let start = out.len();
    let sep = |out: &mut Vec<u8>| {
        if out.len() > start {
            out.push(b' ');
        }
    };
    for f in k.flags.iter() {
        sep(out);
        out.extend_from_slice(f.imap_name().as_bytes());
    }
    if recent {
        sep(out);
        out.extend_from_slice(b"\\Recent");
    }
    for kw in k.keywords.iter() {
        sep(out);
        out.extend_from_slice(kw.as_bytes());
    }
}

/// Removes the messages of `allowed` that have \Deleted now (looked up on
/// disk, not in the session's possibly older view) and wakes the folder's
/// other sessions.
pub(super) async fn expunge_deleted(
    open: Arc<crate::folders::OpenFolder>,
    allowed: HashSet<u32>,
) -> Result<(), Reply> {
    let o = open.clone();
    blocking(move || {
        let view = o.folder.refresh(MoveNew::No)?;
        let doomed: Vec<u32> = view
            .messages
            .iter()
            .filter(|m| m.flags.contains(Flag::Deleted) && allowed.contains(&m.uid))
            .map(|m| m.uid)
            .collect();
        o.folder.expunge(&doomed)
    })
    .await?;
    open.changed.notify_waiters();
    Ok(())
}

impl Session {
    pub(super) fn take_user(&mut self) -> Option<crate::users::User> {
        match std::mem::replace(&mut self.state, State::Logout) {
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Looks at the selected folder and tells the client what changed.
    pub(crate) async fn announce(&mut self, expunge_ok: bool) {
        let (open, rw, from, seen_up_to) = match &self.state {
            State::Selected { mailbox, .. } => (
                mailbox.open.clone(),
                !mailbox.read_only,
                mailbox.in_step.then_some(mailbox.synced.generation),
                mailbox.known.last().map_or(0, |k| k.uid),
            ),
            _ => return,
        };
        let res = blocking(move || {
            let view = open
                .folder
                .refresh(if rw { MoveNew::Yes } else { MoveNew::No })?;
            let claimed = if rw {
                open.folder.claim_recent()
            } else {
                // Only what lies above what this session knows can be news.
                open.folder.peek_recent_above(seen_up_to)
            };
            // What changed since the view this session is in step with:
            // only those messages are compared (see tern_maildir's
            // change log).
            let touched = from.and_then(|g| open.folder.changes_between(g, view.generation));
            Ok((view, claimed, touched))
        })
        .await;
        let (view, claimed, touched) = match res {
            Ok(v) => v,
            Err(r) if r.code == Some(Code::Nonexistent) => {
                // Deleted or renamed away under us (RFC 3501 leaves the
                // response open; Dovecot ends the session the same way).
                self.conn.out.extend_from_slice(
                    b"* BYE Selected mailbox was deleted or renamed, have to disconnect\r\n",
                );
                self.state = State::Logout;
                return;
            }
            Err(_) => return,
        };
        let State::Selected { mailbox, .. } = &mut self.state else {
            return;
        };
        // A read-only session sees the unclaimed \Recent set again each
        // time: only what it did not have yet counts as news.
        let claimed: Vec<u32> = claimed
            .into_iter()
            .filter(|u| !mailbox.recent.contains(u))
            .collect();
        if Arc::ptr_eq(&view, &mailbox.synced) && claimed.is_empty() {
            return;
        }
        if view.uidvalidity != mailbox.uidvalidity {
            self.conn
                .out
                .extend_from_slice(b"* BYE Mailbox UIDVALIDITY changed, please reconnect\r\n");
            self.state = State::Logout;
            return;
        }
        mailbox.recent.extend(claimed);
        let old =
            Arc::try_unwrap(std::mem::take(&mut mailbox.known)).unwrap_or_else(|a| (*a).clone());
        let expunges = if expunge_ok {
            super::sync::Expunges::Allowed
        } else {
            super::sync::Expunges::HeldBack
        };
        let access = if mailbox.read_only {
            super::sync::Access::ReadOnly
        } else {
            super::sync::Access::ReadWrite
        };
        let by_changes = match touched {
            Some(t) => super::sync::synchronize_changes(
                old,
                &view,
                &t,
                expunges,
                &mailbox.recent,
                &mut mailbox.keywords,
                access,
            ),
            None => Err(old),
        };
        let synced = by_changes.unwrap_or_else(|old| {
            super::sync::synchronize(
                old,
                &view,
                expunges,
                &mailbox.recent,
                &mut mailbox.keywords,
                access,
            )
        });
        // In step: the next command need not compare them again unless the
        // view changes, and then only what the change log names.
        mailbox.in_step = synced.in_step;
        if synced.in_step {
            mailbox.synced = view.clone();
        }
        mailbox.known = Arc::new(synced.known);
        self.conn.out.extend_from_slice(synced.responses.as_bytes());
    }
}
