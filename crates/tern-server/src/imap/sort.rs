//! SORT and THREAD (RFC 5256), with DISPLAYFROM and DISPLAYTO (RFC 5957).
//!
//! The messages are chosen as SEARCH chooses them; their sort keys and
//! thread fields come from the folder's summary cache
//! ([`crate::summaries`]), which reads a message only the first time. Ties
//! keep the mailbox order, as RFC 5256 asks.

use std::sync::Arc;

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

/// One sort key's value. The subject key is compared where it lies in
/// the cached summary, not copied.
#[derive(Debug, Clone)]
enum Value {
    Num(i64),
    Text(String),
    SubjectOf(Arc<Summary>),
}

impl Value {
    fn text(&self) -> &str {
        match self {
            Value::Text(t) => t,
            Value::SubjectOf(s) => &s.subject_key,
            Value::Num(_) => "",
        }
    }

    fn cmp(&self, other: &Value) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Num(a), Value::Num(b)) => a.cmp(b),
            _ => self.text().cmp(other.text()),
        }
    }
}

fn key_value(key: &SortKey, s: &Arc<Summary>, folder: &Folder, entry: &MessageEntry) -> Value {
    // The first address as ENVELOPE shows it (what is missing named as
    // there), compared in i;unicode-casemap form, as Dovecot sorts.
    let mailbox = |a: &Option<FirstAddress>| {
        Value::Text(
            a.as_ref()
                .map(|(_, local, _)| fold(local))
                .unwrap_or_default(),
        )
    };
    // RFC 5957: the decoded display name, else the address itself.
    let display = |a: &Option<FirstAddress>| {
        Value::Text(
            a.as_ref()
                .map(|(display, local, host)| match display {
                    Some(d) if !d.trim().is_empty() => fold(&decode_header_value(d.as_bytes())),
                    _ if host.is_empty() => fold(local),
                    _ => fold(&format!("{local}@{host}")),
                })
                .unwrap_or_default(),
        )
    };
    match key {
        SortKey::Arrival => Value::Num(internal_date(folder, entry)),
        SortKey::Date => Value::Num(s.date.unwrap_or_else(|| internal_date(folder, entry))),
        SortKey::Size => Value::Num(folder.crlf_size(entry).map(|s| s as i64).unwrap_or(0)),
        SortKey::Subject => Value::SubjectOf(s.clone()),
        SortKey::From => mailbox(&s.from),
        SortKey::To => mailbox(&s.to),
        SortKey::Cc => mailbox(&s.cc),
        SortKey::DisplayFrom => display(&s.from),
        SortKey::DisplayTo => display(&s.to),
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
    let mut keyed: Vec<(Vec<Value>, usize)> = hits
        .into_iter()
        .filter_map(|i| {
            let entry = view.find(known[i].uid)?;
            let s = if header {
                job.open.summaries.get(folder, entry).ok()?
            } else {
                empty.clone()
            };
            let values = criteria
                .iter()
                .map(|c| key_value(&c.key, &s, folder, entry))
                .collect();
            Some((values, i))
        })
        .collect();
    keyed.sort_by(|(a, ia), (b, ib)| {
        for (k, c) in criteria.iter().enumerate() {
            let o = a[k].cmp(&b[k]);
            let o = if c.reverse { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        ia.cmp(ib)
    });
    keyed.into_iter().map(|(_, i)| i).collect()
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
