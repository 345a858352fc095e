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

/// [`FirstAddress`] as a summary lends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address<'a> {
    /// The display name (raw), if any.
    pub name: Option<&'a str>,
    /// The local part (a group: its name).
    pub mailbox: &'a str,
    /// The domain (a group: empty).
    pub host: &'a str,
}

/// The summary of one message.
///
/// Summaries stay in memory by the hundred thousand, so each is three
/// allocations: the FETCH answers in one block (`blob`), the texts SORT,
/// THREAD and SEARCH read in another (`text`), both cut by offsets kept
/// inline, and the summary itself. (As separate strings, the allocations
/// and their headers weighed more than the content.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// ENVELOPE, BODY, BODYSTRUCTURE and the kept fields, one after the
    /// other.
    blob: Box<[u8]>,
    /// Where ENVELOPE, BODY and BODYSTRUCTURE end in `blob`.
    blob_ends: [u32; 3],
    /// The subject, the subject key, the Message-ID, the From, To and Cc
    /// addresses (name, local part, domain each) and the references
    /// (separated by spaces, which message ids never hold).
    text: Box<str>,
    /// Where each piece of `text` but the last ends.
    text_ends: [u32; TEXT_PIECES - 1],
    /// Which optional pieces are there ([`Present`] bits).
    present: u8,
    /// The Date header's instant, when it is a date.
    pub date: Option<i64>,
    /// The subject marked a reply or forward (THREAD).
    pub is_reply: bool,
    /// Where each field of the kept fields is, and which of
    /// [`CACHED_FIELDS`] it is: built the first time a FETCH asks, so that
    /// the next ones copy bytes without parsing.
    field_index: FieldIndex,
}

/// The pieces of [`Summary::text`], in order.
const SUBJECT: usize = 0;
const SUBJECT_KEY: usize = 1;
const MESSAGE_ID: usize = 2;
const FROM: usize = 3;
const TO: usize = 6;
const CC: usize = 9;
const REFERENCES: usize = 12;
const TEXT_PIECES: usize = 13;

/// Bits of [`Summary::present`].
struct Present;

impl Present {
    const MESSAGE_ID: u8 = 1;
    /// The address at piece `at` is there; its name is there.
    fn address(at: usize) -> (u8, u8) {
        let n = (at - FROM) / 3;
        (2 << (2 * n), 4 << (2 * n))
    }
}

/// What a summary holds, unpacked: how [`summarize`] and the on-disk
/// reader build one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Parts {
    envelope: Vec<u8>,
    body: Vec<u8>,
    bodystructure: Vec<u8>,
    date: Option<i64>,
    subject: String,
    from: Option<FirstAddress>,
    to: Option<FirstAddress>,
    cc: Option<FirstAddress>,
    message_id: Option<String>,
    references: Vec<String>,
    subject_key: String,
    is_reply: bool,
    fields: Vec<u8>,
}

impl Parts {
    fn pack(self) -> Summary {
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut blob = Vec::with_capacity(
            self.envelope.len() + self.body.len() + self.bodystructure.len() + self.fields.len(),
        );
        let mut blob_ends = [0u32; 3];
        for (i, part) in [&self.envelope, &self.body, &self.bodystructure]
            .into_iter()
            .enumerate()
        {
            blob.extend_from_slice(part);
            blob_ends[i] = to_u32(blob.len());
        }
        blob.extend_from_slice(&self.fields);
        let mut text = String::new();
        let mut text_ends = [0u32; TEXT_PIECES - 1];
        let mut present = 0u8;
        let mut pieces: Vec<&str> = Vec::with_capacity(TEXT_PIECES);
        pieces.push(&self.subject);
        pieces.push(&self.subject_key);
        if self.message_id.is_some() {
            present |= Present::MESSAGE_ID;
        }
        pieces.push(self.message_id.as_deref().unwrap_or(""));
        for (at, a) in [(FROM, &self.from), (TO, &self.to), (CC, &self.cc)] {
            let (there, named) = Present::address(at);
            match a {
                Some((name, mailbox, host)) => {
                    present |= there;
                    if name.is_some() {
                        present |= named;
                    }
                    pieces.push(name.as_deref().unwrap_or(""));
                    pieces.push(mailbox);
                    pieces.push(host);
                }
                None => pieces.extend(["", "", ""]),
            }
        }
        let references = self.references.join(" ");
        pieces.push(&references);
        for (i, p) in pieces.iter().enumerate() {
            text.push_str(p);
            if i < TEXT_PIECES - 1 {
                text_ends[i] = to_u32(text.len());
            }
        }
        Summary {
            blob: blob.into_boxed_slice(),
            blob_ends,
            text: text.into_boxed_str(),
            text_ends,
            present,
            date: self.date,
            is_reply: self.is_reply,
            field_index: FieldIndex::default(),
        }
    }
}

/// Where piece `i` of a block of `len` bytes lies, given where each piece
/// but the last ends.
fn piece(ends: &[u32], len: usize, i: usize) -> std::ops::Range<usize> {
    let start = i
        .checked_sub(1)
        .and_then(|p| ends.get(p))
        .map_or(0, |&e| e as usize);
    let end = ends.get(i).map_or(len, |&e| e as usize);
    start..end
}

impl Summary {
    fn blob_part(&self, i: usize) -> &[u8] {
        let r = piece(&self.blob_ends, self.blob.len(), i);
        self.blob.get(r).unwrap_or_default()
    }

    fn text_piece(&self, i: usize) -> &str {
        let r = piece(&self.text_ends, self.text.len(), i);
        self.text.get(r).unwrap_or_default()
    }

    /// ENVELOPE, as FETCH writes it.
    pub fn envelope(&self) -> &[u8] {
        self.blob_part(0)
    }

    /// BODY.
    pub fn body(&self) -> &[u8] {
        self.blob_part(1)
    }

    /// BODYSTRUCTURE.
    pub fn bodystructure(&self) -> &[u8] {
        self.blob_part(2)
    }

    /// The fields of [`CACHED_FIELDS`], raw and in message order, for
    /// FETCH BODY[HEADER.FIELDS (...)] that asks only for those.
    pub fn fields(&self) -> &[u8] {
        self.blob_part(3)
    }

    /// The Subject, decoded.
    pub fn subject(&self) -> &str {
        self.text_piece(SUBJECT)
    }

    /// The base subject in i;unicode-casemap form (what SORT compares).
    pub fn subject_key(&self) -> &str {
        self.text_piece(SUBJECT_KEY)
    }

    /// The Message-ID, without brackets.
    pub fn message_id(&self) -> Option<&str> {
        (self.present & Present::MESSAGE_ID != 0).then(|| self.text_piece(MESSAGE_ID))
    }

    fn address(&self, at: usize) -> Option<Address<'_>> {
        let (there, named) = Present::address(at);
        (self.present & there != 0).then(|| Address {
            name: (self.present & named != 0).then(|| self.text_piece(at)),
            mailbox: self.text_piece(at + 1),
            host: self.text_piece(at + 2),
        })
    }

    /// The first From address.
    pub fn from(&self) -> Option<Address<'_>> {
        self.address(FROM)
    }

    /// The first To address.
    pub fn to(&self) -> Option<Address<'_>> {
        self.address(TO)
    }

    /// The first Cc address.
    pub fn cc(&self) -> Option<Address<'_>> {
        self.address(CC)
    }

    /// References, else the first In-Reply-To id, separated by spaces.
    pub fn references(&self) -> &str {
        self.text_piece(REFERENCES)
    }
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
        let fields = self.fields();
        let index = self.field_index.0.get_or_init(|| index_fields(fields));
        index.iter().filter(move |f| set.has(f.id)).map(move |f| {
            fields
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
    Parts {
        subject_key: crate::search_text::fold(&base),
        is_reply,
        fields: kept,
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
    .pack()
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

fn put_addr(out: &mut Vec<u8>, a: Option<Address<'_>>) {
    match a {
        Some(a) => {
            out.push(1);
            put_opt(out, a.name.map(str::as_bytes));
            put(out, a.mailbox.as_bytes());
            put(out, a.host.as_bytes());
        }
        None => out.push(0),
    }
}

/// The first line of a summary cache file (`tern.cache`): its format; a
/// file of another form is rebuilt. Version 3: subject keys in Dovecot's
/// casemap (simple titlecase). Version 4: ENVELOPE shows source routes and
/// reads bare words as a display name.
pub const CACHE_MAGIC: &[u8] = b"tern summary cache 4\n";

/// Appends one entry of a cache file: the message's unique name, then its
/// summary.
pub fn encode_cache_entry(out: &mut Vec<u8>, base: &str, s: &Summary) {
    put(out, base.as_bytes());
    s.encode(out);
}

/// Reads a whole cache file (magic line, then entries of
/// [`encode_cache_entry`]); `None` when it is damaged or of another
/// format, so that the caller rebuilds it from the messages. Any input is
/// safe: every read is bounds-checked and nothing is allocated beyond what
/// the file holds.
pub fn decode_cache(data: &[u8]) -> Option<Vec<(String, Summary)>> {
    let mut r = Reader::new(data.strip_prefix(CACHE_MAGIC)?);
    let mut out = Vec::new();
    while !r.done() {
        let base = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        out.push((base, r.summary()?));
    }
    Some(out)
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
            // Written split at spaces, without empty ones: anything else is
            // damage (and would not read back the same).
            let r = self.string()?;
            if r.is_empty() || r.contains(' ') {
                return None;
            }
            references.push(r);
        }
        let subject_key = self.string()?;
        let is_reply = match self.byte()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let fields = self.bytes()?.to_vec();
        Some(
            Parts {
                subject_key,
                is_reply,
                fields,
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
            }
            .pack(),
        )
    }
}

impl Summary {
    /// Appends the on-disk form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put(out, self.envelope());
        put(out, self.body());
        put(out, self.bodystructure());
        match self.date {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.to_le_bytes());
            }
            None => out.push(0),
        }
        put(out, self.subject().as_bytes());
        put_addr(out, self.from());
        put_addr(out, self.to());
        put_addr(out, self.cc());
        put_opt(out, self.message_id().map(str::as_bytes));
        let references: Vec<&str> = self
            .references()
            .split(' ')
            .filter(|r| !r.is_empty())
            .collect();
        out.extend_from_slice(&(references.len() as u32).to_le_bytes());
        for r in references {
            put(out, r.as_bytes());
        }
        put(out, self.subject_key().as_bytes());
        out.push(u8::from(self.is_reply));
        put(out, self.fields());
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
        assert_eq!(
            s.to(),
            Some(Address {
                name: None,
                mailbox: "g",
                host: ""
            })
        );
        assert_eq!(
            s.from(),
            Some(Address {
                name: Some("A"),
                mailbox: "a",
                host: "b"
            })
        );
        assert_eq!(s.cc(), None);
        assert_eq!(s.message_id(), Some("m@x"));
        assert_eq!(s.references(), "p@x");
        assert_eq!(s.subject_key(), "HI");
        assert_eq!(s.subject(), "Re: hi");
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
