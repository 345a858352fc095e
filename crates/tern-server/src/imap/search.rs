//! SEARCH (RFC 3501 §6.4.4).
//!
//! Keys are evaluated per message on the blocking pool; the message file is
//! read only when a key needs its header or body. Header and body keys match
//! decoded text (RFC 2047 words, transfer encodings, charsets)
//! case-insensitively.

use rustc_hash::FxHashSet as HashSet;
use tern_imap_proto::ids::Seq;

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;
use tern_imap_proto::criteria::{Criteria, Frames};
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, seqset};
use tern_maildir::{Flag, Folder, MaildirError, MessageEntry};
use tern_message::search_text::{
    body_text_of, contains_folded, date_timestamp, decode_header_value, decode_in, fold,
    headers_text_of, search_charset,
};
use tern_message::{address, header, mime};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::session::{Known, Reply, Session, State};
use crate::folders::OpenFolder;
use crate::summaries::ViewSummaries;
use tern_message::summary::{is_cached_field, Summary};

/// One message as SEARCH sees it, loading content on demand.
struct Candidate<'a> {
    seq: u32,
    known: &'a Known,
    recent: bool,
    entry: &'a MessageEntry,
    /// The message's position in `aligned`'s view.
    pos: usize,
    aligned: &'a ViewSummaries,
    folder: &'a Folder,
    summaries: &'a crate::summaries::SummaryCache,
    /// The message file as stored (line ends as they are: SEARCH compares
    /// text, not octets) and its MIME tree.
    loaded: Option<(Vec<u8>, mime::Part)>,
    body: Option<String>,
    /// Where an unreadable message is reported ([`Ctx::unreadable`]).
    unreadable: &'a AtomicU32,
}

impl Candidate<'_> {
    fn loaded(&mut self) -> (&[u8], &mime::Part) {
        let (folder, entry, unreadable) = (self.folder, self.entry, self.unreadable);
        let (data, tree) = self.loaded.get_or_insert_with(|| {
            let raw = match folder.read(entry) {
                Ok(raw) => raw,
                // Expunged by another program meanwhile: it matches nothing.
                Err(MaildirError::MessageGone) => Vec::new(),
                // Unreadable (permissions, I/O error): never searched as if
                // empty; the search fails once it is over.
                Err(e) => {
                    tracing::error!(uid = entry.uid, cause = %e, "message file cannot be read");
                    let _ = unreadable.compare_exchange(
                        0,
                        entry.uid,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    Vec::new()
                }
            };
            let tree = mime::parse(&raw);
            (raw, tree)
        });
        (data, tree)
    }

    fn header_block(&mut self) -> &[u8] {
        let (data, tree) = self.loaded();
        data.get(tree.header.clone()).unwrap_or_default()
    }

    fn summary(&self) -> Option<Arc<Summary>> {
        self.aligned.get(self.summaries, self.folder, self.pos).ok()
    }

    /// The decoded values of the fields named `name`, as `read` reads
    /// them: from the summary when it keeps them, else from the message.
    fn header_values(&mut self, name: &str, read: Values) -> Vec<String> {
        let values = |block: &[u8]| -> Vec<String> {
            header::fields(block)
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
                .map(|f| {
                    let raw = header::unfold(f.value);
                    match read {
                        Values::Text => decode_header_value(&raw),
                        Values::Addresses => {
                            let list = address::normalized(&String::from_utf8_lossy(&raw));
                            decode_header_value(list.as_bytes())
                        }
                    }
                })
                .collect()
        };
        if is_cached_field(name) {
            if let Some(s) = self.summary() {
                return values(s.fields());
            }
        }
        values(self.header_block())
    }

    fn body(&mut self) -> &str {
        if self.body.is_none() {
            let (data, tree) = self.loaded();
            let text = body_text_of(data, tree);
            self.body = Some(text);
        }
        self.body.as_deref().unwrap_or("")
    }

    fn internal_date(&self) -> Option<chrono::NaiveDate> {
        let t = self.folder.internal_date(self.entry).ok()?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
        chrono::DateTime::from_timestamp(secs, 0).map(|d| d.date_naive())
    }

    /// The calendar date of the Date header in its own time zone; `None`
    /// when there is none or Dovecot's date grammar refuses it (SENT* then
    /// take 1-Jan-1970, as Dovecot does).
    fn sent_date(&mut self) -> Option<chrono::NaiveDate> {
        let v = self
            .header_values("Date", Values::Text)
            .into_iter()
            .next()?;
        date_timestamp(v.as_bytes())?;
        parse_date_part(&v)
    }

    fn sent_date_or_epoch(&mut self) -> chrono::NaiveDate {
        self.sent_date().unwrap_or_default()
    }
}

/// The calendar date of an RFC 5322 date, in the header's own time zone.
pub(crate) fn parse_date_part(v: &str) -> Option<chrono::NaiveDate> {
    let v = v.split_once(',').map(|(_, r)| r).unwrap_or(v);
    let mut it = v.split_whitespace();
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: i32 = it.next()?.parse().ok()?;
    let year = if year < 50 {
        year + 2000
    } else if year < 1000 {
        year + 1900
    } else {
        year
    };
    const M: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = M
        .iter()
        .position(|x| mon.len() >= 3 && mon[..3].eq_ignore_ascii_case(x))? as u32
        + 1;
    chrono::NaiveDate::from_ymd_opt(year, m, day)
}

struct Ctx {
    exists: u32,
    max_uid: u32,
    /// The CHARSET of the search strings (`None`: UTF-8).
    charset: Option<&'static encoding_rs::Encoding>,
    /// The UID of the first message that could not be read (0: none),
    /// shared by the search's threads.
    unreadable: AtomicU32,
}

/// A key the session's own state decides (flags, keywords, numbers,
/// \Recent); `None` for one that needs the message.
fn state_key(key: &SearchKey<'_>, seq: u32, k: &Known, recent: bool, ctx: &Ctx) -> Option<bool> {
    use SearchKey as K;
    let has = |f: Flag| k.flags.contains(f);
    let keyword = |w: &imap_codec::imap_types::core::Atom<'_>| {
        k.keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(w.as_ref()))
    };
    Some(match key {
        K::All => true,
        K::SequenceSet(set) => seqset::contains(set, seq, ctx.exists),
        K::Uid(set) => seqset::contains(set, k.uid, ctx.max_uid),
        K::Answered => has(Flag::Answered),
        K::Unanswered => !has(Flag::Answered),
        K::Deleted => has(Flag::Deleted),
        K::Undeleted => !has(Flag::Deleted),
        K::Draft => has(Flag::Draft),
        K::Undraft => !has(Flag::Draft),
        K::Flagged => has(Flag::Flagged),
        K::Unflagged => !has(Flag::Flagged),
        K::Seen => has(Flag::Seen),
        K::Unseen => !has(Flag::Seen),
        K::Recent => recent,
        K::Old => !recent,
        K::New => recent && !has(Flag::Seen),
        K::Keyword(w) => keyword(w),
        K::Unkeyword(w) => !keyword(w),
        K::ModSequence { .. } => false,
        _ => return None,
    })
}

/// [`matches`] for criteria that need no message ([`reads_messages`] is
/// false), for every message at once: one tight loop per key rather than
/// a walk of the criteria per message (SEARCH UNSEEN or FLAGGED over
/// 100,000 messages). The fold holds one vector per open operator, so it
/// is only used for shallow criteria ([`VECTOR_DEPTH`]).
fn matches_state(c: &Criteria, known: &[Known], recent: &HashSet<u32>, ctx: &Ctx) -> Vec<bool> {
    let leaf = |key: &SearchKey<'_>| -> Vec<bool> {
        known
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let r = !recent.is_empty() && recent.contains(&k.uid);
                state_key(key, Seq::at(i).get(), k, r, ctx).unwrap_or(false)
            })
            .collect()
    };
    c.fold(
        &mut Vec::new(),
        leaf,
        |and| vec![and; known.len()],
        |acc, v, or| {
            for (x, y) in acc.iter_mut().zip(v) {
                if or {
                    *x |= y;
                } else {
                    *x &= y;
                }
            }
        },
        |v| {
            for x in v.iter_mut() {
                *x = !*x;
            }
        },
        // Every child counts for some message: no list stops early.
        |_, _| false,
    )
}

/// Criteria at most this deep are decided for all messages at once
/// ([`matches_state`], one vector per level); deeper ones message by
/// message.
const VECTOR_DEPTH: usize = 16;

/// Whether one message matches the criteria.
fn matches(
    criteria: &Criteria,
    scratch: &mut Frames<bool>,
    c: &mut Candidate<'_>,
    ctx: &Ctx,
) -> bool {
    criteria.eval(scratch, |k| matches_key(k, c, ctx))
}

/// Whether one message matches one key (never a list, OR or NOT:
/// [`Criteria`] holds those as nodes).
fn matches_key(key: &SearchKey<'_>, c: &mut Candidate<'_>, ctx: &Ctx) -> bool {
    use SearchKey as K;
    let text =
        |s: &imap_codec::imap_types::core::AString<'_>| fold(&decode_in(s.as_ref(), ctx.charset));
    if let Some(v) = state_key(key, c.seq, c.known, c.recent, ctx) {
        return v;
    }
    match key {
        K::Larger(n) => c.folder.crlf_size(c.entry).unwrap_or(0) > *n as u64,
        K::Smaller(n) => c.folder.crlf_size(c.entry).unwrap_or(0) < *n as u64,
        K::Before(d) => c.internal_date().is_some_and(|x| x < *d.as_ref()),
        K::On(d) => c.internal_date().is_some_and(|x| x == *d.as_ref()),
        K::Since(d) => c.internal_date().is_some_and(|x| x >= *d.as_ref()),
        // A message without a Date header it can read was sent on
        // 1-Jan-1970, as Dovecot takes it: before any date asked for.
        K::SentBefore(d) => c.sent_date_or_epoch() < *d.as_ref(),
        K::SentOn(d) => c.sent_date_or_epoch() == *d.as_ref(),
        K::SentSince(d) => c.sent_date_or_epoch() >= *d.as_ref(),
        K::Subject(s) => {
            let needle = text(s);
            // The decoded subject is in the summary cache; an empty needle
            // asks whether the field exists at all, which only the
            // message can tell.
            match c.summary() {
                Some(sum) if !needle.is_empty() => contains_folded(sum.subject(), &needle),
                _ => header_match(c, "Subject", &needle, Values::Text),
            }
        }
        K::From(s) => header_match(c, "From", &text(s), Values::Addresses),
        K::To(s) => header_match(c, "To", &text(s), Values::Addresses),
        K::Cc(s) => header_match(c, "Cc", &text(s), Values::Addresses),
        K::Bcc(s) => header_match(c, "Bcc", &text(s), Values::Addresses),
        K::Header(name, value) => {
            let name = String::from_utf8_lossy(name.as_ref());
            header_match(c, &name, &text(value), Values::Text)
        }
        K::Body(s) => {
            let needle = text(s);
            contains_folded(c.body(), &needle)
        }
        K::Text(s) => {
            let needle = text(s);
            let (data, tree) = c.loaded();
            contains_folded(&headers_text_of(data, tree), &needle)
                || contains_folded(c.body(), &needle)
        }
        K::Older(secs) | K::Younger(secs) => {
            let Ok(t) = c.folder.internal_date(c.entry) else {
                return false;
            };
            let age = std::time::SystemTime::now()
                .duration_since(t)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let older = age >= secs.get() as u64;
            if matches!(key, K::Older(_)) {
                older
            } else {
                !older
            }
        }
        _ => false,
    }
}

/// How a header field's value is read for matching.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Its text, encoded words decoded (SUBJECT, HEADER).
    Text,
    /// The addresses it holds written out as Dovecot writes them (comments
    /// dropped, `a@b (Name)` as `"Name" <a@b>`): what SEARCH FROM, TO, CC
    /// and BCC match in Dovecot.
    Addresses,
}

fn header_match(c: &mut Candidate<'_>, name: &str, needle: &str, read: Values) -> bool {
    let values = c.header_values(name, read);
    if needle.is_empty() {
        return !values.is_empty();
    }
    values.iter().any(|v| contains_folded(v, needle))
}

/// The charset of a SEARCH, SORT or THREAD; BADCHARSET (listing the
/// common ones) when tern does not know it.
pub(super) fn check_charset(
    charset: Option<&Charset<'_>>,
) -> Result<Option<&'static encoding_rs::Encoding>, Reply> {
    let Some(cs) = charset else {
        return Ok(None);
    };
    let name = match cs {
        Charset::Atom(a) => a.as_ref().to_owned(),
        Charset::Quoted(q) => q.as_ref().to_owned(),
    };
    search_charset(&name).map_err(|_| {
        Reply::no(
            Some(Code::BadCharset(vec![
                "UTF-8",
                "US-ASCII",
                "ISO-8859-1",
                "ISO-8859-2",
                "ISO-8859-15",
                "WINDOWS-1250",
                "WINDOWS-1251",
                "WINDOWS-1252",
                "KOI8-R",
                "KOI8-U",
                "ISO-2022-JP",
                "SHIFT_JIS",
                "EUC-JP",
                "GB2312",
                "GBK",
                "BIG5",
                "EUC-KR",
            ])),
            format!("Unsupported charset {name}"),
        )
    })
}

/// Whether any key asks about \Recent (RECENT, NEW, OLD).
fn uses_recent(criteria: &Criteria) -> bool {
    criteria
        .leaves()
        .any(|k| matches!(k, SearchKey::Recent | SearchKey::New | SearchKey::Old))
}

/// Whether the criteria may read message files (or their summaries): such
/// a search over many messages is spread over the cores.
fn reads_messages(criteria: &Criteria) -> bool {
    criteria.leaves().any(key_reads_messages)
}

/// Whether one key reads the message: exactly when [`state_key`] cannot
/// answer it.
fn key_reads_messages(k: &SearchKey<'_>) -> bool {
    let probe = Known {
        uid: 0,
        flags: Default::default(),
        keywords: Arc::from(Vec::new()),
    };
    let ctx = Ctx {
        exists: 0,
        max_uid: 0,
        charset: None,
        unreadable: AtomicU32::new(0),
    };
    state_key(k, 0, &probe, false, &ctx).is_none()
}

/// Messages below this are searched on one thread.
const PARALLEL_FROM: usize = 512;

/// The positions (in `known`) of the messages that match `key`. Runs on a
/// blocking thread; a search that reads messages is split over the
/// machine's cores (reading and decoding 100,000 files is most of a
/// `SEARCH TEXT`).
pub(super) fn evaluate(
    key: &Criteria,
    charset: Option<&'static encoding_rs::Encoding>,
    known: &[Known],
    recent: &HashSet<u32>,
    open: &OpenFolder,
) -> Result<Vec<usize>, u32> {
    let aligned = open.summaries.for_view(&open.folder.view());
    let ctx = Ctx {
        exists: known.len() as u32,
        max_uid: known.last().map(|k| k.uid).unwrap_or(0),
        charset,
        unreadable: AtomicU32::new(0),
    };
    let hits = evaluate_all(key, &ctx, known, recent, open, &aligned);
    match ctx.unreadable.into_inner() {
        0 => Ok(hits),
        uid => Err(uid),
    }
}

/// [`evaluate`] once the context is set up.
fn evaluate_all(
    key: &Criteria,
    ctx: &Ctx,
    known: &[Known],
    recent: &HashSet<u32>,
    open: &OpenFolder,
    aligned: &ViewSummaries,
) -> Vec<usize> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if !reads_messages(key) && key.depth() <= VECTOR_DEPTH {
        return matches_state(key, known, recent, ctx)
            .into_iter()
            .enumerate()
            .filter_map(|(i, hit)| hit.then_some(i))
            .collect();
    }
    if threads < 2 || known.len() < PARALLEL_FROM {
        return evaluate_range(key, ctx, known, 0, recent, open, aligned);
    }
    let per = known.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = known
            .chunks(per)
            .enumerate()
            .map(|(n, part)| {
                scope.spawn(move || evaluate_range(key, ctx, part, n * per, recent, open, aligned))
            })
            .collect();
        let mut hits = Vec::new();
        for p in parts {
            // A panic in one part is a bug; the others' hits still count.
            match p.join() {
                Ok(h) => hits.extend(h),
                Err(_) => tracing::error!("search thread panicked"),
            }
        }
        hits
    })
}

/// [`evaluate`] over `part`, the messages of `known` from position `first`.
fn evaluate_range(
    key: &Criteria,
    ctx: &Ctx,
    part: &[Known],
    first: usize,
    recent: &HashSet<u32>,
    open: &OpenFolder,
    aligned: &ViewSummaries,
) -> Vec<usize> {
    let messages = &aligned.view.messages;
    let mut hits = Vec::new();
    // Both lists are in UID order: walk them together from the part's
    // first UID.
    let start = part
        .first()
        .map(|k| messages.partition_point(|e| e.uid < k.uid))
        .unwrap_or(0);
    let mut entries = messages.iter().enumerate().skip(start).peekable();
    let mut scratch = Vec::new();
    for (n, k) in part.iter().enumerate() {
        while entries.next_if(|(_, e)| e.uid < k.uid).is_some() {}
        let Some((pos, entry)) = entries.next_if(|(_, e)| e.uid == k.uid) else {
            continue;
        };
        let i = first + n;
        let mut c = Candidate {
            seq: Seq::at(i).get(),
            known: k,
            recent: !recent.is_empty() && recent.contains(&k.uid),
            entry,
            pos,
            aligned,
            folder: &open.folder,
            summaries: &open.summaries,
            loaded: None,
            body: None,
            unreadable: &ctx.unreadable,
        };
        if matches(key, &mut scratch, &mut c, ctx) {
            hits.push(i);
        }
    }
    hits
}

/// A SEARCH to run on a blocking thread, with what it needs of the session.
pub(super) struct SearchJob {
    pub known: Arc<Vec<Known>>,
    pub open: Arc<OpenFolder>,
    recent: HashSet<u32>,
    key: Criteria,
    charset: Option<&'static encoding_rs::Encoding>,
}

impl SearchJob {
    /// Positions in `known` of the matching messages. The caller writes
    /// the summary cache once its command is done with the summaries.
    ///
    /// # Errors
    /// `NO [SERVERBUG]` when a message the search had to read could not be
    /// read (it is logged): an answer that left it out would be wrong.
    pub fn run(&self) -> Result<Vec<usize>, Reply> {
        evaluate(
            &self.key,
            self.charset,
            &self.known,
            &self.recent,
            &self.open,
        )
        .map_err(|uid| {
            Reply::no(
                Some(Code::ServerBug),
                format!("Message UID {uid} cannot be read, see the server log"),
            )
        })
    }

    /// The number a response shows for position `i`.
    pub fn id(&self, i: usize, uid: bool) -> u32 {
        if uid {
            self.known[i].uid
        } else {
            Seq::at(i).get()
        }
    }
}

impl Session {
    /// The search over the selected mailbox, after the charset check.
    pub(super) fn search_job(
        &self,
        charset: Option<&Charset<'_>>,
        criteria: Criteria,
    ) -> Result<SearchJob, Reply> {
        let charset = check_charset(charset)?;
        let State::Selected { mailbox, .. } = &self.state else {
            return Err(Reply::bad("No mailbox selected"));
        };
        Ok(SearchJob {
            known: mailbox.known.clone(),
            open: mailbox.open.clone(),
            // Copied only for a search that asks about \Recent.
            recent: if uses_recent(&criteria) {
                mailbox.recent.clone()
            } else {
                HashSet::default()
            },
            key: criteria,
            charset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_dates() {
        assert_eq!(
            parse_date_part("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)"),
            chrono::NaiveDate::from_ymd_opt(1996, 7, 17)
        );
        assert_eq!(
            parse_date_part("1 jan 99 00:00 GMT"),
            chrono::NaiveDate::from_ymd_opt(1999, 1, 1)
        );
        assert_eq!(parse_date_part("garbage"), None);
    }
}
