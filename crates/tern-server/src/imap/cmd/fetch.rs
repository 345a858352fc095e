//! FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 3516 BINARY).

use crate::imap::fetch::{
    build, chunks_by_size, items_of, reads_message, uses_summary, BuildError, FileLiterals, Item,
    JobOutput, CHUNK, SUMMARY_CHUNK,
};
use crate::imap::selected::write_flags;
use crate::imap::session::{End, Known, Reply, Session, State};
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::sequence::SequenceSet;
use std::fmt::Write as _;
use std::sync::Arc;
use tern_imap_proto::ids::Seq;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, seqset, wire};
use tern_maildir::folder::FlagChange;
use tern_maildir::{Flag, MaildirError, MessageEntry};

impl Session {
    pub(crate) async fn fetch(
        &mut self,
        set: SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Result<Reply, End> {
        let State::Selected { mailbox, .. } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let indices: Vec<usize> = if uid {
            seqset::resolve_uids_by(&set, &mailbox.known, |k| k.uid)
        } else {
            match seqset::resolve_seqs(&set, mailbox.known.len() as u32) {
                Ok(seqs) => seqs.into_iter().map(Seq::index).collect(),
                Err(e) => return Ok(Reply::bad(e.to_string())),
            }
        };
        let items = Arc::new(items_of(&names, uid, &self.binary_aliases));
        // UID and FLAGS come from the session's own state: no storage call.
        if items.iter().all(|i| matches!(i, Item::Uid | Item::Flags)) {
            for chunk in indices.chunks(1024) {
                let State::Selected { mailbox, .. } = &self.state else {
                    break;
                };
                let mut out = Vec::with_capacity(chunk.len() * 40);
                for &i in chunk {
                    let Some(k) = mailbox.known.get(i) else {
                        continue;
                    };
                    let _ = write!(wire::Bytes(&mut out), "* {} FETCH (", Seq::at(i));
                    for (n, item) in items.iter().enumerate() {
                        if n > 0 {
                            out.push(b' ');
                        }
                        if matches!(item, Item::Uid) {
                            let _ = write!(wire::Bytes(&mut out), "UID {}", k.uid);
                        } else {
                            out.extend_from_slice(b"FLAGS (");
                            let recent =
                                !mailbox.recent.is_empty() && mailbox.recent.contains(&k.uid);
                            write_flags(&mut out, k, recent);
                            out.push(b')');
                        }
                    }
                    out.extend_from_slice(b")\r\n");
                }
                self.conn.out.extend_from_slice(&out);
                self.flush_if_large().await?;
            }
            return Ok(Reply::ok("FETCH completed"));
        }
        let State::Selected { mailbox, .. } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let set_seen = !mailbox.read_only && items.iter().any(Item::sets_seen);
        let open = mailbox.open.clone();
        let mut missing = 0usize;
        let mut any_flag_change = false;
        let chunk_size = if items.iter().any(reads_message) {
            CHUNK
        } else {
            SUMMARY_CHUNK
        };
        // Without \Seen to set, the next job is built while the answer of
        // the one before goes out (the jobs share nothing the session
        // changes); with it, one job at a time, so that applying a job's
        // flag changes never copies the list another job still reads.
        let ahead = usize::from(!set_seen);
        let mut pending: std::collections::VecDeque<crate::storage_gate::Blocking<JobOutput>> =
            Default::default();
        // Jobs that read messages are cut by bytes too: 128 messages of
        // 50 MB must not be read at once.
        let chunks = if chunk_size == CHUNK {
            chunks_by_size(
                &indices,
                &mailbox.known,
                &open.folder.view(),
                self.svc.limits.fetch_job_bytes,
            )
        } else {
            indices.chunks(chunk_size).map(<[usize]>::to_vec).collect()
        };
        for chunk in &chunks {
            let State::Selected { mailbox, .. } = &self.state else {
                break;
            };
            // The job reads the session's list itself: nothing is copied
            // per message but whether it is \Recent.
            let known = mailbox.known.clone();
            let targets: Vec<(usize, bool)> = chunk
                .iter()
                .filter_map(|&i| {
                    let k = known.get(i)?;
                    Some((
                        i,
                        !mailbox.recent.is_empty() && mailbox.recent.contains(&k.uid),
                    ))
                })
                .collect();
            let o = open.clone();
            let its = items.clone();
            let at_least = self.svc.limits.stream_literal_bytes;
            let job = crate::creds::spawn_blocking(move || {
                let mut files = FileLiterals {
                    list: Vec::new(),
                    at_least,
                };
                let aligned = o.summaries.for_view(&o.folder.view());
                let messages = &aligned.view.messages;
                // Room for a few hundred octets a message, so that the
                // buffer is not copied again and again as it grows.
                let mut out = Vec::with_capacity(targets.len() * 256);
                let mut updated: Vec<(usize, Known)> = Vec::new();
                let mut missing = 0;
                let mut unknown_cte = false;
                // (position in known, \Recent, position in the view).
                let mut found: Vec<(usize, bool, usize)> = Vec::with_capacity(targets.len());
                let mut next = 0;
                for (i, r) in targets {
                    let uid = known[i].uid;
                    // Ranges are in UID order: the next position is
                    // usually the one after the last.
                    let pos = if messages.get(next).is_some_and(|m| m.uid == uid) {
                        Some(next)
                    } else {
                        aligned.position(uid)
                    };
                    match pos {
                        Some(pos) => {
                            found.push((i, r, pos));
                            next = pos + 1;
                        }
                        None => missing += 1,
                    }
                }
                if its.iter().any(uses_summary) {
                    let positions: Vec<usize> = found.iter().map(|f| f.2).collect();
                    aligned.prefetch(&o.summaries, &o.folder, &positions);
                }
                // Entries renamed by setting \Seen, by UID.
                let mut renamed: rustc_hash::FxHashMap<u32, MessageEntry> = Default::default();
                if set_seen {
                    let changes: Vec<FlagChange> = found
                        .iter()
                        .map(|f| &messages[f.2])
                        .filter(|e| !e.flags.contains(Flag::Seen))
                        .map(|e| {
                            let mut f = e.flags.clone();
                            f.set(Flag::Seen, true);
                            FlagChange::of(e, f, e.keywords.clone())
                        })
                        .collect();
                    if !changes.is_empty() {
                        match o.folder.set_flags(&changes) {
                            Ok(done) => {
                                let at: rustc_hash::FxHashMap<u32, usize> =
                                    found.iter().map(|f| (known[f.0].uid, f.0)).collect();
                                for d in done {
                                    if let Some(&i) = at.get(&d.uid) {
                                        updated.push((
                                            i,
                                            Known {
                                                uid: d.uid,
                                                flags: d.flags.clone(),
                                                keywords: d.keywords.clone(),
                                            },
                                        ));
                                    }
                                    renamed.insert(d.uid, d);
                                }
                            }
                            Err(e) => tracing::warn!(cause = %e, "cannot set \\Seen"),
                        }
                    }
                }
                // The FLAGS that setting \Seen adds go before the first
                // body item, where Dovecot puts them.
                let with_flags: Vec<Item> = {
                    let at = its.iter().position(Item::is_body).unwrap_or(its.len());
                    let mut v = its.to_vec();
                    v.insert(at, Item::Flags);
                    v
                };
                let asks_flags = its.iter().any(|x| matches!(x, Item::Flags));
                let now_of: rustc_hash::FxHashMap<usize, &Known> =
                    updated.iter().map(|(j, k)| (*j, k)).collect();
                for (i, r, pos) in found {
                    let now = now_of.get(&i).copied();
                    // A message whose \Seen this FETCH set shows its flags.
                    let use_items: &[Item] = if now.is_some() && !asks_flags {
                        &with_flags
                    } else {
                        &its
                    };
                    let k = now.unwrap_or(&known[i]);
                    let e = renamed.get(&k.uid).unwrap_or(&messages[pos]);
                    match build(
                        &mut out,
                        &o,
                        &aligned,
                        pos,
                        e,
                        Seq::at(i),
                        k,
                        r,
                        use_items,
                        &mut files,
                    ) {
                        Ok(()) => {}
                        Err(BuildError::Storage(MaildirError::MessageGone)) => missing += 1,
                        Err(BuildError::Storage(err)) => {
                            tracing::error!(cause = %err, uid = e.uid, "cannot read message");
                            missing += 1;
                        }
                        Err(BuildError::UnknownCte) => unknown_cte = true,
                    }
                }
                JobOutput {
                    out,
                    files: files.list,
                    updated,
                    missing,
                    unknown_cte,
                }
            });
            pending.push_back(job);
            while pending.len() > ahead {
                let Some(job) = pending.pop_front() else {
                    break;
                };
                if let Some(refusal) = self
                    .finish_fetch_job(&open, job, &mut missing, &mut any_flag_change)
                    .await?
                {
                    return Ok(refusal);
                }
            }
        }
        while let Some(job) = pending.pop_front() {
            if let Some(refusal) = self
                .finish_fetch_job(&open, job, &mut missing, &mut any_flag_change)
                .await?
            {
                return Ok(refusal);
            }
        }
        if any_flag_change {
            open.changed.notify_waiters();
        }
        if items.iter().any(uses_summary) {
            let o = open.clone();
            // Its own blocking job: choosing what to write walks the folder.
            let _ = crate::creds::spawn_blocking(move || o.summaries.save_if_due(&o.folder)).await;
        }
        if missing > 0 {
            return Ok(Reply::no(
                Some(Code::ExpungeIssued),
                "Some of the requested messages no longer exist",
            ));
        }
        Ok(Reply::ok("FETCH completed"))
    }
}
