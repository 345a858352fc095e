//! RFC 3516 BINARY: a section's content with its Content-Transfer-Encoding
//! removed.
//!
//! A leaf part is decoded (base64, quoted-printable; 7bit, 8bit and binary
//! pass through). A multipart or message/rfc822 part is answered as Dovecot
//! answers it: the structure stays, every base64 or quoted-printable part
//! inside it is decoded and its header says `Content-Transfer-Encoding:
//! binary`, so that what the client gets is still a well-formed MIME entity.
//!
//! Decoding is lenient where RFC 2045 asks it to be: characters outside the
//! base64 alphabet are ignored (§6.8), and a quoted-printable `=` that starts
//! no escape is kept as it is (§6.7, note 1). Dovecot refuses such parts (it
//! answers NIL); docs/compatibility.md lists the difference.

use crate::header;
use crate::mime::{Part, PartKind};

/// Why a section cannot be given decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// A transfer encoding tern does not know (RFC 3516 §4.3: the server
    /// answers `NO [UNKNOWN-CTE]`).
    #[error("unknown content transfer encoding")]
    UnknownCte,
}

/// A part's Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary or none: the bytes are the content.
    Identity,
    /// quoted-printable (RFC 2045 §6.7).
    QuotedPrintable,
    /// base64 (RFC 2045 §6.8).
    Base64,
    /// Anything else (x-uuencode, garbage).
    Unknown,
}

impl Encoding {
    fn converted(self) -> bool {
        matches!(self, Encoding::QuotedPrintable | Encoding::Base64)
    }
}

/// The encoding a header block declares. As Dovecot: the last
/// Content-Transfer-Encoding field counts, and its value is the token after
/// any white space and comments (`base64 (sent by X)` is base64).
pub fn encoding_of(header_block: &[u8]) -> Encoding {
    let fields = header::fields(header_block);
    let Some(field) = fields
        .iter()
        .rev()
        .find(|f| f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding"))
    else {
        return Encoding::Identity;
    };
    let value = header::unfold(field.value);
    let token = first_token(&value);
    if token.is_empty() {
        // An empty field declares nothing: the RFC 2045 §6.1 default.
        return Encoding::Identity;
    }
    match token.to_ascii_lowercase().as_slice() {
        b"7bit" | b"8bit" | b"binary" => Encoding::Identity,
        b"base64" => Encoding::Base64,
        b"quoted-printable" => Encoding::QuotedPrintable,
        _ => Encoding::Unknown,
    }
}

/// The first MIME token of a value, after white space and comments.
fn first_token(value: &[u8]) -> &[u8] {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let start = i.min(value.len());
    let len = value[start..]
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(value.len() - start);
    &value[start..start + len]
}

/// RFC 2045 token characters.
fn is_token_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// `BINARY[path]` of a message (`data` with CRLF line ends, `root` its
/// structure): the decoded content, or None when the part does not exist.
/// The empty path is the whole message, its own header included.
pub fn section(data: &[u8], root: &Part, path: &[u32]) -> Result<Option<Vec<u8>>, BinaryError> {
    let Some(part) = crate::mime::find(root, path) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(part.body.end.saturating_sub(part.header.start));
    add_part(data, part, path.is_empty(), &mut out, 0)?;
    Ok(Some(out))
}

/// `BINARY[path.TEXT]` (`BINARY[TEXT]` for the empty path): the body of the
/// message at `path` (the message itself, or a message/rfc822 part) with
/// its parts decoded; None when there is no such message.
pub fn text(data: &[u8], root: &Part, path: &[u32]) -> Result<Option<Vec<u8>>, BinaryError> {
    let Some(part) = crate::mime::find(root, path) else {
        return Ok(None);
    };
    let message = match (&part.kind, path.is_empty()) {
        (_, true) => part,
        (PartKind::Message(inner), false) => inner,
        _ => return Ok(None),
    };
    let mut out = Vec::with_capacity(message.body.len());
    add_part(data, message, false, &mut out, 0)?;
    Ok(Some(out))
}

/// Parts nested deeper than this are copied as they are: the MIME parser
/// already bounds depth, this only keeps the recursion obviously finite.
const MAX_DEPTH: usize = 256;

fn add_part(
    data: &[u8],
    part: &Part,
    with_header: bool,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), BinaryError> {
    let header_block = slice(data, part.header.clone());
    let encoding = encoding_of(header_block);
    if encoding == Encoding::Unknown {
        return Err(BinaryError::UnknownCte);
    }
    if with_header {
        if encoding.converted() {
            relabel_header(header_block, out);
        } else {
            out.extend_from_slice(header_block);
        }
        // A header cut short by a boundary stops before the line end that
        // belongs to the boundary; the part's bytes still hold it.
        out.extend_from_slice(slice(data, part.header.end..part.body.start));
    }
    if depth >= MAX_DEPTH {
        out.extend_from_slice(slice(data, part.body.clone()));
        return Ok(());
    }
    match &part.kind {
        PartKind::Multipart(children) => {
            let mut at = part.body.start;
            for child in children {
                out.extend_from_slice(slice(data, at..child.header.start));
                add_part(data, child, true, out, depth + 1)?;
                at = child.body.end.max(at);
            }
            out.extend_from_slice(slice(data, at..part.body.end));
        }
        PartKind::Message(inner) => {
            out.extend_from_slice(slice(data, part.body.start..inner.header.start));
            add_part(data, inner, true, out, depth + 1)?;
            out.extend_from_slice(slice(data, inner.body.end..part.body.end));
        }
        PartKind::Leaf => {
            let body = slice(data, part.body.clone());
            match encoding {
                Encoding::Base64 => decode_base64(body, out),
                Encoding::QuotedPrintable => decode_quoted_printable(body, out),
                _ => out.extend_from_slice(body),
            }
        }
    }
    Ok(())
}

/// `data[range]`, empty where the range does not fit (never panics).
fn slice(data: &[u8], range: std::ops::Range<usize>) -> &[u8] {
    data.get(range).unwrap_or_default()
}

/// Copies a header block without its Content-Transfer-Encoding fields and
/// with `Content-Transfer-Encoding: binary` as its last field.
fn relabel_header(block: &[u8], out: &mut Vec<u8>) {
    let fields = header::fields(block);
    let mut copied = 0;
    for f in &fields {
        if !f.name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
            out.extend_from_slice(f.raw);
        }
        copied += f.raw.len();
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
    // What follows the fields: the empty line that ends the header.
    out.extend_from_slice(block.get(copied..).unwrap_or_default());
}

/// Base64 (RFC 2045 §6.8): characters outside the alphabet are ignored, `=`
/// ends a group; a group cut short at the end gives the bytes it holds.
pub fn decode_base64(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    let flush = |acc: u32, n: u32, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => {
            out.push((acc >> 10) as u8);
            out.push((acc >> 2) as u8);
        }
        _ => {}
    };
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                flush(acc, n, out);
                acc = 0;
                n = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush(acc, n, out);
}

/// Quoted-printable (RFC 2045 §6.7): `=XY` escapes (either case), soft line
/// breaks (`=` then white space to the line end), trailing white space
/// dropped, line ends as CRLF. An `=` that starts no escape stays.
pub fn decode_quoted_printable(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut rest = body;
    while !rest.is_empty() {
        let (line, ended) = match memchr::memchr(b'\n', rest) {
            Some(p) => {
                let l = &rest[..p];
                rest = &rest[p + 1..];
                (l.strip_suffix(b"\r").unwrap_or(l), true)
            }
            None => {
                let l = rest;
                rest = &[];
                (l, false)
            }
        };
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let mut line = &line[..end];
        let soft = line.last() == Some(&b'=');
        if soft {
            line = &line[..line.len() - 1];
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if b == b'=' {
                if let (Some(h), Some(l)) = (
                    line.get(i + 1).and_then(|c| hex(*c)),
                    line.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        if ended && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decode_quoted_printable(s, &mut out);
        out
    }

    fn b64(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decode_base64(s, &mut out);
        out
    }

    #[test]
    fn quoted_printable_follows_rfc_2045() {
        assert_eq!(qp(b"a=3Db=\r\nc =ZZ"), b"a=bc =ZZ");
        // Trailing white space goes, also before a soft break.
        assert_eq!(qp(b"one  \r\ntwo= \t\r\nthree\t"), b"one\r\ntwothree");
        // Lower-case hex is accepted, bare LF becomes CRLF.
        assert_eq!(qp(b"caf=c3=a9\nx"), "café\r\nx".as_bytes());
        assert_eq!(qp(b"end="), b"end");
    }

    #[test]
    fn base64_ignores_what_is_not_in_the_alphabet() {
        assert_eq!(b64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(b64(b"aGVs*bG8"), b"hello");
        assert_eq!(b64(b"aGk=aGk="), b"hihi");
        assert_eq!(b64(b"QQ"), b"A");
        assert_eq!(b64(b"Q"), b"");
    }

    #[test]
    fn encoding_is_the_last_fields_first_token() {
        assert_eq!(
            encoding_of(b"Content-Transfer-Encoding: (x) Base64 ; y\r\n\r\n"),
            Encoding::Base64
        );
        assert_eq!(
            encoding_of(
                b"Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            ),
            Encoding::Identity
        );
        assert_eq!(
            encoding_of(b"Content-Transfer-Encoding: x-uuencode\r\n\r\n"),
            Encoding::Unknown
        );
        assert_eq!(encoding_of(b"Subject: x\r\n\r\n"), Encoding::Identity);
    }

    #[test]
    fn a_multipart_keeps_its_structure_with_decoded_parts() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\nX: y\r\n\r\naGVsbG8=\r\n--b\r\n\r\nplain\r\n--b--\r\n";
        let root = crate::mime::parse(msg);
        let whole = section(msg, &root, &[]).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&whole),
            "Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\nX: y\r\nContent-Transfer-Encoding: binary\r\n\r\nhello\r\n--b\r\n\r\nplain\r\n--b--\r\n"
        );
        assert_eq!(section(msg, &root, &[1]).unwrap().unwrap(), b"hello");
        assert_eq!(section(msg, &root, &[2]).unwrap().unwrap(), b"plain");
        assert_eq!(section(msg, &root, &[3]).unwrap(), None);
    }

    #[test]
    fn an_unknown_encoding_is_refused() {
        let msg = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
        let root = crate::mime::parse(msg);
        assert_eq!(section(msg, &root, &[1]), Err(BinaryError::UnknownCte));
    }
}
