//! Body sections (RFC 3501 §6.4.5): the bytes BODY[...] returns.

use crate::header;
use crate::mime::{self, Part, PartKind};

/// What follows the part number in a section specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Specifier {
    /// `BODY[1.2]` or `BODY[]`.
    Whole,
    /// `HEADER`.
    Header,
    /// `HEADER.FIELDS (a b)`.
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (a b)`.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`.
    Text,
    /// `MIME`.
    Mime,
}

/// Extracts a section. `None` when the part does not exist; the server
/// returns an empty string then, as Dovecot does.
pub fn extract(msg: &[u8], root: &Part, path: &[u32], spec: &Specifier) -> Option<Vec<u8>> {
    let part = mime::find(root, path)?;
    // HEADER and TEXT of a part address the message it encapsulates.
    let message_node = |p: &'_ Part| -> Option<Part> {
        if path.is_empty() {
            return Some(root.clone());
        }
        match &p.kind {
            PartKind::Message(inner) => Some((**inner).clone()),
            _ => None,
        }
    };
    Some(match spec {
        Specifier::Whole => {
            if path.is_empty() {
                msg.to_vec()
            } else {
                msg[part.body.clone()].to_vec()
            }
        }
        Specifier::Mime => {
            if path.is_empty() {
                return None;
            }
            msg[part.header.clone()].to_vec()
        }
        Specifier::Header => {
            let m = message_node(part)?;
            msg[m.header.clone()].to_vec()
        }
        Specifier::Text => {
            let m = message_node(part)?;
            msg[m.body.clone()].to_vec()
        }
        Specifier::HeaderFields(names) | Specifier::HeaderFieldsNot(names) => {
            let m = message_node(part)?;
            let want = matches!(spec, Specifier::HeaderFields(_));
            let mut out = Vec::new();
            for f in header::fields(&msg[m.header.clone()]) {
                let hit = names
                    .iter()
                    .any(|n| n.as_bytes().eq_ignore_ascii_case(f.name));
                if hit == want {
                    out.extend_from_slice(f.raw);
                    if !f.raw.ends_with(b"\n") {
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
            out
        }
    })
}

/// Applies a partial `<start.len>`: the octets from `start`, at most `len`.
pub fn partial(data: &[u8], start: u32, len: u32) -> &[u8] {
    let s = (start as usize).min(data.len());
    let e = s.saturating_add(len as usize).min(data.len());
    &data[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"From: a@b\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX: y\r\n\r\ninner text\r\n--b--\r\n";

    #[test]
    fn sections() {
        let root = mime::parse(M);
        let get = |p: &[u32], s: Specifier| {
            extract(M, &root, p, &s).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(get(&[1], Specifier::Whole).unwrap(), "part one");
        assert_eq!(
            get(&[1], Specifier::Mime).unwrap(),
            "Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            get(&[2], Specifier::Header).unwrap(),
            "Subject: inner\r\nX: y\r\n\r\n"
        );
        assert_eq!(get(&[2], Specifier::Text).unwrap(), "inner text");
        assert_eq!(get(&[2, 1], Specifier::Whole).unwrap(), "inner text");
        assert_eq!(
            get(&[], Specifier::HeaderFields(vec!["subject".into()])).unwrap(),
            "Subject: hi\r\n\r\n"
        );
        assert_eq!(
            get(&[2], Specifier::HeaderFieldsNot(vec!["subject".into()])).unwrap(),
            "X: y\r\n\r\n"
        );
        assert!(get(&[3], Specifier::Whole).is_none());
        assert!(get(&[1], Specifier::Header).is_none());
        assert_eq!(partial(b"abcdef", 2, 3), b"cde");
        assert_eq!(partial(b"abc", 5, 3), b"");
    }

    #[test]
    fn single_part_body_is_part_one() {
        let m = b"Subject: x\r\n\r\nbody\r\n";
        let root = mime::parse(m);
        assert_eq!(
            extract(m, &root, &[1], &Specifier::Whole).unwrap(),
            b"body\r\n"
        );
    }
}
