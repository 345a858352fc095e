//! FETCH (RFC 3501 §6.4.5, RFC 3516 BINARY).
//!
//! The response for each message is built on the blocking pool, a chunk of
//! messages at a time, and flushed between chunks: `FETCH 1:* (BODY[])` on a
//! huge folder holds one chunk in memory, not the folder.

use std::fmt::Write as _;
use std::sync::Arc;
use tern_imap_proto::ids::Seq;

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part as CodecPart, Section,
};
use tern_imap_proto::binary_sections::BinaryAlias;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, wire};
use tern_maildir::{Folder, MaildirError, MessageEntry};
use tern_message::section::{self, Specifier};
use tern_message::summary::FieldSet;
use tern_message::{crlf, mime};

use crate::summaries::ViewSummaries;

use super::selected::message_flags;
use super::session::{End, Known, Reply, Session, State};

/// One requested data item, owned and checked.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    Section {
        label: String,
        path: Vec<u32>,
        spec: Specifier,
        partial: Option<(u32, u32)>,
        peek: bool,
        /// HEADER.FIELDS of the top level asking only for fields kept in
        /// the summaries: answered from there.
        cached: Option<FieldSet>,
    },
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Binary {
        /// What stands between the brackets in the answer.
        label: String,
        path: Vec<u32>,
        /// A text specifier after the part numbers (`BINARY[1.MIME]`,
        /// accepted as Dovecot accepts it).
        spec: Option<Specifier>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    BinarySize {
        label: String,
        path: Vec<u32>,
        spec: Option<Specifier>,
    },
}

impl Item {
    /// An item of the message's content (what Dovecot answers after the
    /// others, and after the FLAGS an implicit \Seen adds).
    pub(super) fn is_body(&self) -> bool {
        matches!(
            self,
            Item::Section { .. }
                | Item::Rfc822
                | Item::Rfc822Header
                | Item::Rfc822Text
                | Item::Binary { .. }
                | Item::BinarySize { .. }
        )
    }

    pub(super) fn sets_seen(&self) -> bool {
        matches!(
            self,
            Item::Section { peek: false, .. }
                | Item::Binary { peek: false, .. }
                | Item::Rfc822
                | Item::Rfc822Text
        )
    }
}

fn astring_text(a: &AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).into_owned()
}

fn part_path(p: &Option<CodecPart>) -> Vec<u32> {
    p.as_ref()
        .map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
        .unwrap_or_default()
}

fn path_label(path: &[u32]) -> String {
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn field_list(names: &[AString<'_>]) -> String {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let s = n.as_ref();
        if !s.is_empty()
            && s.iter()
                .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(b))
        {
            out.extend_from_slice(s);
        } else {
            wire::string(&mut out, s);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn convert_section(section: &Option<Section<'_>>) -> (String, Vec<u32>, Specifier) {
    let join = |path: &[u32], rest: &str| {
        if path.is_empty() {
            rest.to_owned()
        } else if rest.is_empty() {
            path_label(path)
        } else {
            format!("{}.{}", path_label(path), rest)
        }
    };
    match section {
        None => (String::new(), Vec::new(), Specifier::Whole),
        Some(Section::Part(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            (path_label(&path), path, Specifier::Whole)
        }
        Some(Section::Header(p)) => {
            let path = part_path(p);
            (join(&path, "HEADER"), path, Specifier::Header)
        }
        Some(Section::Text(p)) => {
            let path = part_path(p);
            (join(&path, "TEXT"), path, Specifier::Text)
        }
        Some(Section::Mime(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            (join(&path, "MIME"), path, Specifier::Mime)
        }
        Some(Section::HeaderFields(p, names)) => {
            let path = part_path(p);
            let list: Vec<String> = names.as_ref().iter().map(astring_text).collect();
            (
                join(
                    &path,
                    &format!("HEADER.FIELDS ({})", field_list(names.as_ref())),
                ),
                path,
                Specifier::HeaderFields(list),
            )
        }
        Some(Section::HeaderFieldsNot(p, names)) => {
            let path = part_path(p);
            let list: Vec<String> = names.as_ref().iter().map(astring_text).collect();
            (
                join(
                    &path,
                    &format!("HEADER.FIELDS.NOT ({})", field_list(names.as_ref())),
                ),
                path,
                Specifier::HeaderFieldsNot(list),
            )
        }
    }
}

/// Converts the parsed item names into our items (UID first for UID FETCH);
/// the BODY sections `aliases` names stand for BINARY items.
pub(crate) fn items_of(
    m: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
    aliases: &[BinaryAlias],
) -> Vec<Item> {
    let names: Vec<MessageDataItemName<'_>> = match m {
        MacroOrMessageDataItemNames::Macro(mac) => mac.expand(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
    };
    let mut items = Vec::new();
    if uid && !names.iter().any(|n| matches!(n, MessageDataItemName::Uid)) {
        items.push(Item::Uid);
    }
    let mut sections = 0;
    for n in &names {
        let item = match n {
            MessageDataItemName::Uid => Item::Uid,
            MessageDataItemName::Flags => Item::Flags,
            MessageDataItemName::InternalDate => Item::InternalDate,
            MessageDataItemName::Rfc822Size => Item::Size,
            MessageDataItemName::Envelope => Item::Envelope,
            MessageDataItemName::Body => Item::Body,
            MessageDataItemName::BodyStructure => Item::BodyStructure,
            MessageDataItemName::Rfc822 => Item::Rfc822,
            MessageDataItemName::Rfc822Header => Item::Rfc822Header,
            MessageDataItemName::Rfc822Text => Item::Rfc822Text,
            MessageDataItemName::BodyExt {
                section,
                partial,
                peek,
            } => {
                let (label, path, spec) = convert_section(section);
                let alias = aliases.iter().find(|a| a.index == sections);
                sections += 1;
                if let Some(alias) = alias {
                    let spec = Some(spec);
                    items.push(if alias.size {
                        Item::BinarySize { label, path, spec }
                    } else {
                        Item::Binary {
                            label,
                            path,
                            spec,
                            partial: partial.map(|(s, l)| (s, l.get())),
                            peek: *peek,
                        }
                    });
                    continue;
                }
                let cached = match &spec {
                    Specifier::HeaderFields(names) if path.is_empty() => FieldSet::of(names),
                    _ => None,
                };
                Item::Section {
                    label,
                    path,
                    spec,
                    partial: partial.map(|(s, l)| (s, l.get())),
                    peek: *peek,
                    cached,
                }
            }
            MessageDataItemName::Binary {
                section,
                partial,
                peek,
            } => {
                let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                Item::Binary {
                    label: path_label(&path),
                    path,
                    spec: None,
                    partial: partial.map(|(s, l)| (s, l.get())),
                    peek: *peek,
                }
            }
            MessageDataItemName::BinarySize { section } => {
                let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                Item::BinarySize {
                    label: path_label(&path),
                    path,
                    spec: None,
                }
            }
            _ => continue,
        };
        items.push(item);
    }
    items
}

/// Why one message's response could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    Storage(MaildirError),
    UnknownCte,
}

impl From<MaildirError> for BuildError {
    fn from(e: MaildirError) -> Self {
        BuildError::Storage(e)
    }
}

/// The message bytes (CRLF) and MIME tree, loaded on first use.
struct Loaded {
    data: Vec<u8>,
    tree: mime::Part,
}

fn load(folder: &Folder, entry: &MessageEntry) -> Result<Loaded, MaildirError> {
    let data = wire_form(folder, entry)?;
    let tree = mime::parse(&data);
    Ok(Loaded { data, tree })
}

/// A whole message as IMAP sends it: with CRLF line ends, unless the file
/// holds it so already ([`tern_maildir::flags::stored_as_sent`]: a message
/// LF line ends could not give back byte for byte).
pub(crate) fn wire_form(folder: &Folder, entry: &MessageEntry) -> Result<Vec<u8>, MaildirError> {
    let raw = folder.read(entry)?;
    if tern_maildir::flags::stored_as_sent(&entry.base) {
        return Ok(raw);
    }
    Ok(match crlf::to_crlf(&raw) {
        std::borrow::Cow::Borrowed(_) => raw,
        std::borrow::Cow::Owned(v) => v,
    })
}

/// `BINARY[path]` of a loaded message (RFC 3516).
fn decode_part(
    data: &[u8],
    tree: &mime::Part,
    path: &[u32],
) -> Result<Option<Vec<u8>>, BuildError> {
    tern_message::binary::section(data, tree, path).map_err(|_| BuildError::UnknownCte)
}

/// The content of a BINARY item: the decoded part, or with a text
/// specifier the decoded text of a message (`TEXT`) or the header bytes as
/// they are (`HEADER`, `MIME`, `HEADER.FIELDS`: headers are never encoded).
fn binary_data(
    data: &[u8],
    tree: &mime::Part,
    path: &[u32],
    spec: Option<&Specifier>,
) -> Result<Option<Vec<u8>>, BuildError> {
    match spec {
        None => decode_part(data, tree, path),
        Some(Specifier::Text) => {
            tern_message::binary::text(data, tree, path).map_err(|_| BuildError::UnknownCte)
        }
        Some(spec) => Ok(section::extract(data, tree, path, spec)),
    }
}

/// The BINARY section a FETCH decoded last, by its label.
type LastDecoded<'i> = Option<(&'i str, std::rc::Rc<Option<Vec<u8>>>)>;

/// [`binary_data`] of the item labelled `label`, or what `last` kept of
/// it: BINARY and BINARY.SIZE of one part in one FETCH decode it once.
fn decoded_once<'i>(
    last: &mut LastDecoded<'i>,
    l: &Loaded,
    label: &'i str,
    path: &[u32],
    spec: Option<&Specifier>,
) -> Result<std::rc::Rc<Option<Vec<u8>>>, BuildError> {
    if let Some((kept, d)) = last {
        if *kept == label {
            return Ok(d.clone());
        }
    }
    let d = std::rc::Rc::new(binary_data(&l.data, &l.tree, path, spec)?);
    *last = Some((label, d.clone()));
    Ok(d)
}

/// A section's bytes as a literal: a part that does not exist is the empty
/// string (as Dovecot answers), and NUL is sent as 0x80 ([`nul_to_0x80`]).
fn section_literal(out: &mut Vec<u8>, data: Option<&[u8]>, partial: Option<(u32, u32)>) {
    let d = data.unwrap_or_default();
    let d = match partial {
        Some((s, l)) => section::partial(d, s, l),
        None => d,
    };
    wire::literal_header(out, d.len());
    let at = out.len();
    out.extend_from_slice(d);
    nul_to_0x80(&mut out[at..]);
}

/// A literal sent from the message's file rather than from memory: its
/// `{n}` is already in the output, its bytes go in at `at`.
#[derive(Debug)]
pub(crate) struct FileLiteral {
    /// Where in the job's output the bytes belong.
    pub at: usize,
    pub entry: MessageEntry,
    /// Bytes of the CRLF form skipped first (a partial's start).
    pub skip: u64,
    /// Bytes sent, as announced.
    pub len: u64,
    /// The file holds the message as sent: no CRLF conversion.
    pub as_stored: bool,
}

/// The literals of one FETCH job that are sent from files, and from what
/// size on a whole message is sent so.
#[derive(Debug)]
pub(crate) struct FileLiterals {
    pub list: Vec<FileLiteral>,
    pub at_least: u64,
}

/// Bytes of a message file read per piece when a literal is sent from it.
const STREAM_PIECE: usize = 256 * 1024;

/// NUL, which literals must not carry (RFC 3501 §4.3), becomes 0x80, as
/// Dovecot sends it.
fn nul_to_0x80(bytes: &mut [u8]) {
    for b in bytes {
        if *b == 0 {
            *b = 0x80;
        }
    }
}

/// Builds `* seq FETCH (...)` for one message: `entry` as it is now, at
/// `pos` in the view of `aligned`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    out: &mut Vec<u8>,
    open: &crate::folders::OpenFolder,
    aligned: &ViewSummaries,
    pos: usize,
    entry: &MessageEntry,
    seq: Seq,
    known: &Known,
    recent: bool,
    items: &[Item],
    files: &mut FileLiterals,
) -> Result<(), BuildError> {
    // Written straight into `out`; a message that cannot be answered
    // leaves nothing behind.
    let start = out.len();
    out.extend_from_slice(b"* ");
    wire::decimal(out, u64::from(seq.get()));
    out.extend_from_slice(b" FETCH (");
    let res = build_items(out, open, aligned, pos, entry, known, recent, items, files);
    match res {
        Ok(()) => out.extend_from_slice(b")\r\n"),
        Err(_) => {
            out.truncate(start);
            files.list.retain(|f| f.at < start);
        }
    }
    res
}

/// Announces the whole message (or the `partial` of it) as a literal sent
/// from its file when it is at least `files.at_least` bytes; false when it
/// is smaller and goes through memory.
fn file_literal(
    out: &mut Vec<u8>,
    folder: &Folder,
    entry: &MessageEntry,
    partial: Option<(u32, u32)>,
    files: &mut FileLiterals,
) -> Result<bool, MaildirError> {
    if folder.crlf_size(entry)? < files.at_least {
        return Ok(false);
    }
    // The announced length is what the file holds now, never the size its
    // name claims.
    let total = folder.counted_crlf_size(entry)?;
    let (skip, len) = match partial {
        Some((s, l)) => {
            let s = u64::from(s).min(total);
            (s, u64::from(l).min(total - s))
        }
        None => (0, total),
    };
    out.push(b'{');
    wire::decimal(out, len);
    out.extend_from_slice(b"}\r\n");
    files.list.push(FileLiteral {
        at: out.len(),
        entry: entry.clone(),
        skip,
        len,
        as_stored: tern_maildir::flags::stored_as_sent(&entry.base),
    });
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn build_items(
    out: &mut Vec<u8>,
    open: &crate::folders::OpenFolder,
    aligned: &ViewSummaries,
    pos: usize,
    entry: &MessageEntry,
    known: &Known,
    recent: bool,
    items: &[Item],
    files: &mut FileLiterals,
) -> Result<(), BuildError> {
    let folder = &open.folder;
    let summary = || aligned.get_ref(&open.summaries, folder, pos);
    let mut loaded: Option<Loaded> = None;
    // The last decoded BINARY section, by its label (which names the part
    // and the specifier): BINARY and BINARY.SIZE of one part in one FETCH
    // decode it once.
    let mut last_decoded: LastDecoded<'_> = None;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let ensure = |loaded: &mut Option<Loaded>| -> Result<(), MaildirError> {
            if loaded.is_none() {
                *loaded = Some(load(folder, entry)?);
            }
            Ok(())
        };
        match item {
            Item::Uid => {
                out.extend_from_slice(b"UID ");
                wire::decimal(out, u64::from(entry.uid));
            }
            Item::Flags => {
                let _ = write!(wire::Bytes(out), "FLAGS ({})", message_flags(known, recent));
            }
            Item::InternalDate => {
                let t = folder.internal_date(entry)?;
                let secs = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let _ = write!(wire::Bytes(out), "INTERNALDATE {}", wire::date_time(secs));
            }
            Item::Size => {
                let size = folder.crlf_size(entry)?;
                let _ = write!(wire::Bytes(out), "RFC822.SIZE {size}");
            }
            Item::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                out.extend_from_slice(summary()?.envelope());
            }
            Item::Body | Item::BodyStructure => {
                let s = summary()?;
                if matches!(item, Item::Body) {
                    out.extend_from_slice(b"BODY ");
                    out.extend_from_slice(s.body());
                } else {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    out.extend_from_slice(s.bodystructure());
                }
            }
            Item::Section {
                label,
                path,
                spec,
                partial,
                cached,
                ..
            } => {
                // The header fields message lists ask for come from the
                // summary cache, copied straight into the answer; anything
                // else from the message.
                if let (Some(set), None) = (cached, partial) {
                    let s = summary()?;
                    out.extend_from_slice(b"BODY[");
                    out.extend_from_slice(label.as_bytes());
                    out.extend_from_slice(b"] ");
                    wire::literal_header(out, s.header_fields_len(*set));
                    let at = out.len();
                    s.write_header_fields(*set, out);
                    nul_to_0x80(&mut out[at..]);
                    continue;
                }
                if cached.is_none() && path.is_empty() && matches!(spec, Specifier::Whole) {
                    let at = out.len();
                    let _ = write!(wire::Bytes(out), "BODY[{label}]");
                    if let Some((s, _)) = partial {
                        let _ = write!(wire::Bytes(out), "<{s}>");
                    }
                    out.push(b' ');
                    if file_literal(out, folder, entry, *partial, files)? {
                        continue;
                    }
                    out.truncate(at);
                }
                let data = match cached {
                    Some(set) => Some(summary()?.header_fields_in(*set)),
                    None => {
                        ensure(&mut loaded)?;
                        loaded
                            .as_ref()
                            .and_then(|l| section::extract(&l.data, &l.tree, path, spec))
                    }
                };
                let _ = write!(wire::Bytes(out), "BODY[{label}]");
                if let Some((s, _)) = partial {
                    let _ = write!(wire::Bytes(out), "<{s}>");
                }
                out.push(b' ');
                section_literal(out, data.as_deref(), *partial);
            }
            Item::Rfc822 | Item::Rfc822Header | Item::Rfc822Text => {
                if matches!(item, Item::Rfc822) {
                    out.extend_from_slice(b"RFC822 ");
                    if file_literal(out, folder, entry, None, files)? {
                        continue;
                    }
                    out.truncate(out.len() - b"RFC822 ".len());
                }
                ensure(&mut loaded)?;
                if let Some(l) = &loaded {
                    let (name, range) = match item {
                        Item::Rfc822 => ("RFC822 ", 0..l.data.len()),
                        Item::Rfc822Header => ("RFC822.HEADER ", l.tree.header.clone()),
                        _ => ("RFC822.TEXT ", l.tree.body.clone()),
                    };
                    out.extend_from_slice(name.as_bytes());
                    section_literal(out, Some(&l.data[range]), None);
                }
            }
            Item::Binary {
                label,
                path,
                spec,
                partial,
                ..
            } => {
                ensure(&mut loaded)?;
                if let Some(l) = &loaded {
                    let data = decoded_once(&mut last_decoded, l, label, path, spec.as_ref())?;
                    let _ = write!(wire::Bytes(out), "BINARY[{label}]");
                    if let Some((s, _)) = partial {
                        let _ = write!(wire::Bytes(out), "<{s}>");
                    }
                    out.push(b' ');
                    // A part that does not exist is the empty string, as
                    // for BODY[] and as Dovecot answers.
                    let d: &[u8] = data.as_deref().unwrap_or_default();
                    let d = match partial {
                        Some((s, len)) => section::partial(d, *s, *len),
                        None => d,
                    };
                    // RFC 3516 §4.3: a literal8 only where a string cannot
                    // carry the data (NUL).
                    if d.contains(&0) {
                        out.push(b'~');
                    }
                    wire::literal(out, d);
                }
            }
            Item::BinarySize { label, path, spec } => {
                ensure(&mut loaded)?;
                if let Some(l) = &loaded {
                    let data = decoded_once(&mut last_decoded, l, label, path, spec.as_ref())?;
                    let n = data.as_deref().map_or(0, <[u8]>::len);
                    let _ = write!(wire::Bytes(out), "BINARY.SIZE[{label}] {n}");
                }
            }
        }
    }
    Ok(())
}

/// What one FETCH job gives back to the session.
pub(super) struct JobOutput {
    /// The untagged responses, ready to send but for the literals sent
    /// from files.
    pub(super) out: Vec<u8>,
    /// Literals sent from message files, in output order.
    pub(super) files: Vec<FileLiteral>,
    /// Entries of the session's list whose flags the job changed (\Seen).
    pub(super) updated: Vec<(usize, Known)>,
    /// Messages that were gone when the job looked.
    pub(super) missing: usize,
    /// A part asked for in BINARY has an encoding tern cannot decode.
    pub(super) unknown_cte: bool,
}

/// Messages per blocking job when message bodies are read (so that a
/// `FETCH 1:* (BODY[])` holds at most this many messages in memory).
pub(super) const CHUNK: usize = 128;

/// Messages per blocking job when every item comes from the summary cache
/// or the session (a few hundred bytes each).
pub(super) const SUMMARY_CHUNK: usize = 1024;

/// Size assumed for a message whose file name carries none (`,W=`/`,S=`).
const UNKNOWN_SIZE: u64 = 64 * 1024;

/// Cuts `indices` into jobs of at most [`CHUNK`] messages and `budget`
/// bytes by the sizes the file names carry (a message larger than the
/// budget is a job of its own).
pub(super) fn chunks_by_size(
    indices: &[usize],
    known: &[Known],
    view: &tern_maildir::FolderView,
    budget: u64,
) -> Vec<Vec<usize>> {
    let mut chunks = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for &i in indices {
        let size = known
            .get(i)
            .and_then(|k| view.find(k.uid))
            .and_then(|e| {
                tern_maildir::flags::name_field(&e.base, 'W')
                    .or_else(|| tern_maildir::flags::name_field(&e.base, 'S'))
            })
            .unwrap_or(UNKNOWN_SIZE);
        if !cur.is_empty() && (cur.len() >= CHUNK || bytes.saturating_add(size) > budget) {
            chunks.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes = bytes.saturating_add(size);
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

/// Whether answering `item` takes the message's summary.
pub(super) fn uses_summary(item: &Item) -> bool {
    matches!(
        item,
        Item::Envelope
            | Item::Body
            | Item::BodyStructure
            | Item::Section {
                cached: Some(_),
                ..
            }
    )
}

/// Whether answering `item` may read the whole message.
pub(super) fn reads_message(item: &Item) -> bool {
    match item {
        Item::Section { cached, .. } => cached.is_none(),
        Item::Rfc822 | Item::Rfc822Header | Item::Rfc822Text => true,
        Item::Binary { .. } | Item::BinarySize { .. } => true,
        _ => false,
    }
}

impl Session {
    /// Takes one FETCH job's answer into the session: its output, the
    /// flags it changed, the messages it missed. Some(reply) ends the
    /// command early (a part tern cannot decode, a failed job).
    pub(super) async fn finish_fetch_job(
        &mut self,
        open: &Arc<crate::folders::OpenFolder>,
        job: crate::storage_gate::Blocking<JobOutput>,
        missing: &mut usize,
        any_flag_change: &mut bool,
    ) -> Result<Option<Reply>, End> {
        let JobOutput {
            out,
            files,
            updated,
            missing: miss,
            unknown_cte,
        } = match job.await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(cause = %e, "fetch task failed");
                return Ok(Some(Reply::no(
                    Some(Code::ServerBug),
                    "Internal error, see the server log",
                )));
            }
        };
        if unknown_cte {
            return Ok(Some(Reply::no(
                Some(Code::UnknownCte),
                "Cannot decode the content transfer encoding",
            )));
        }
        *missing += miss;
        if let State::Selected { mailbox, .. } = &mut self.state {
            for (i, k) in updated {
                *any_flag_change = true;
                if let Some(slot) = Arc::make_mut(&mut mailbox.known).get_mut(i) {
                    *slot = k;
                }
            }
        }
        if files.is_empty() {
            if self.conn.out.is_empty() {
                self.conn.out = out;
            } else {
                self.conn.out.extend_from_slice(&out);
            }
        } else {
            let mut from = 0;
            for f in files {
                self.conn
                    .out
                    .extend_from_slice(out.get(from..f.at).unwrap_or_default());
                from = f.at;
                self.send_file_literal(open, f).await?;
            }
            self.conn
                .out
                .extend_from_slice(out.get(from..).unwrap_or_default());
        }
        self.flush_if_large().await?;
        Ok(None)
    }

    /// Sends a literal from the message's file, a piece at a time: read,
    /// CRLF, NUL as 0x80, written before the next piece is read, so that
    /// the session holds one piece whatever the message's size. Never more
    /// than the announced bytes go out; a file removed or shrunk since it
    /// was counted (another program rewrote it in place, which Maildir
    /// forbids) ends the connection, logged, rather than fill the literal
    /// with bytes the client would keep as the message.
    async fn send_file_literal(
        &mut self,
        open: &Arc<crate::folders::OpenFolder>,
        f: FileLiteral,
    ) -> Result<(), End> {
        self.flush().await?;
        let o = open.clone();
        let entry = f.entry.clone();
        let mut file = match crate::creds::spawn_blocking(move || o.folder.open(&entry)).await {
            Ok(Ok(file)) => Some(file),
            Ok(Err(e)) => {
                tracing::error!(cause = %e, uid = f.entry.uid, "cannot open message to send");
                None
            }
            Err(e) => {
                tracing::error!(cause = %e, "blocking task failed");
                None
            }
        };
        let mut state = (crlf::ToCrlf::default(), f.skip);
        let mut sent = 0u64;
        let mut piece = Vec::new();
        while sent < f.len {
            let want = f.len - sent;
            if let Some(fh) = file.take() {
                let (mut conv, mut skip) = state;
                let mut buf = std::mem::take(&mut piece);
                let as_stored = f.as_stored;
                let job = crate::creds::spawn_blocking(move || {
                    let got = read_piece(&fh, as_stored, &mut conv, &mut skip, want, &mut buf);
                    (fh, conv, skip, buf, got)
                });
                match job.await {
                    Ok((fh, conv, skip, buf, Ok(true))) => {
                        file = Some(fh);
                        state = (conv, skip);
                        piece = buf;
                    }
                    Ok((_, _, _, buf, got)) => {
                        if let Err(e) = got {
                            tracing::error!(cause = %e, uid = f.entry.uid, "cannot read message");
                        }
                        piece = buf;
                    }
                    Err(e) => tracing::error!(cause = %e, "blocking task failed"),
                }
            }
            if file.is_none() && piece.is_empty() {
                // The literal is announced and cannot be taken back; bytes
                // made up to fill it would be cached by the client as the
                // message for good. Close instead, as Dovecot does: the
                // client reconnects and learns what became of the message.
                tracing::error!(
                    uid = f.entry.uid,
                    missing = want,
                    "message file gone or shorter than announced; closing the connection"
                );
                return Err(End::Closed);
            }
            sent += piece.len() as u64;
            std::mem::swap(&mut self.conn.out, &mut piece);
            self.flush().await?;
            std::mem::swap(&mut self.conn.out, &mut piece);
            piece.clear();
        }
        Ok(())
    }
}

/// Reads the next piece of a message for [`Session::send_file_literal`]
/// into `out` (emptied first): up to [`STREAM_PIECE`] bytes of the file in
/// CRLF form, after `skip` of them are dropped, at most `want`. False at
/// the end of the file.
fn read_piece(
    mut file: &std::fs::File,
    as_stored: bool,
    conv: &mut crlf::ToCrlf,
    skip: &mut u64,
    want: u64,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    use std::io::Read;
    out.clear();
    let mut raw = vec![0u8; STREAM_PIECE];
    loop {
        let n = match file.read(&mut raw) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if as_stored {
            out.extend_from_slice(&raw[..n]);
        } else {
            conv.push(&raw[..n], out);
        }
        let dropped = (*skip).min(out.len() as u64) as usize;
        out.drain(..dropped);
        *skip -= dropped as u64;
        out.truncate(want.min(out.len() as u64) as usize);
        nul_to_0x80(out);
        if !out.is_empty() {
            return Ok(true);
        }
    }
}
