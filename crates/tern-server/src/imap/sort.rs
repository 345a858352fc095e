//! SORT and THREAD (RFC 5256), with DISPLAYFROM and DISPLAYTO (RFC 5957).
//!
//! The messages are chosen as SEARCH chooses them; then only their header
//! blocks are read (never their bodies) to get the sort keys or the thread
//! fields. Ties keep the mailbox order, as RFC 5256 asks.

use std::io::Read;

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;
use tern_imap_proto::imap_codec;
use tern_maildir::{Folder, MessageEntry};
use tern_message::address::{parse_list, AddressItem};
use tern_message::header;
use tern_message::search_text::{date_timestamp, decode_header_value, fold};
use tern_message::subject::base_subject;
use tern_message::thread::{self, ThreadMessage};

use super::search::SearchJob;
use super::session::{compute, Known, Reply, Session};

/// Header blocks larger than this are cut: sort keys come from the first
/// fields, and a crafted message must not make a SORT read megabytes.
const MAX_HEADER: usize = 256 * 1024;

/// The header block of a message (up to the empty line), read in pieces.
fn read_header(folder: &Folder, entry: &MessageEntry) -> Vec<u8> {
    let Ok(mut f) = folder.open(entry) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let from = out.len().saturating_sub(3);
        out.extend_from_slice(&buf[..n]);
        if let Some(p) = find_blank_line(&out[from..]) {
            out.truncate(from + p);
            break;
        }
        if out.len() >= MAX_HEADER {
            break;
        }
    }
    out
}

/// The end of the header block (after the first line end of the blank line).
fn find_blank_line(s: &[u8]) -> Option<usize> {
    s.windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 1)
        .or_else(|| s.windows(3).position(|w| w == b"\n\r\n").map(|p| p + 1))
}

/// The first value of a header field, unfolded.
fn first_field(block: &[u8], name: &str) -> Option<Vec<u8>> {
    header::fields(block)
        .into_iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| header::unfold(f.value))
}

/// The first mailbox of an address header: (display name, local part, domain).
/// A group's first entry is the group name with no domain, as ENVELOPE
/// lists it.
fn first_address(block: &[u8], name: &str) -> Option<(Option<String>, String, String)> {
    let raw = first_field(block, name)?;
    parse_list(&String::from_utf8_lossy(&raw))
        .into_iter()
        .find_map(|a| match a {
            AddressItem::GroupStart(g) => Some((None, g, String::new())),
            AddressItem::Mailbox {
                name,
                mailbox,
                host,
            } => Some((
                name,
                mailbox.unwrap_or_else(|| "MISSING_MAILBOX".to_owned()),
                host.unwrap_or_else(|| "MISSING_DOMAIN".to_owned()),
            )),
            _ => None,
        })
}

/// The sent date: Date header in UTC, else the INTERNALDATE.
fn sent_date(block: &[u8], folder: &Folder, entry: &MessageEntry) -> i64 {
    first_field(block, "Date")
        .and_then(|v| date_timestamp(&v))
        .unwrap_or_else(|| internal_date(folder, entry))
}

fn internal_date(folder: &Folder, entry: &MessageEntry) -> i64 {
    folder
        .internal_date(entry)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn decoded_subject(block: &[u8]) -> String {
    first_field(block, "Subject")
        .map(|v| decode_header_value(&v))
        .unwrap_or_default()
}

/// One sort key's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Num(i64),
    Text(String),
}

fn key_value(key: &SortKey, block: &[u8], folder: &Folder, entry: &MessageEntry) -> Value {
    // The first address as ENVELOPE shows it (what is missing named as
    // there), compared in i;unicode-casemap form, as Dovecot sorts.
    let mailbox = |name| {
        Value::Text(
            first_address(block, name)
                .map(|(_, local, _)| fold(&local))
                .unwrap_or_default(),
        )
    };
    // RFC 5957: the decoded display name, else the address itself.
    let display = |name| {
        Value::Text(
            first_address(block, name)
                .map(|(display, local, host)| match display {
                    Some(d) if !d.trim().is_empty() => fold(&decode_header_value(d.as_bytes())),
                    _ if host.is_empty() => fold(&local),
                    _ => fold(&format!("{local}@{host}")),
                })
                .unwrap_or_default(),
        )
    };
    match key {
        SortKey::Arrival => Value::Num(internal_date(folder, entry)),
        SortKey::Date => Value::Num(sent_date(block, folder, entry)),
        SortKey::Size => Value::Num(folder.crlf_size(entry).map(|s| s as i64).unwrap_or(0)),
        SortKey::Subject => Value::Text(fold(&base_subject(&decoded_subject(block)).0)),
        SortKey::From => mailbox("From"),
        SortKey::To => mailbox("To"),
        SortKey::Cc => mailbox("Cc"),
        SortKey::DisplayFrom => display("From"),
        SortKey::DisplayTo => display("To"),
    }
}

/// Whether a key needs the header block.
fn needs_header(key: &SortKey) -> bool {
    !matches!(key, SortKey::Arrival | SortKey::Size)
}

fn sort_positions(
    hits: Vec<usize>,
    criteria: &[SortCriterion],
    known: &[Known],
    folder: &Folder,
) -> Vec<usize> {
    let view = folder.view();
    let header = criteria.iter().any(|c| needs_header(&c.key));
    let mut keyed: Vec<(Vec<Value>, usize)> = hits
        .into_iter()
        .filter_map(|i| {
            let entry = view.find(known[i].uid)?;
            let block = if header {
                read_header(folder, entry)
            } else {
                Vec::new()
            };
            let values = criteria
                .iter()
                .map(|c| key_value(&c.key, &block, folder, entry))
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
            let block = read_header(folder, entry);
            let text =
                |name| first_field(&block, name).map(|v| String::from_utf8_lossy(&v).into_owned());
            let message_id =
                text("Message-ID").and_then(|v| thread::message_ids(&v).into_iter().next());
            let mut references = text("References")
                .map(|v| thread::message_ids(&v))
                .unwrap_or_default();
            if references.is_empty() {
                references = text("In-Reply-To")
                    .and_then(|v| thread::message_ids(&v).into_iter().next())
                    .into_iter()
                    .collect();
            }
            let (base, is_reply) = base_subject(&decoded_subject(&block));
            Some(ThreadMessage {
                id: job.id(i, uid),
                message_id,
                references,
                base_subject: base,
                is_reply,
                sent: sent_date(&block, folder, entry),
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
            sort_positions(job.run(), &criteria, &job.known, &job.open.folder)
                .into_iter()
                .map(|i| job.id(i, uid))
                .collect::<Vec<u32>>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_end_at_the_blank_line() {
        assert_eq!(find_blank_line(b"A: b\n\nbody"), Some(5));
        assert_eq!(find_blank_line(b"A: b\r\n\r\nbody"), Some(6));
        assert_eq!(find_blank_line(b"A: b\r\n"), None);
    }
}
