//! What clients ask of a message again and again, computed once: ENVELOPE,
//! BODY, BODYSTRUCTURE, and the fields SORT and THREAD order by. A Maildir
//! message never changes its content under one name, so a summary stays
//! right as long as the message exists; the server keeps them per folder
//! (and on disk) and reads a message file only when its summary is missing.

use std::sync::OnceLock;

use crate::address::{parse_list, AddressItem};
use crate::bodystructure::{self, Extensions};
use crate::header;
use crate::search_text::{date_timestamp, decode_header_value};

/// The first address of an address field: display name (raw), local part,
/// domain (a group: its name and an empty domain; what is missing named as
/// ENVELOPE names it).
pub type FirstAddress = (Option<String>, String, String);

/// The summary of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// ENVELOPE, as FETCH writes it.
    pub envelope: Vec<u8>,
    /// BODY.
    pub body: Vec<u8>,
    /// BODYSTRUCTURE.
    pub bodystructure: Vec<u8>,
    /// The Date header's instant, when it is a date.
    pub date: Option<i64>,
    /// The Subject, decoded.
    pub subject: String,
    /// First From, To and Cc addresses.
    pub from: Option<FirstAddress>,
    /// First To address.
    pub to: Option<FirstAddress>,
    /// First Cc address.
    pub cc: Option<FirstAddress>,
    /// The Message-ID, without brackets.
    pub message_id: Option<String>,
    /// References, else the first In-Reply-To id.
    pub references: Vec<String>,
    /// The base subject in i;unicode-casemap form (what SORT compares).
    pub subject_key: String,
    /// The subject marked a reply or forward (THREAD).
    pub is_reply: bool,
    /// The fields of [`CACHED_FIELDS`], raw and in message order, for
    /// FETCH BODY[HEADER.FIELDS (...)] that asks only for those.
    pub fields: Vec<u8>,
    /// Where each field of `fields` is, and which of [`CACHED_FIELDS`] it
    /// is: built the first time a FETCH asks, so that the next ones copy
    /// bytes without parsing.
    pub field_index: FieldIndex,
}

/// Where the kept fields are (see [`Summary::field_index`]): derived from
/// [`Summary::fields`], so not part of a summary's value (two summaries
/// are equal whether or not it was built yet).
#[derive(Debug, Clone, Default)]
pub struct FieldIndex(OnceLock<Vec<FieldRef>>);

impl PartialEq for FieldIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FieldIndex {}

/// One field of [`Summary::fields`]: its number in [`CACHED_FIELDS`] and
/// its bytes (`start..end`, the final CRLF included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef {
    id: u8,
    start: u32,
    end: u32,
}

/// A set of [`CACHED_FIELDS`], one bit each: what a HEADER.FIELDS list
/// asks for, worked out once per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u64);

impl FieldSet {
    /// The set of these names; `None` when one of them is not kept in
    /// summaries (the message itself must answer).
    pub fn of(names: &[String]) -> Option<FieldSet> {
        let mut bits = 0u64;
        for n in names {
            bits |= 1 << cached_id(n.as_bytes())?;
        }
        Some(FieldSet(bits))
    }

    fn has(self, id: u8) -> bool {
        self.0 & (1u64 << id) != 0
    }
}

/// The header fields kept in a summary: those mail clients list in their
/// message lists (Thunderbird, Roundcube, mutt, Apple Mail ask for these).
pub const CACHED_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "sender",
    "content-type",
    "priority",
    "x-priority",
    "importance",
    "newsgroups",
    "list-post",
    "list-id",
    "list-unsubscribe",
    "x-mailer",
    "user-agent",
    "disposition-notification-to",
    "return-receipt-to",
    "mail-followup-to",
    "mail-reply-to",
    "x-spam-flag",
    "x-spam-status",
    "x-spam-score",
    "delivered-to",
    "x-original-to",
    "return-path",
    "mime-version",
    "content-transfer-encoding",
    "x-label",
    "keywords",
];

/// The number of a field name in [`CACHED_FIELDS`], if it is kept.
fn cached_id(name: &[u8]) -> Option<u8> {
    CACHED_FIELDS
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|id| id as u8)
}

/// Whether fields of this name are kept in summaries (all of them, in
/// message order).
pub fn is_cached_field(name: &str) -> bool {
    cached_id(name.as_bytes()).is_some()
}

// CACHED_FIELDS must fit the bits of a FieldSet.
const _: () = assert!(CACHED_FIELDS.len() <= 64);

impl Summary {
    /// BODY[HEADER.FIELDS (...)] of the fields in `set` from the kept
    /// fields: the fields in message order, then the empty line, as a
    /// section of the message would give them.
    pub fn header_fields_in(&self, set: FieldSet) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_fields_len(set));
        self.write_header_fields(set, &mut out);
        out
    }

    fn picked(&self, set: FieldSet) -> impl Iterator<Item = &[u8]> {
        let index = self
            .field_index
            .0
            .get_or_init(|| index_fields(&self.fields));
        index.iter().filter(move |f| set.has(f.id)).map(|f| {
            self.fields
                .get(f.start as usize..f.end as usize)
                .unwrap_or_default()
        })
    }

    /// The length of [`Summary::header_fields_in`].
    pub fn header_fields_len(&self, set: FieldSet) -> usize {
        self.picked(set).map(<[u8]>::len).sum::<usize>() + 2
    }

    /// Appends [`Summary::header_fields_in`] to `out`.
    pub fn write_header_fields(&self, set: FieldSet, out: &mut Vec<u8>) {
        for f in self.picked(set) {
            out.extend_from_slice(f);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The [`FieldRef`]s of a block of kept fields.
fn index_fields(block: &[u8]) -> Vec<FieldRef> {
    let base = block.as_ptr() as usize;
    header::fields(block)
        .iter()
        .filter_map(|f| {
            let id = cached_id(f.name)?;
            let start = f.raw.as_ptr() as usize - base;
            Some(FieldRef {
                id,
                start: start as u32,
                end: (start + f.raw.len()) as u32,
            })
        })
        .collect()
}

fn first_address(fields: &[header::Field<'_>], name: &str) -> Option<FirstAddress> {
    let raw = header::first(fields, name)?;
    parse_list(&String::from_utf8_lossy(&raw))
        .into_iter()
        .find_map(|a| match a {
            AddressItem::GroupStart(g) => Some((None, g, String::new())),
            AddressItem::Mailbox {
                name,
                mailbox,
                host,
                ..
            } => Some((
                name,
                mailbox.unwrap_or_else(|| "MISSING_MAILBOX".to_owned()),
                host.unwrap_or_else(|| "MISSING_DOMAIN".to_owned()),
            )),
            AddressItem::GroupEnd => None,
        })
}

/// Summarizes a message (CRLF line ends).
pub fn summarize(msg: &[u8]) -> Summary {
    let root = crate::mime::parse(msg);
    let block = &msg[root.header.clone()];
    let mut envelope = Vec::new();
    crate::envelope::write(&mut envelope, block);
    let mut body = Vec::new();
    bodystructure::write(&mut body, msg, &root, Extensions::No);
    let mut bs = Vec::new();
    bodystructure::write(&mut bs, msg, &root, Extensions::Yes);
    let fields = header::fields(block);
    let text =
        |n: &str| header::first(&fields, n).map(|v| String::from_utf8_lossy(&v).into_owned());
    let mut references = text("References")
        .map(|v| crate::thread::message_ids(&v))
        .unwrap_or_default();
    if references.is_empty() {
        references = text("In-Reply-To")
            .and_then(|v| crate::thread::message_ids(&v).into_iter().next())
            .into_iter()
            .collect();
    }
    let mut kept = Vec::new();
    for f in &fields {
        if cached_id(f.name).is_some() {
            kept.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                kept.extend_from_slice(b"\r\n");
            }
        }
    }
    let subject = header::first(&fields, "Subject")
        .map(|v| decode_header_value(&v))
        .unwrap_or_default();
    let (base, is_reply) = crate::subject::base_subject(&subject);
    // Summaries stay in memory by the hundred thousand: no spare capacity.
    for buf in [&mut envelope, &mut body, &mut bs, &mut kept] {
        buf.shrink_to_fit();
    }
    Summary {
        subject_key: crate::search_text::fold(&base),
        is_reply,
        fields: kept,
        field_index: FieldIndex::default(),
        envelope,
        body,
        bodystructure: bs,
        date: header::first(&fields, "Date").and_then(|v| date_timestamp(&v)),
        subject,
        from: first_address(&fields, "From"),
        to: first_address(&fields, "To"),
        cc: first_address(&fields, "Cc"),
        message_id: text("Message-ID")
            .and_then(|v| crate::thread::message_ids(&v).into_iter().next()),
        references,
    }
}

// --- the on-disk form: length-prefixed fields, no parsing of IMAP text. ---

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.push(1);
            put(out, b);
        }
        None => out.push(0),
    }
}

fn put_addr(out: &mut Vec<u8>, a: &Option<FirstAddress>) {
    match a {
        Some((name, mailbox, host)) => {
            out.push(1);
            put_opt(out, name.as_deref().map(str::as_bytes));
            put(out, mailbox.as_bytes());
            put(out, host.as_bytes());
        }
        None => out.push(0),
    }
}

/// Reads the on-disk form; every read is bounds-checked, so a damaged
/// file gives `None`, never a panic.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, at: 0 }
    }

    /// True at the end.
    pub fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len =
            u32::from_le_bytes(self.data.get(self.at..self.at + 4)?.try_into().ok()?) as usize;
        self.at += 4;
        let b = self.data.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(b)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }

    fn addr(&mut self) -> Option<Option<FirstAddress>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some((self.opt_string()?, self.string()?, self.string()?))),
            _ => None,
        }
    }

    /// A summary written by [`Summary::encode`].
    pub fn summary(&mut self) -> Option<Summary> {
        let envelope = self.bytes()?.to_vec();
        let body = self.bytes()?.to_vec();
        let bodystructure = self.bytes()?.to_vec();
        let date = match self.byte()? {
            0 => None,
            1 => Some(i64::from_le_bytes(
                self.data.get(self.at..self.at + 8)?.try_into().ok()?,
            )),
            _ => return None,
        };
        if date.is_some() {
            self.at += 8;
        }
        let subject = self.string()?;
        let from = self.addr()?;
        let to = self.addr()?;
        let cc = self.addr()?;
        let message_id = self.opt_string()?;
        let n = u32::from_le_bytes(self.data.get(self.at..self.at + 4)?.try_into().ok()?) as usize;
        self.at += 4;
        let mut references = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            references.push(self.string()?);
        }
        let subject_key = self.string()?;
        let is_reply = match self.byte()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let fields = self.bytes()?.to_vec();
        Some(Summary {
            subject_key,
            is_reply,
            fields,
            field_index: FieldIndex::default(),
            envelope,
            body,
            bodystructure,
            date,
            subject,
            from,
            to,
            cc,
            message_id,
            references,
        })
    }
}

impl Summary {
    /// Appends the on-disk form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put(out, &self.envelope);
        put(out, &self.body);
        put(out, &self.bodystructure);
        match self.date {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.to_le_bytes());
            }
            None => out.push(0),
        }
        put(out, self.subject.as_bytes());
        put_addr(out, &self.from);
        put_addr(out, &self.to);
        put_addr(out, &self.cc);
        put_opt(out, self.message_id.as_deref().map(str::as_bytes));
        out.extend_from_slice(&(self.references.len() as u32).to_le_bytes());
        for r in &self.references {
            put(out, r.as_bytes());
        }
        put(out, self.subject_key.as_bytes());
        out.push(u8::from(self.is_reply));
        put(out, &self.fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip() {
        let m = b"From: A <a@b>\r\nTo: g: x@y;\r\nSubject: Re: hi\r\nDate: 1 Jan 70 00:00 GMT\r\nMessage-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\n\r\nbody\r\n";
        let s = summarize(m);
        assert_eq!(s.date, Some(0));
        assert_eq!(s.to, Some((None, "g".into(), String::new())));
        assert_eq!(s.references, vec!["p@x".to_owned()]);
        assert_eq!(s.subject_key, "HI");
        assert!(s.is_reply);
        assert!(FieldSet::of(&["Received".into()]).is_none());
        let set = FieldSet::of(&["subject".into(), "FROM".into()]).unwrap();
        assert_eq!(
            s.header_fields_in(set),
            b"From: A <a@b>\r\nSubject: Re: hi\r\n\r\n"
        );
        assert_eq!(s.header_fields_len(set), s.header_fields_in(set).len());
        let mut buf = Vec::new();
        s.encode(&mut buf);
        s.encode(&mut buf);
        let mut r = Reader::new(&buf);
        assert_eq!(r.summary().as_ref(), Some(&s));
        assert_eq!(r.summary().as_ref(), Some(&s));
        assert!(r.done());
        // A damaged form is refused, not misread.
        for cut in [1, 10, buf.len() / 2 - 1] {
            assert!(Reader::new(&buf[..cut]).summary().is_none());
        }
    }
}
