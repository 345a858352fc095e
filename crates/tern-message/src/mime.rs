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
    parse_entity(msg, 0..msg.len(), false, 0)
}

/// Finds the end of the header block inside `range`: the offset just after
/// the empty line, or the end of the range when there is none.
fn header_end(msg: &[u8], range: &Range<usize>) -> usize {
    let data = &msg[range.clone()];
    if data.starts_with(b"\r\n") {
        return range.start + 2;
    }
    if data.starts_with(b"\n") {
        return range.start + 1;
    }
    let mut i = 0;
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let rest = &data[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return range.start + nl + 3;
        }
        if rest.starts_with(b"\n") {
            return range.start + nl + 2;
        }
        i = nl + 1;
    }
    range.end
}

fn parse_entity(msg: &[u8], range: Range<usize>, digest_child: bool, depth: usize) -> Part {
    let hend = header_end(msg, &range);
    let header = range.start..hend;
    let body = hend..range.end;
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
        body: body.clone(),
        content_type,
        kind: PartKind::Leaf,
    };
    if depth >= MAX_DEPTH {
        return part;
    }
    let (mtype, subtype) = (part.media_type(), part.media_subtype());
    if mtype == "multipart" {
        let boundary = part
            .content_type
            .param("boundary")
            .map(|b| b.as_bytes().to_vec());
        let children = match boundary {
            Some(b) if !b.is_empty() => split_multipart(msg, &body, &b)
                .into_iter()
                .map(|r| parse_entity(msg, r, subtype == "digest", depth + 1))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        if children.is_empty() {
            // No usable boundary: one empty text/plain part, as Dovecot does.
            let empty = body.end..body.end;
            part.kind = PartKind::Multipart(vec![Part {
                header: empty.clone(),
                body: empty,
                content_type: default_type(false),
                kind: PartKind::Leaf,
            }]);
        } else {
            part.kind = PartKind::Multipart(children);
        }
    } else if mtype == "message" && (subtype == "rfc822" || subtype == "global") {
        let inner = parse_entity(msg, body, false, depth + 1);
        part.kind = PartKind::Message(Box::new(inner));
    }
    part
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

/// The byte ranges of the body parts between boundary lines. The CRLF that
/// precedes a boundary line belongs to the boundary (RFC 2046 §5.1.1).
fn split_multipart(msg: &[u8], body: &Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut current_start: Option<usize> = None;
    let mut line_start = body.start;
    while line_start < body.end {
        let line_end = msg[line_start..body.end]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| line_start + p + 1)
            .unwrap_or(body.end);
        let line = &msg[line_start..line_end];
        if line.starts_with(&delim) {
            let after = &line[delim.len()..];
            let is_close = after.starts_with(b"--");
            let rest_ok = after
                .iter()
                .skip(if is_close { 2 } else { 0 })
                .all(|b| b.is_ascii_whitespace());
            if rest_ok {
                if let Some(s) = current_start.take() {
                    // Drop the CRLF before the boundary line.
                    let mut e = line_start;
                    if e > s && msg[e - 1] == b'\n' {
                        e -= 1;
                        if e > s && msg[e - 1] == b'\r' {
                            e -= 1;
                        }
                    }
                    parts.push(s..e.max(s));
                }
                if is_close {
                    return parts;
                }
                current_start = Some(line_end);
            }
        }
        line_start = line_end;
    }
    // No closing boundary: the last part runs to the end.
    if let Some(s) = current_start {
        parts.push(s..body.end);
    }
    parts
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
