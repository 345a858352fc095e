//! Mailbox names and the commands that manage mailboxes: LIST, LSUB,
//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS.
//!
//! Names map to folders through the personal namespace ([`super::namespace`]):
//! by default Courier-IMAP's, where `INBOX.Work.2024` is the Maildir++
//! folder `.Work.2024`.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;
use tern_imap_proto::command::{list_match, list_pattern, mailbox_name};

pub(crate) use super::namespace::Target;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, wire};
use tern_maildir::folder::MoveNew;
use tern_maildir::Maildir;

use super::session::{blocking, Reply, Session, State};
use crate::users::User;

impl Session {
    pub(crate) fn user(&self) -> Option<&User> {
        match &self.state {
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The folder a mailbox name names, and the user's Maildir.
    fn target_in_maildir(&self, mailbox: &Mailbox<'_>) -> Result<(Target, Maildir), Reply> {
        Ok((
            self.svc.namespace.resolve_mailbox(mailbox)?,
            self.maildir()?,
        ))
    }

    fn maildir(&self) -> Result<Maildir, Reply> {
        self.user()
            .map(|u| u.maildir.clone())
            .ok_or_else(|| Reply::bad("Not logged in"))
    }

    pub(crate) async fn create(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let Target::Folder(name) = target else {
            return Reply::no(Some(Code::AlreadyExists), "INBOX always exists");
        };
        match blocking(move || md.create_folder(&name)).await {
            Ok(()) => Reply::ok("CREATE completed"),
            Err(r) => r,
        }
    }

    pub(crate) async fn delete(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let Target::Folder(name) = target else {
            return Reply::no(Some(Code::Cannot), "INBOX cannot be deleted");
        };
        let dir = md.folder_dir(Some(&name));
        match blocking(move || md.delete_folder(&name)).await {
            Ok(()) => {
                self.svc.folders.notify(&dir);
                Reply::ok("DELETE completed")
            }
            Err(r) => r,
        }
    }

    pub(crate) async fn rename(&mut self, from: Mailbox<'static>, to: Mailbox<'static>) -> Reply {
        let ns = &self.svc.namespace;
        let (from, to) = match (ns.resolve_mailbox(&from), ns.resolve_mailbox(&to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let Target::Folder(to) = to else {
            return Reply::no(Some(Code::AlreadyExists), "INBOX already exists");
        };
        let md = match self.maildir() {
            Ok(m) => m,
            Err(r) => return r,
        };
        let res = match from {
            Target::Inbox => blocking(move || md.rename_inbox(&to)).await,
            Target::Folder(from) => blocking(move || md.rename_folder(&from, &to)).await,
        };
        match res {
            Ok(()) => Reply::ok("RENAME completed"),
            Err(r) => r,
        }
    }

    pub(crate) async fn subscribe(&mut self, mailbox: Mailbox<'static>, on: bool) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let name = target.full_name();
        match blocking(move || md.set_subscribed(&name, on)).await {
            Ok(()) => Reply::ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(r) => r,
        }
    }

    pub(crate) async fn list(
        &mut self,
        reference: Mailbox<'static>,
        pattern: ListMailbox<'static>,
        lsub: bool,
    ) -> Reply {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let ns = self.svc.namespace.clone();
        let sep = ns.sep();
        let reference = match &reference {
            Mailbox::Inbox => "INBOX".to_owned(),
            other => mailbox_name(other),
        };
        let pattern = list_pattern(&pattern);
        if pattern.is_empty() {
            if !lsub {
                self.untagged(&format!("LIST (\\Noselect) \"{sep}\" \"\""));
            }
            return Reply::ok(format!("{verb} completed"));
        }
        let mut full = format!("{reference}{pattern}");
        // INBOX is case-insensitive, also as the namespace prefix.
        if full.len() >= 5 && full[..5].eq_ignore_ascii_case("INBOX") {
            full.replace_range(..5, "INBOX");
        }
        let md = match self.maildir() {
            Ok(m) => m,
            Err(r) => return r,
        };
        // The matching runs beside the listing on the blocking pool: its
        // cost grows with the pattern and the number of folders. Names are
        // matched as the client sees them: in the namespace, modified UTF-7.
        let listing = blocking(move || {
            let folders = md.list_folders()?;
            let subs: Vec<String> = md
                .subscriptions()?
                .iter()
                .filter_map(|s| ns.wire_of_full_name(s))
                .collect();
            // name -> selectable
            let mut names: BTreeMap<String, bool> = BTreeMap::new();
            names.insert("INBOX".to_owned(), true);
            for f in &folders {
                names.insert(ns.wire_of_folder(f.name.as_str()), true);
                let mut p = f.name.parent();
                while let Some(parent) = p {
                    names
                        .entry(ns.wire_of_folder(parent.as_str()))
                        .or_insert(false);
                    p = parent.parent();
                }
            }
            let inbox_holds_all = ns.wire_of_folder("x").starts_with("INBOX");
            let has_children = |n: &str| -> bool {
                if n == "INBOX" && inbox_holds_all {
                    return !folders.is_empty();
                }
                let prefix = format!("{n}{sep}");
                names
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
            };
            let sep_byte = sep as u8;
            let subscribed: BTreeSet<&str> = subs.iter().map(String::as_str).collect();
            let mut lines = Vec::new();
            if lsub {
                // RFC 3501 §6.3.9: a subscribed name below one the pattern
                // reaches (INBOX.a.b.c for INBOX.a.%) shows the level the
                // pattern matches, flagged \Noselect, when that level is not
                // subscribed itself.
                let mut found: BTreeMap<&str, &str> = BTreeMap::new();
                for s in &subscribed {
                    if list_match(full.as_bytes(), s.as_bytes(), sep_byte) {
                        let attrs = if names.get(*s).copied().unwrap_or(false) {
                            ""
                        } else {
                            "\\Noselect"
                        };
                        found.insert(s, attrs);
                        continue;
                    }
                    let ancestors = s.match_indices(sep).map(|(i, _)| &s[..i]);
                    for a in ancestors {
                        if !subscribed.contains(a)
                            && list_match(full.as_bytes(), a.as_bytes(), sep_byte)
                        {
                            found.entry(a).or_insert("\\Noselect");
                        }
                    }
                }
                for (name, attrs) in found {
                    lines.push((attrs.to_owned(), name.to_owned()));
                }
            } else {
                for (n, selectable) in &names {
                    if !list_match(full.as_bytes(), n.as_bytes(), sep_byte) {
                        continue;
                    }
                    let mut attrs = Vec::new();
                    if !selectable {
                        attrs.push("\\Noselect");
                    }
                    attrs.push(if has_children(n) {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                    lines.push((attrs.join(" "), n.clone()));
                }
            }
            Ok(lines)
        })
        .await;
        let lines = match listing {
            Ok(v) => v,
            Err(r) => return r,
        };
        for (attrs, name) in lines {
            let mut line =
                format!("{verb} ({attrs}) \"{}\" ", self.svc.namespace.sep()).into_bytes();
            wire::mailbox(&mut line, &name);
            self.conn.out.extend_from_slice(b"* ");
            self.conn.out.extend_from_slice(&line);
            self.conn.out.extend_from_slice(b"\r\n");
        }
        Reply::ok(format!("{verb} completed"))
    }

    pub(crate) async fn status(
        &mut self,
        mailbox: Mailbox<'static>,
        items: &[StatusDataItemName],
    ) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let dir = md.folder_dir(target.folder());
        match super::session::folder_exists(&md, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        let open = self.svc.folders.get(&dir);
        let want_size = items.iter().any(|i| matches!(i, StatusDataItemName::Size));
        let o = open.clone();
        let res = blocking(move || {
            let view = o.folder.refresh(MoveNew::No)?;
            let mut size = 0u64;
            if want_size {
                for m in &view.messages {
                    size += o.folder.crlf_size(m).unwrap_or(0);
                }
            }
            let recent = view.messages.iter().filter(|m| m.in_new).count()
                + o.folder.unclaimed_recent_count();
            Ok((view, size, recent))
        })
        .await;
        let (view, size, recent) = match res {
            Ok(v) => v,
            Err(r) => return r,
        };
        use tern_maildir::Flag;
        let mut parts = Vec::new();
        for item in items {
            let v = match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", view.messages.len()),
                StatusDataItemName::Recent => format!("RECENT {}", recent.min(view.messages.len())),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", view.next_uid),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", view.uidvalidity),
                StatusDataItemName::Unseen => format!(
                    "UNSEEN {}",
                    view.messages
                        .iter()
                        .filter(|m| !m.flags.contains(Flag::Seen))
                        .count()
                ),
                StatusDataItemName::Deleted => format!(
                    "DELETED {}",
                    view.messages
                        .iter()
                        .filter(|m| m.flags.contains(Flag::Deleted))
                        .count()
                ),
                StatusDataItemName::Size => format!("SIZE {size}"),
                _ => continue,
            };
            parts.push(v);
        }
        let mut line = b"STATUS ".to_vec();
        wire::mailbox(&mut line, &self.svc.namespace.wire_name(&target));
        line.extend_from_slice(format!(" ({})", parts.join(" ")).as_bytes());
        self.conn.out.extend_from_slice(b"* ");
        self.conn.out.extend_from_slice(&line);
        self.conn.out.extend_from_slice(b"\r\n");
        Reply::ok("STATUS completed")
    }
}
