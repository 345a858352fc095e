//! SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE, IDLE, and the untagged
//! updates that keep a client's view of the selected mailbox current.
//!
//! Changes found on disk (other sessions, other programs) are announced
//! after each command, but EXPUNGE only where RFC 3501 §7.4.1 allows it:
//! never after FETCH, STORE, SEARCH or COPY by sequence number, because the
//! client's numbers would shift under it.

use std::collections::BTreeSet;

use rustc_hash::FxHashSet as HashSet;
use std::sync::Arc;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use tern_imap_proto::response::Code;
use tern_imap_proto::{framing, imap_codec, seqset};
use tern_maildir::folder::MoveNew;
use tern_maildir::Flag;

use super::session::{blocking, End, Known, Reply, Selected, Session, State};

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
async fn expunge_deleted(
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
    fn take_user(&mut self) -> Option<crate::users::User> {
        match std::mem::replace(&mut self.state, State::Logout) {
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
            other => {
                self.state = other;
                None
            }
        }
    }

    pub(crate) async fn select(&mut self, mailbox: Mailbox<'static>, read_only: bool) -> Reply {
        // Any selected mailbox is deselected first, even if this fails.
        let Some(user) = self.take_user() else {
            return Reply::bad("Not logged in");
        };
        self.state = State::Authenticated { user: user.clone() };
        let target = match self.svc.namespace.resolve_mailbox(&mailbox) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let dir = user.maildir.folder_dir(target.folder());
        match super::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        let open = self.svc.folders.get(&dir);
        let o = open.clone();
        let res = blocking(move || {
            let view =
                o.folder
                    .refresh_exact(if read_only { MoveNew::No } else { MoveNew::Yes })?;
            // EXAMINE reports the \Recent messages as SELECT and STATUS
            // would, but leaves them to the next SELECT.
            let recent: HashSet<u32> = if read_only {
                o.folder.peek_recent().into_iter().collect()
            } else {
                o.folder.claim_recent().into_iter().collect()
            };
            Ok((view, recent, o.folder.numbering_held()))
        })
        .await;
        let (view, recent, held) = match res {
            Ok(v) => v,
            Err(r) => return r,
        };
        let known: Vec<Known> = view.messages.iter().map(Known::of).collect();
        let keywords: BTreeSet<Arc<str>> = known
            .iter()
            .flat_map(|k| k.keywords.iter().cloned())
            .collect();
        let flags = flag_list(&keywords);
        self.untagged(&format!("FLAGS ({flags})"));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            self.untagged(&format!(
                "OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", known.len()));
        let recent_count = known.iter().filter(|k| recent.contains(&k.uid)).count();
        self.untagged(&format!("{recent_count} RECENT"));
        if let Some(first) = known.iter().position(|k| !k.flags.contains(Flag::Seen)) {
            self.untagged(&format!("OK [UNSEEN {}] First unseen", first + 1));
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", view.uidvalidity));
        self.untagged(&format!(
            "OK [UIDNEXT {}] Predicted next UID",
            view.next_uid
        ));
        if held {
            self.untagged(
                "NO [ALERT] The disk is full: new messages are not shown until there is room again",
            );
        }
        tracing::debug!(mailbox = %self.svc.namespace.wire_name(&target), read_only, "selected");
        self.state = State::Selected {
            user,
            mailbox: Box::new(Selected {
                open,
                read_only,
                uidvalidity: view.uidvalidity,
                known: Arc::new(known),
                recent,
                keywords,
                synced: view,
                in_step: true,
                saved: Vec::new(),
            }),
        };
        if read_only {
            Reply::ok_code(Code::ReadOnly, "EXAMINE completed")
        } else {
            Reply::ok_code(Code::ReadWrite, "SELECT completed")
        }
    }

    pub(crate) async fn close(&mut self, expunge: bool) -> Reply {
        let State::Selected { mailbox, .. } = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        if expunge && !mailbox.read_only {
            let open = mailbox.open.clone();
            let known: HashSet<u32> = mailbox.known.iter().map(|k| k.uid).collect();
            if let Err(r) = expunge_deleted(open, known).await {
                return r;
            }
        }
        if let Some(user) = self.take_user() {
            self.state = State::Authenticated { user };
        }
        Reply::ok(if expunge {
            "CLOSE completed"
        } else {
            "UNSELECT completed"
        })
    }

    pub(crate) async fn expunge(&mut self, only: Option<SequenceSet>) -> Result<Reply, End> {
        let State::Selected { mailbox, .. } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if mailbox.read_only {
            return Ok(Reply::no(Some(Code::ReadOnly), "Mailbox is read-only"));
        }
        let open = mailbox.open.clone();
        let allowed: HashSet<u32> = match &only {
            Some(set) => {
                let uids = mailbox.uids();
                seqset::resolve_uids(set, &uids)
                    .into_iter()
                    .map(|i| uids[i])
                    .collect()
            }
            None => mailbox.known.iter().map(|k| k.uid).collect(),
        };
        match expunge_deleted(open, allowed).await {
            Ok(()) => Ok(Reply::ok("EXPUNGE completed")),
            Err(r) => Ok(r),
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

    /// IDLE (RFC 2177): updates are pushed until the client sends DONE.
    pub(crate) async fn idle(&mut self) -> Result<Option<Reply>, End> {
        if let State::Selected { mailbox, .. } = &self.state {
            mailbox.open.watch();
        }
        self.conn.out.extend_from_slice(b"+ idling\r\n");
        let mut shutdown = self.svc.shutdown.clone();
        loop {
            let open = match &self.state {
                State::Selected { mailbox, .. } => Some(mailbox.open.clone()),
                _ => None,
            };
            enum Woke {
                Line(Option<Vec<u8>>),
                Change,
                Shutdown,
            }
            // The session has no timer of its own: the folder's change
            // signal carries in-process changes, inotify events and the
            // folder's safety-net rescan (see crate::folders).
            let notified = async {
                match &open {
                    Some(o) => o.changed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(notified);
            // Listening starts before the folder is looked at, so that a
            // change in between still wakes the session.
            let already = futures_util::FutureExt::now_or_never(notified.as_mut()).is_some();
            self.announce(true).await;
            self.flush().await?;
            if matches!(self.state, State::Logout) {
                return Err(End::Closed);
            }
            if already {
                continue;
            }
            let woke = tokio::select! {
                line = self.read_line() => Woke::Line(line?),
                _ = &mut notified => Woke::Change,
                _ = shutdown.changed() => Woke::Shutdown,
            };
            match woke {
                Woke::Shutdown => {
                    self.conn
                        .out
                        .extend_from_slice(b"* BYE Server shutting down\r\n");
                    self.flush().await?;
                    return Err(End::Closed);
                }
                Woke::Line(line) => {
                    let ok = line
                        .as_deref()
                        .map(framing::strip_eol)
                        .is_some_and(|l| l.eq_ignore_ascii_case(b"DONE"));
                    return Ok(Some(if ok {
                        Reply::ok("IDLE terminated")
                    } else {
                        Reply::bad("Expected DONE")
                    }));
                }
                Woke::Change => {}
            }
        }
    }
}
