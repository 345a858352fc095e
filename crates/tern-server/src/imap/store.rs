//! STORE, COPY and MOVE (RFC 3501 §6.4.6–7, RFC 4315 UIDPLUS, RFC 6851).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use imap_codec::imap_types::flag::{Flag as ImapFlag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, seqset};
use tern_maildir::folder::{AppendSource, FlagChange, MoveNew, NewMessage};
use tern_maildir::keywords::KeywordSet;
use tern_maildir::FolderName;
use tern_maildir::{Flag, Flags};

use super::selected::message_flags;
use super::session::{blocking, End, Known, Reply, Session, State};

/// Flags named in a STORE or APPEND, split into system flags and keywords.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlagSet {
    pub system: Vec<Flag>,
    pub keywords: BTreeSet<Arc<str>>,
}

/// Converts IMAP flags; `\Recent` is ignored (it cannot be stored), any
/// other unknown system flag is refused.
pub(crate) fn convert_flags(flags: &[ImapFlag<'_>]) -> Result<FlagSet, Reply> {
    let mut set = FlagSet::default();
    for f in flags {
        match f {
            ImapFlag::Answered => set.system.push(Flag::Answered),
            ImapFlag::Deleted => set.system.push(Flag::Deleted),
            ImapFlag::Draft => set.system.push(Flag::Draft),
            ImapFlag::Flagged => set.system.push(Flag::Flagged),
            ImapFlag::Seen => set.system.push(Flag::Seen),
            ImapFlag::Keyword(k) => {
                set.keywords.insert(Arc::from(k.as_ref()));
            }
            ImapFlag::Extension(_) => {
                let name = f.to_string();
                if !name.eq_ignore_ascii_case("\\Recent") {
                    return Err(Reply::bad(format!("Invalid system flag {name}")));
                }
            }
        }
    }
    Ok(set)
}

fn apply(
    kind: StoreType,
    flags: &Flags,
    keywords: &KeywordSet,
    change: &FlagSet,
) -> (Flags, KeywordSet) {
    let mut f = flags.clone();
    let mut k: BTreeSet<Arc<str>> = keywords.iter().cloned().collect();
    match kind {
        StoreType::Replace => {
            for fl in Flag::ALL {
                f.set(fl, change.system.contains(&fl));
            }
            k = change.keywords.clone();
        }
        StoreType::Add => {
            for fl in &change.system {
                f.set(*fl, true);
            }
            for kw in &change.keywords {
                if !k.iter().any(|x| x.eq_ignore_ascii_case(kw)) {
                    k.insert(kw.clone());
                }
            }
        }
        StoreType::Remove => {
            for fl in &change.system {
                f.set(*fl, false);
            }
            k.retain(|x| !change.keywords.iter().any(|kw| kw.eq_ignore_ascii_case(x)));
        }
    }
    (f, k.into_iter().collect::<Vec<_>>().into())
}

impl Session {
    fn indices(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Reply> {
        let State::Selected { mailbox, .. } = &self.state else {
            return Err(Reply::bad("No mailbox selected"));
        };
        if uid {
            Ok(seqset::resolve_uids(set, &mailbox.uids()))
        } else {
            seqset::resolve_seqs(set, mailbox.known.len() as u32)
                .map(|s| s.into_iter().map(|n| n as usize - 1).collect())
                .map_err(|e| Reply::bad(e.to_string()))
        }
    }

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
            let Some(i) = mailbox.seq_of(e.uid) else {
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
                        i + 1,
                        k.uid,
                        flags
                    );
                } else {
                    let _ = write!(out, "* {} FETCH (FLAGS ({}))\r\n", i + 1, flags);
                }
            }
            std::sync::Arc::make_mut(&mut mailbox.known)[i] = k;
        }
        // New keywords are announced once, before the FETCH lines that
        // show them (one FLAGS per new keyword made 8,000 new keywords
        // write 8,000 lists of up to 8,000 names).
        if announce {
            let fl = super::selected::flag_list(&mailbox.keywords);
            let line =
                format!("* FLAGS ({fl})\r\n* OK [PERMANENTFLAGS ({fl} \\*)] Flags permitted\r\n");
            self.conn.out.extend_from_slice(line.as_bytes());
        }
        self.conn.out.extend_from_slice(out.as_bytes());
        open.changed.notify_waiters();
        Reply::ok("STORE completed")
    }

    pub(crate) async fn copy(
        &mut self,
        set: SequenceSet,
        target: Mailbox<'static>,
        uid: bool,
        is_move: bool,
    ) -> Result<Reply, End> {
        let verb = if is_move { "MOVE" } else { "COPY" };
        let indices = match self.indices(&set, uid) {
            Ok(i) => i,
            Err(r) => return Ok(r),
        };
        let target = match self.svc.namespace.resolve_mailbox(&target) {
            Ok(t) => t,
            Err(r) => return Ok(r),
        };
        let State::Selected { mailbox, user } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if is_move && mailbox.read_only {
            return Ok(Reply::no(Some(Code::ReadOnly), "Mailbox is read-only"));
        }
        match super::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Ok(Reply::no(Some(Code::TryCreate), "Mailbox does not exist")),
            Err(r) => return Ok(r),
        }
        let dest = self
            .svc
            .folders
            .get(&user.maildir.folder_dir(target.folder()));
        let src = mailbox.open.clone();
        let uids: Vec<u32> = indices
            .iter()
            .filter_map(|&i| mailbox.known.get(i).map(|k| k.uid))
            .collect();
        if uids.is_empty() {
            return Ok(Reply::ok(format!("{verb} completed, nothing to do")));
        }
        let (s, d) = (src.clone(), dest.clone());
        let (root, quota) = (user.maildir.root().to_owned(), user.quota);
        let dest_folder = target.folder().cloned();
        // A MOVE between folders that both count changes no total.
        let src_counts = src
            .folder
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| FolderName::is_folder_dir(n))
            .is_none_or(|n| tern_maildir::quota::counts_folder(&n));
        let res = blocking(move || {
            let view = s.folder.view();
            let mut batch = Vec::new();
            let mut src_uids = Vec::new();
            for u in &uids {
                let Some(e) = view.find(*u) else { continue };
                let Ok(source) = s.folder.existing(e) else {
                    continue;
                };
                let size = match tern_maildir::flags::name_field(&e.base, 'S') {
                    Some(sz) => sz,
                    None => match s.folder.stat(e) {
                        Ok(m) => m.len,
                        Err(_) => continue,
                    },
                };
                let crlf_size = match s.folder.crlf_size(e) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                batch.push(NewMessage {
                    source: AppendSource::Existing(source),
                    size,
                    crlf_size,
                    flags: e.flags.clone(),
                    keywords: e.keywords.clone(),
                    internal_date: s.folder.internal_date(e).ok(),
                });
                src_uids.push(*u);
            }
            if !(is_move && src_counts) {
                let bytes = batch.iter().map(|m| m.size).sum();
                let n = batch.len() as u64;
                tern_maildir::quota::ensure_room(&root, quota, dest_folder.as_ref(), bytes, n)?;
            }
            let new_uids = d.folder.append(batch)?;
            let dview = d.folder.refresh(MoveNew::No)?;
            if is_move {
                s.folder.expunge(&src_uids)?;
            }
            Ok((src_uids, new_uids, dview.uidvalidity))
        })
        .await;
        let (src_uids, new_uids, uidvalidity) = match res {
            Ok(v) => v,
            Err(r) => return Ok(r),
        };
        dest.changed.notify_waiters();
        src.changed.notify_waiters();
        if src_uids.is_empty() {
            return Ok(Reply::no(
                Some(Code::ExpungeIssued),
                "The messages no longer exist",
            ));
        }
        let code = Code::CopyUid {
            uidvalidity,
            source: seqset::format_compact(&src_uids),
            dest: seqset::format_compact(&new_uids),
        };
        if is_move {
            self.untagged(&format!("OK [{code}] Moved"));
            Ok(Reply::ok("MOVE completed"))
        } else {
            Ok(Reply::ok_code(code, "COPY completed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_kinds() {
        let mut base = Flags::empty();
        base.set(Flag::Seen, true);
        let kws: KeywordSet = vec![Arc::from("$Work")].into();
        let change = FlagSet {
            system: vec![Flag::Flagged],
            keywords: [Arc::from("$work"), Arc::from("x")].into_iter().collect(),
        };
        let (f, k) = apply(StoreType::Add, &base, &kws, &change);
        assert!(f.contains(Flag::Seen) && f.contains(Flag::Flagged));
        assert_eq!(k.len(), 2);
        let (f, k) = apply(StoreType::Remove, &f, &k, &change);
        assert!(f.contains(Flag::Seen) && !f.contains(Flag::Flagged));
        assert!(k.is_empty());
        let (f, _) = apply(StoreType::Replace, &base, &kws, &change);
        assert!(!f.contains(Flag::Seen) && f.contains(Flag::Flagged));
    }
}
