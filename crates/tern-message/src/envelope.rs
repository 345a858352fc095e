//! ENVELOPE (RFC 3501 §7.4.2).

use crate::address::{parse_list, AddressItem};
use crate::header::{self, Field};

fn nstring(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => quoted_or_literal(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Writes an IMAP `string` (RFC 3501 §4.3): quoted when `quoted` can hold
/// it (at most 1024 octets of 7-bit text without CR, LF or NUL), a literal
/// otherwise, so any bytes a message holds are reproduced exactly. The one
/// implementation of this rule; `tern_imap_proto::wire::string` uses it.
pub fn quoted_or_literal(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80);
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

fn addresses(out: &mut Vec<u8>, value: Option<Vec<u8>>) {
    let Some(v) = value else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let items = parse_list(&String::from_utf8_lossy(&v));
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for item in items {
        match item {
            AddressItem::Mailbox {
                name,
                mailbox,
                host,
            } => {
                out.push(b'(');
                nstring(out, name.as_deref().map(str::as_bytes));
                out.extend_from_slice(b" NIL ");
                nstring(out, mailbox.as_deref().map(str::as_bytes));
                out.push(b' ');
                nstring(out, host.as_deref().map(str::as_bytes));
                out.push(b')');
            }
            AddressItem::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                nstring(out, Some(name.as_bytes()));
                out.extend_from_slice(b" NIL)");
            }
            AddressItem::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// Writes the ENVELOPE of the message whose header block is `header_block`.
pub fn write(out: &mut Vec<u8>, header_block: &[u8]) {
    let fields: Vec<Field<'_>> = header::fields(header_block);
    let get = |n: &str| header::first(&fields, n);
    let get_nonempty = |n: &str| get(n).filter(|v| !v.is_empty());
    out.push(b'(');
    nstring(out, get("Date").as_deref());
    out.push(b' ');
    nstring(out, get("Subject").as_deref());
    let from = get_nonempty("From");
    out.push(b' ');
    addresses(out, from.clone());
    out.push(b' ');
    addresses(out, get_nonempty("Sender").or_else(|| from.clone()));
    out.push(b' ');
    addresses(out, get_nonempty("Reply-To").or_else(|| from.clone()));
    for h in ["To", "Cc", "Bcc"] {
        out.push(b' ');
        addresses(out, get_nonempty(h));
    }
    out.push(b' ');
    nstring(out, get("In-Reply-To").as_deref());
    out.push(b' ');
    nstring(out, get("Message-ID").as_deref());
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_like_envelope() {
        let h = b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev1 WG mtg summary\r\nTo: imap@cac.washington.edu\r\nMessage-Id: <B27397-0100000@cac.washington.edu>\r\n\r\n";
        let mut out = Vec::new();
        write(&mut out, h);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((NIL NIL \"imap\" \"cac.washington.edu\")) NIL NIL NIL \"<B27397-0100000@cac.washington.edu>\")"
        );
    }

    #[test]
    fn empty_header() {
        let mut out = Vec::new();
        write(&mut out, b"");
        assert_eq!(out, b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }
}
