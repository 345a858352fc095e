//! STORE and UID STORE (RFC 3501 §6.4.6): flags and keywords.

use crate::imap::selected::message_flags;
use crate::imap::session::{blocking, Known, Reply, Session, State};
use crate::imap::store::{apply, convert_flags, FlagSet};
use imap_codec::imap_types::flag::{Flag as ImapFlag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use std::fmt::Write as _;
use tern_imap_proto::ids::Seq;
use tern_imap_proto::ids::Uid;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_maildir::acl::Rights;
use tern_maildir::folder::FlagChange;
use tern_maildir::Flag;

/// The part of a flag change the user's rights allow (RFC 4314 §4):
/// `\Seen` needs `s`, `\Deleted` needs `t`, every other flag and keyword
/// `w`. Flags the user may not change are left out, as RFC 4314 asks
/// (a NO to a STORE is handled badly by deployed clients), unless nothing
/// is left; replacing every flag (`FLAGS`) needs all three rights.
fn permitted(change: FlagSet, kind: StoreType, rights: Rights) -> Result<FlagSet, Reply> {
    let may = |l: u8| rights.contains(Rights::of(l));
    let all = may(b's') && may(b't') && may(b'w');
    if all {
        return Ok(change);
    }
    let denied = |what: &str| {
        Reply::no(
            Some(Code::NoPerm),
            format!("Permission denied: {what} (see MYRIGHTS)"),
        )
    };
    if matches!(kind, StoreType::Replace) {
        return Err(denied(
            "FLAGS replaces every flag and needs the s, t and w rights",
        ));
    }
    let asked = change.system.len() + change.keywords.len();
    let kept = FlagSet {
        system: change
            .system
            .into_iter()
            .filter(|f| match f {
                Flag::Seen => may(b's'),
                Flag::Deleted => may(b't'),
                _ => may(b'w'),
            })
            .collect(),
        keywords: if may(b'w') {
            change.keywords
        } else {
            Default::default()
        },
    };
    if asked > 0 && kept.system.is_empty() && kept.keywords.is_empty() {
        return Err(denied("these flags need rights this mailbox does not give"));
    }
    Ok(kept)
}

impl Session {
    pub(crate) async fn store(
        &mut self,
        set: SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<ImapFlag<'static>>,
        uid: bool,
    ) -> Reply {
        let indices = match self.indices(&set, uid) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let change = match convert_flags(&flags) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let State::Selected { mailbox, .. } = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        if mailbox.read_only {
            return Reply::no(Some(Code::ReadOnly), "Mailbox is read-only");
        }
        let change = match permitted(change, kind, mailbox.rights) {
            Ok(c) => c,
            Err(r) => return r,
        };
        // Keep the spelling of keywords the folder already uses.
        let known_spelling: rustc_hash::FxHashMap<String, &std::sync::Arc<str>> = mailbox
            .keywords
            .iter()
            .map(|k| (k.to_ascii_lowercase(), k))
            .collect();
        let mut change = change;
        let mut new_ones: rustc_hash::FxHashSet<String> = Default::default();
        change.keywords = change
            .keywords
            .into_iter()
            .map(|k| match known_spelling.get(&k.to_ascii_lowercase()) {
                Some(&known) => known.clone(),
                None => {
                    new_ones.insert(k.to_ascii_lowercase());
                    k
                }
            })
            .collect();
        // A mailbox holds at most `limits.max_keywords` keywords (each new
        // one is announced to every session of the folder in FLAGS).
        let limit = self.svc.limits.max_keywords;
        if !matches!(kind, StoreType::Remove) && known_spelling.len() + new_ones.len() > limit {
            return Reply::no(
                Some(Code::Limit),
                format!("Too many keywords in this mailbox (at most {limit})"),
            );
        }
        let uids: Vec<(usize, u32)> = indices
            .iter()
            .filter_map(|&i| mailbox.known.get(i).map(|k| (i, k.uid)))
            .collect();
        let open = mailbox.open.clone();
        let o = open.clone();
        let res = blocking(move || {
            let view = o.folder.view();
            let changes: Vec<FlagChange> = uids
                .iter()
                .filter_map(|(_, u)| view.find(*u))
                .map(|e| {
                    let (flags, keywords) = apply(kind, &e.flags, &e.keywords, &change);
                    FlagChange::of(e, flags, keywords)
                })
                .collect();
            o.folder.set_flags(&changes)
        })
        .await;
        let done = match res {
            Ok(d) => d,
            Err(r) => return r,
        };
        let State::Selected { mailbox, .. } = &mut self.state else {
            return Reply::bad("No mailbox selected");
        };
        let mut out = String::new();
        let mut announce = false;
        for e in done {
            let Some(i) = mailbox.index_of(Uid(e.uid)) else {
                continue;
            };
            let k = Known {
                uid: e.uid,
                flags: e.flags,
                keywords: e.keywords,
            };
            for kw in k.keywords.iter() {
                if !mailbox.keywords.contains(kw) {
                    mailbox.keywords.insert(kw.clone());
                    announce = true;
                }
            }
            if response == StoreResponse::Answer {
                let flags = message_flags(&k, mailbox.recent.contains(&k.uid));
                if uid {
                    let _ = write!(
                        out,
                        "* {} FETCH (UID {} FLAGS ({}))\r\n",
                        Seq::at(i),
                        k.uid,
                        flags
                    );
                } else {
                    let _ = write!(out, "* {} FETCH (FLAGS ({}))\r\n", Seq::at(i), flags);
                }
            }
            std::sync::Arc::make_mut(&mut mailbox.known)[i] = k;
        }
        // New keywords are announced once, before the FETCH lines that
        // show them (one FLAGS per new keyword made 8,000 new keywords
        // write 8,000 lists of up to 8,000 names).
        if announce {
            let fl = crate::imap::selected::flag_list(&mailbox.keywords);
            let line =
                format!("* FLAGS ({fl})\r\n* OK [PERMANENTFLAGS ({fl} \\*)] Flags permitted\r\n");
            self.conn.out.extend_from_slice(line.as_bytes());
        }
        self.conn.out.extend_from_slice(out.as_bytes());
        open.changed.notify_waiters();
        Reply::ok("STORE completed")
    }
}
