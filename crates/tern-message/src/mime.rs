//! The MIME tree of a message (RFC 2045/2046), as byte ranges into the
//! CRLF form of the message.
//!
//! ```text
//!  Part(message)  header = message header, body = message body
//!   ├─ kind Multipart ─► children: Part(header = MIME header, body)
//!   ├─ kind Message   ─► Part(message) of the message/rfc822 body
//!   └─ kind Leaf
//! ```
//! Parsing never fails: a missing boundary, a missing blank line or a
//! nesting deeper than [`MAX_DEPTH`] yield a sensible structure (an empty
//! body, a single text part), never an error.

use std::ops::Range;

use crate::header::{self, ParamValue};

/// Deeper nesting is treated as an opaque leaf, so a hostile message cannot
/// exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// What a part contains.
#[derive(Debug, Clone)]
pub enum PartKind {
    /// A single body.
    Leaf,
    /// `multipart/*`: the parts between the boundaries.
    Multipart(Vec<Part>),
    /// `message/rfc822` (or `message/global`): the encapsulated message.
    Message(Box<Part>),
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct Part {
    /// The header block, including the empty line that ends it.
    pub header: Range<usize>,
    /// The body.
    pub body: Range<usize>,
    /// Content-Type (defaulted per RFC 2045 §5.2 and RFC 2046 §5.1.5).
    pub content_type: ParamValue,
    /// The children or the encapsulated message.
    pub kind: PartKind,
}

impl Part {
    /// Media type, lower-case (`text`).
    pub fn media_type(&self) -> String {
        self.content_type
            .value
            .split('/')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// Media subtype, lower-case (`plain`).
    pub fn media_subtype(&self) -> String {
        self.content_type
            .value
            .split_once('/')
            .map(|(_, s)| s.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Parses a message (CRLF line ends) into its MIME tree.
pub fn parse(msg: &[u8]) -> Part {
    parse_entity(msg, 0, &mut Vec::new(), false, 0).0
}

/// Where a part stopped: at the start of a boundary line (which boundary
/// of the stack, whether it closes, where the line ends), or at the end.
#[derive(Debug, Clone, Copy)]
struct Stop {
    at: usize,
    hit: Option<(usize, bool, usize)>,
    /// The boundary line came right after a header line: that line's end
    /// stays with the header instead of going to the boundary.
    in_header: bool,
}

/// The boundary a line starts with, as Dovecot matches them: `--` and the
/// boundary at the start of the line (whatever follows), the longest such
/// boundary of the stack, the innermost of equal ones. Returns its index
/// and whether `--` follows (a close delimiter).
fn boundary_of(line: &[u8], stack: &[Vec<u8>]) -> Option<(usize, bool)> {
    let rest = line.strip_prefix(b"--")?;
    let mut best: Option<usize> = None;
    for (i, b) in stack.iter().enumerate() {
        if rest.starts_with(b) && best.is_none_or(|j| stack[j].len() <= b.len()) {
            best = Some(i);
        }
    }
    best.map(|i| (i, rest[stack[i].len()..].starts_with(b"--")))
}

/// The first line at or after `from` that starts with a boundary of the
/// stack.
fn next_boundary(msg: &[u8], from: usize, stack: &[Vec<u8>]) -> Stop {
    let mut line_start = from;
    while line_start < msg.len() {
        let line_end = msg[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| line_start + p + 1)
            .unwrap_or(msg.len());
        if !stack.is_empty() {
            if let Some((i, close)) = boundary_of(&msg[line_start..line_end], stack) {
                return Stop {
                    at: line_start,
                    hit: Some((i, close, line_end)),
                    in_header: false,
                };
            }
        }
        line_start = line_end;
    }
    Stop {
        at: msg.len(),
        hit: None,
        in_header: false,
    }
}

/// The end of a part's content before where it stopped: the line end that
/// precedes a boundary line belongs to the boundary (RFC 2046 §5.1.1); at
/// the end of the message nothing is taken off.
fn trim_before(msg: &[u8], start: usize, stop: Stop) -> usize {
    if stop.hit.is_none() || stop.in_header {
        return stop.at;
    }
    trim_line_end(msg, start, stop.at)
}

/// `end` less the line end (CRLF or LF) just before it, not going below
/// `start`.
fn trim_line_end(msg: &[u8], start: usize, end: usize) -> usize {
    let mut e = end;
    if e > start && msg[e - 1] == b'\n' {
        e -= 1;
        if e > start && msg[e - 1] == b'\r' {
            e -= 1;
        }
    }
    e
}

/// The end of the header block starting at `start`: just after the empty
/// line, or at a boundary line, or at the end. An empty line right before a
/// boundary line is the line end that belongs to the boundary, not the end
/// of the header (as Dovecot reads it). The flag says the header ran into
/// a boundary line.
fn header_end(msg: &[u8], start: usize, stack: &[Vec<u8>]) -> (usize, bool, Option<usize>) {
    let line_at = |from: usize| {
        msg[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| from + p + 1)
            .unwrap_or(msg.len())
    };
    let is_boundary =
        |from: usize, to: usize| !stack.is_empty() && boundary_of(&msg[from..to], stack).is_some();
    let mut line_start = start;
    while line_start < msg.len() {
        let line_end = line_at(line_start);
        let line = &msg[line_start..line_end];
        if line == b"\r\n" || line == b"\n" {
            if line_end < msg.len() && is_boundary(line_end, line_at(line_end)) {
                return (line_start, false, Some(line_end));
            }
            return (line_end, false, None);
        }
        if is_boundary(line_start, line_end) {
            return (line_start, line_start > start, None);
        }
        line_start = line_end;
    }
    (msg.len(), false, None)
}

/// Parses the entity starting at `start` until a boundary of `stack` (or
/// the end): its tree, and where it stopped.
fn parse_entity(
    msg: &[u8],
    start: usize,
    stack: &mut Vec<Vec<u8>>,
    digest_child: bool,
    depth: usize,
) -> (Part, Stop) {
    let (mut hend, header_ran_into_boundary, blank_end) = header_end(msg, start, stack);
    // A header cut short by a boundary line ends before the line end that
    // belongs to that boundary (RFC 2046 §5.1.1), as Dovecot's [n.MIME] and
    // [n.HEADER] show it.
    let header_stop = if header_ran_into_boundary {
        trim_line_end(msg, start, hend)
    } else {
        hend
    };
    let mut header = start..header_stop;
    let fields = header::fields(&msg[header.clone()]);
    let content_type = match header::first(&fields, "Content-Type") {
        Some(v) => {
            let p = header::parse_params(&v);
            if p.value.contains('/') && !p.value.contains(char::is_whitespace) {
                p
            } else {
                default_type(digest_child)
            }
        }
        None => default_type(digest_child),
    };
    let mut part = Part {
        header,
        body: hend..hend,
        content_type,
        kind: PartKind::Leaf,
    };
    let (mtype, subtype) = (part.media_type(), part.media_subtype());
    let boundary = part
        .content_type
        .param("boundary")
        .filter(|b| !b.is_empty())
        .map(|b| b.as_bytes().to_vec());
    if depth < MAX_DEPTH && mtype == "multipart" {
        if let Some(b) = boundary {
            // The empty line before this part's own first delimiter does
            // end its header (the delimiter is its own, not the parent's).
            if let Some(end) = blank_end {
                let next = msg[end..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map(|p| end + p + 1)
                    .unwrap_or(msg.len());
                let mut with_own = stack.clone();
                with_own.push(b.clone());
                if boundary_of(&msg[end..next], &with_own).is_some_and(|(i, _)| i == stack.len()) {
                    hend = end;
                    header = start..hend;
                    part.header = header.clone();
                    part.body = hend..hend;
                }
            }
            stack.push(b);
            let own = stack.len() - 1;
            let mut children = Vec::new();
            let mut stop = next_boundary(msg, hend, stack);
            loop {
                match stop.hit {
                    Some((i, false, line_end)) if i == own => {
                        let (child, s) =
                            parse_entity(msg, line_end, stack, subtype == "digest", depth + 1);
                        children.push(child);
                        stop = s;
                    }
                    Some((i, true, line_end)) if i == own => {
                        // Closed: its boundary is done; the epilogue runs to
                        // the next boundary of an enclosing part.
                        stack.truncate(own);
                        stop = next_boundary(msg, line_end, stack);
                        break;
                    }
                    // An enclosing part's boundary (or the end) ends this one.
                    _ => {
                        stack.truncate(own);
                        break;
                    }
                }
            }
            part.body = hend..trim_before(msg, hend, stop).max(hend);
            if children.is_empty() {
                children.push(empty_part(part.body.end));
            }
            part.kind = PartKind::Multipart(children);
            return (part, stop);
        }
        let stop = next_boundary(msg, hend, stack);
        part.body = hend..trim_before(msg, hend, stop).max(hend);
        // No usable boundary: one empty text/plain part, as Dovecot does.
        part.kind = PartKind::Multipart(vec![empty_part(part.body.end)]);
        return (part, stop);
    }
    if depth < MAX_DEPTH && mtype == "message" && (subtype == "rfc822" || subtype == "global") {
        let (inner, stop) = parse_entity(msg, hend, stack, false, depth + 1);
        part.body = hend..trim_before(msg, hend, stop).max(hend);
        let mut inner = inner;
        // The encapsulated message ends where this part's body ends.
        inner.body.end = inner.body.end.min(part.body.end).max(inner.body.start);
        part.kind = PartKind::Message(Box::new(inner));
        return (part, stop);
    }
    let mut stop = next_boundary(msg, hend, stack);
    stop.in_header = header_ran_into_boundary && stop.at == hend;
    part.body = hend..trim_before(msg, hend, stop).max(hend);
    (part, stop)
}

fn empty_part(at: usize) -> Part {
    Part {
        header: at..at,
        body: at..at,
        content_type: default_type(false),
        kind: PartKind::Leaf,
    }
}

fn default_type(digest_child: bool) -> ParamValue {
    if digest_child {
        ParamValue {
            value: "message/rfc822".into(),
            params: Vec::new(),
        }
    } else {
        ParamValue {
            value: "text/plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        }
    }
}

/// The part named by a section path such as `[2, 1]`; the empty path is the
/// message itself. The walk is Dovecot's: a multipart part goes to its
/// child `n`; any other part allows only `1` and stays itself (so `1.1` of
/// a leaf in a multipart is that leaf), and only a message/rfc822 part
/// lets the path go on, into the message it holds.
pub fn find<'a>(root: &'a Part, path: &[u32]) -> Option<&'a Part> {
    let mut part = root;
    for (i, &n) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        match &part.kind {
            PartKind::Multipart(children) => part = children.get((n as usize).checked_sub(1)?)?,
            PartKind::Message(_) if n == 1 => {}
            PartKind::Leaf if n == 1 && !more => {}
            _ => return None,
        }
        if more {
            if let PartKind::Message(inner) = &part.kind {
                part = inner;
            }
        }
    }
    Some(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MP: &[u8] = b"Content-Type: multipart/mixed; boundary=xx\r\n\r\npreamble\r\n--xx\r\n\r\none\r\n--xx\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner body\r\n--xx--\r\nepilogue\r\n";

    #[test]
    fn multipart_ranges() {
        let p = parse(MP);
        let PartKind::Multipart(ch) = &p.kind else {
            panic!()
        };
        assert_eq!(ch.len(), 2);
        assert_eq!(&MP[ch[0].body.clone()], b"one");
        assert_eq!(&MP[ch[1].body.clone()], b"Subject: in\r\n\r\ninner body");
        let PartKind::Message(inner) = &ch[1].kind else {
            panic!()
        };
        assert_eq!(&MP[inner.body.clone()], b"inner body");
        let p21 = find(&p, &[2, 1]).unwrap();
        assert_eq!(&MP[p21.body.clone()], b"inner body");
    }

    #[test]
    fn no_blank_line_and_no_boundary() {
        let m = b"Subject: x\r\n";
        let p = parse(m);
        assert_eq!(p.body, m.len()..m.len());
        let m = b"Content-Type: multipart/mixed\r\n\r\nbody\r\n";
        let p = parse(m);
        let PartKind::Multipart(ch) = &p.kind else {
            panic!()
        };
        assert_eq!(ch.len(), 1);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut m = Vec::new();
        for _ in 0..200 {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        m.extend_from_slice(b"body");
        let _ = parse(&m);
    }
}
