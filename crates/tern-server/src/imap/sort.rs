//! SORT and THREAD (RFC 5256), with DISPLAYFROM and DISPLAYTO (RFC 5957).
//!
//! The messages are chosen as SEARCH chooses them; their sort keys and
//! thread fields come from the folder's summary cache
//! ([`crate::summaries`]), which reads a message only the first time. Ties
//! keep the mailbox order, as RFC 5256 asks.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;
use tern_imap_proto::imap_codec;
use tern_maildir::{Folder, MessageEntry};
use tern_message::search_text::{decode_header_value, fold};
use tern_message::subject::base_subject;
use tern_message::summary::{FirstAddress, Summary};
use tern_message::thread::{self, ThreadMessage};

use super::search::SearchJob;
use super::session::{compute, Reply, Session};

fn internal_date(folder: &Folder, entry: &MessageEntry) -> i64 {
    folder
        .internal_date(entry)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One sort key's value. Text keys live in one byte arena (see
/// `sort_positions`), so that comparing them touches contiguous memory;
/// their first 16 bytes are kept as a number, where most comparisons end.
#[derive(Debug, Clone, Copy)]
enum Value {
    Num(i64),
    Text { prefix: u128, start: u32, len: u32 },
}

/// The first 16 bytes of a string, big-endian, zero-padded: ordered as
/// the strings are up to there.
fn prefix(s: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s[..n]);
    u128::from_be_bytes(b)
}

impl Value {
    fn text(s: &str, arena: &mut Vec<u8>) -> Value {
        let start = u32::try_from(arena.len()).unwrap_or(u32::MAX);
        arena.extend_from_slice(s.as_bytes());
        Value::Text {
            prefix: prefix(s.as_bytes()),
            start,
            len: u32::try_from(s.len()).unwrap_or(u32::MAX),
        }
    }

    fn cmp(&self, other: &Value, arena: &[u8]) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Num(a), Value::Num(b)) => a.cmp(b),
            (
                Value::Text {
                    prefix: pa,
                    start: sa,
                    len: la,
                },
                Value::Text {
                    prefix: pb,
                    start: sb,
                    len: lb,
                },
            ) => pa.cmp(pb).then_with(|| {
                let get = |s: u32, l: u32| {
                    arena
                        .get(s as usize..(s as usize + l as usize))
                        .unwrap_or_default()
                };
                get(*sa, *la).cmp(get(*sb, *lb))
            }),
            (Value::Num(_), Value::Text { .. }) => std::cmp::Ordering::Less,
            (Value::Text { .. }, Value::Num(_)) => std::cmp::Ordering::Greater,
        }
    }
}

fn key_value(
    key: &SortKey,
    s: &Summary,
    folder: &Folder,
    entry: &MessageEntry,
    arena: &mut Vec<u8>,
) -> Value {
    // The first address as ENVELOPE shows it (what is missing named as
    // there), compared in i;unicode-casemap form, as Dovecot sorts.
    let mailbox = |a: &Option<FirstAddress>| {
        a.as_ref()
            .map(|(_, local, _)| fold(local))
            .unwrap_or_default()
    };
    // RFC 5957: the decoded display name, else the address itself.
    let display = |a: &Option<FirstAddress>| {
        a.as_ref()
            .map(|(display, local, host)| match display {
                Some(d) if !d.trim().is_empty() => fold(&decode_header_value(d.as_bytes())),
                _ if host.is_empty() => fold(local),
                _ => fold(&format!("{local}@{host}")),
            })
            .unwrap_or_default()
    };
    match key {
        SortKey::Arrival => Value::Num(internal_date(folder, entry)),
        SortKey::Date => Value::Num(s.date.unwrap_or_else(|| internal_date(folder, entry))),
        SortKey::Size => Value::Num(folder.crlf_size(entry).map(|s| s as i64).unwrap_or(0)),
        SortKey::Subject => Value::text(&s.subject_key, arena),
        SortKey::From => Value::text(&mailbox(&s.from), arena),
        SortKey::To => Value::text(&mailbox(&s.to), arena),
        SortKey::Cc => Value::text(&mailbox(&s.cc), arena),
        SortKey::DisplayFrom => Value::text(&display(&s.from), arena),
        SortKey::DisplayTo => Value::text(&display(&s.to), arena),
    }
}

/// Whether a key needs the message's summary.
fn needs_header(key: &SortKey) -> bool {
    !matches!(key, SortKey::Arrival | SortKey::Size)
}

fn sort_positions(hits: Vec<usize>, criteria: &[SortCriterion], job: &SearchJob) -> Vec<usize> {
    let (known, folder) = (&job.known, &job.open.folder);
    let view = folder.view();
    let header = criteria.iter().any(|c| needs_header(&c.key));
    let empty = Arc::new(Summary::default());
    let k = criteria.len();
    // One flat list of keys (k per message) and the positions, so that no
    // message costs an allocation of its own.
    let mut keys: Vec<Value> = Vec::with_capacity(hits.len() * k);
    let mut arena: Vec<u8> = Vec::new();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
    let mut picked: Vec<(usize, &MessageEntry)> = Vec::with_capacity(hits.len());
    let mut entries = view.messages.iter().peekable();
    for i in hits {
        let uid = known[i].uid;
        while entries.next_if(|e| e.uid < uid).is_some() {}
        if let Some(entry) = entries.next_if(|e| e.uid == uid) {
            picked.push((i, entry));
        }
    }
    let summaries = if header {
        let list: Vec<&MessageEntry> = picked.iter().map(|(_, e)| *e).collect();
        job.open.summaries.get_many(folder, &list)
    } else {
        vec![Some(empty); picked.len()]
    };
    for ((i, entry), s) in picked.into_iter().zip(summaries) {
        let Some(s) = s else { continue };
        order.push((keys.len(), i));
        for c in criteria {
            keys.push(key_value(&c.key, &s, folder, entry, &mut arena));
        }
    }
    // Text keys become ranks: equal texts (a thread's subjects, a
    // sender's address) are compared once, while the distinct ones are
    // ordered, and the sort below compares numbers only.
    for j in 0..k {
        let mut distinct: HashMap<&[u8], u32> = HashMap::default();
        for row in keys.chunks(k) {
            if let Value::Text { start, len, .. } = row[j] {
                let t = arena
                    .get(start as usize..start as usize + len as usize)
                    .unwrap_or_default();
                let n = distinct.len() as u32;
                distinct.entry(t).or_insert(n);
            }
        }
        if distinct.is_empty() {
            continue;
        }
        let mut sorted: Vec<(&[u8], u32)> = distinct.iter().map(|(t, id)| (*t, *id)).collect();
        sorted.sort_unstable();
        let mut rank = vec![0i64; sorted.len()];
        for (r, (_, id)) in sorted.iter().enumerate() {
            rank[*id as usize] = r as i64;
        }
        let ranks: Vec<i64> = keys
            .chunks(k)
            .map(|row| match row[j] {
                Value::Text { start, len, .. } => {
                    let t = arena
                        .get(start as usize..start as usize + len as usize)
                        .unwrap_or_default();
                    distinct.get(t).map(|id| rank[*id as usize]).unwrap_or(0)
                }
                Value::Num(n) => n,
            })
            .collect();
        for (row, r) in keys.chunks_mut(k).zip(ranks) {
            row[j] = Value::Num(r);
        }
    }
    // Ties keep the mailbox order: the position is the last key, which
    // also makes the faster unstable sort give the stable answer.
    order.sort_unstable_by(|(ka, ia), (kb, ib)| {
        for (j, c) in criteria.iter().enumerate() {
            let o = keys[ka + j].cmp(&keys[kb + j], &arena);
            let o = if c.reverse { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        ia.cmp(ib)
    });
    order.into_iter().map(|(_, i)| i).collect()
}

fn thread_input(hits: &[usize], job: &SearchJob, uid: bool) -> Vec<ThreadMessage> {
    let (known, folder) = (&job.known, &job.open.folder);
    let view = folder.view();
    hits.iter()
        .filter_map(|&i| {
            let entry = view.find(known[i].uid)?;
            let s = job.open.summaries.get(folder, entry).ok()?;
            Some(ThreadMessage {
                id: job.id(i, uid),
                message_id: s.message_id.clone(),
                references: s.references.clone(),
                base_subject: base_subject(&s.subject).0,
                is_reply: s.is_reply,
                sent: s.date.unwrap_or_else(|| internal_date(folder, entry)),
            })
        })
        .collect()
}

impl Session {
    pub(crate) async fn sort(
        &mut self,
        criteria: Vec1<SortCriterion>,
        charset: Charset<'static>,
        search: Vec1<SearchKey<'static>>,
        uid: bool,
    ) -> Reply {
        let job = match self.search_job(Some(&charset), search) {
            Ok(j) => j,
            Err(r) => return r,
        };
        let criteria: Vec<SortCriterion> = criteria.into_inner();
        let ids = compute(move || {
            let ids = sort_positions(job.run(), &criteria, &job)
                .into_iter()
                .map(|i| job.id(i, uid))
                .collect::<Vec<u32>>();
            job.open.summaries.save_if_due(&job.open.folder);
            ids
        })
        .await;
        let ids = match ids {
            Ok(v) => v,
            Err(r) => return r,
        };
        let mut line = String::from("SORT");
        for id in ids {
            line.push(' ');
            line.push_str(&id.to_string());
        }
        self.untagged(&line);
        Reply::ok("SORT completed")
    }

    pub(crate) async fn thread(
        &mut self,
        algorithm: ThreadingAlgorithm<'static>,
        charset: Charset<'static>,
        search: Vec1<SearchKey<'static>>,
        uid: bool,
    ) -> Reply {
        let references = match &algorithm {
            ThreadingAlgorithm::References => true,
            ThreadingAlgorithm::OrderedSubject => false,
            other @ ThreadingAlgorithm::Other(_) => {
                return Reply::bad(format!("Unknown threading algorithm {other}"));
            }
        };
        let job = match self.search_job(Some(&charset), search) {
            Ok(j) => j,
            Err(r) => return r,
        };
        let text = compute(move || {
            let hits = job.run();
            let msgs = thread_input(&hits, &job, uid);
            job.open.summaries.save_if_due(&job.open.folder);
            let threads = if references {
                thread::references(&msgs)
            } else {
                thread::ordered_subject(&msgs)
            };
            thread::format(&threads, &msgs)
        })
        .await;
        let text = match text {
            Ok(v) => v,
            Err(r) => return r,
        };
        if text.is_empty() {
            self.untagged("THREAD");
        } else {
            self.untagged(&format!("THREAD {text}"));
        }
        Reply::ok("THREAD completed")
    }
}
