//! LIST and LSUB (RFC 3501 §6.3.8, §6.3.9), with the attributes of RFC 3348
//! (CHILDREN) and RFC 6154 (SPECIAL-USE).

use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use std::collections::{BTreeMap, BTreeSet};
use tern_imap_proto::command::{list_match, list_pattern, mailbox_name};
use tern_imap_proto::{imap_codec, wire};
use tern_maildir::acl;

impl Session {
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
        let Some(user) = self.user() else {
            return Reply::bad("Not logged in");
        };
        let (me, groups) = (user.name.clone(), user.groups.clone());
        let check_acl = self.svc.policy.acl;
        let acl_cache = self.svc.policy.acl_cache.clone();
        // The matching runs beside the listing on the blocking pool: its
        // cost grows with the pattern and the number of folders. Names are
        // matched as the client sees them: in the namespace, modified UTF-7.
        let listing = blocking(move || {
            let mut folders = md.list_folders()?;
            // RFC 4314 §4: a folder the user may not look up (`l`) is not
            // listed; Courier hides it the same way. (One look for each
            // folder's own list: see docs/BENCHMARKS.md.)
            let names_of: Vec<&tern_maildir::FolderName> =
                folders.iter().map(|f| &f.name).collect();
            if check_acl {
                let lists = acl::effective_all(&md, &names_of, &acl_cache)?;
                let who = acl::Identity {
                    user: &me,
                    groups: &groups,
                    owner: true,
                };
                let mut visible = lists
                    .iter()
                    .map(|l| l.rights_of(&who).contains(acl::Rights::of(b'l')));
                folders.retain(|_| visible.next().unwrap_or(true));
            }
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
}
