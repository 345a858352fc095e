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
/// it (7-bit text without CR, LF or NUL), a literal otherwise, so any bytes
/// a message holds are reproduced exactly; as Dovecot, also a literal when
/// more than four characters would need escaping. The one implementation
/// of this rule; `tern_imap_proto::wire::string` uses it.
pub fn quoted_or_literal(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s
        .iter()
        .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80)
        && s.iter().filter(|&&b| b == b'"' || b == b'\\').count() <= 4;
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

/// Writes text meant for people (a subject, a display name) as Dovecot
/// does: tabs and runs of spaces become one space, line ends and leading
/// and trailing blanks go, NUL becomes 0x80; unchanged plain text is
/// quoted, anything else a literal.
pub fn string_for_humans(out: &mut Vec<u8>, s: &[u8]) {
    let mut clean = Vec::with_capacity(s.len());
    let mut modify = false;
    let mut pending_space = false;
    for &b in s {
        match b {
            b' ' | b'\t' => {
                if b == b'\t' || pending_space || clean.is_empty() {
                    modify = true;
                }
                pending_space = true;
            }
            b'\r' | b'\n' => modify = true,
            _ => {
                if pending_space && !clean.is_empty() {
                    clean.push(b' ');
                }
                pending_space = false;
                match b {
                    0 => {
                        modify = true;
                        clean.push(0x80);
                    }
                    b'"' | b'\\' => {
                        modify = true;
                        clean.push(b);
                    }
                    b if b >= 0x80 => {
                        modify = true;
                        clean.push(b);
                    }
                    b => clean.push(b),
                }
            }
        }
    }
    if pending_space {
        modify = true;
    }
    if !modify {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else if clean.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", clean.len()).as_bytes());
        out.extend_from_slice(&clean);
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
                route,
                mailbox,
                host,
            } => {
                // A NIL host would read as a group (RFC 3501 §7.4.2): what is
                // missing is named, as Dovecot names it.
                out.push(b'(');
                match name.as_deref() {
                    Some(n) => string_for_humans(out, n.as_bytes()),
                    None => out.extend_from_slice(b"NIL"),
                }
                out.push(b' ');
                nstring(out, route.as_deref().map(str::as_bytes));
                out.push(b' ');
                let mailbox = mailbox.as_deref().unwrap_or("MISSING_MAILBOX");
                nstring(out, Some(mailbox.as_bytes()));
                out.push(b' ');
                let host = host.as_deref().unwrap_or("MISSING_DOMAIN");
                nstring(out, Some(host.as_bytes()));
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
    // Address fields given more than once are one list (as Dovecot reads them).
    let get_nonempty = |n: &str| {
        let all: Vec<Vec<u8>> = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(n.as_bytes()))
            .map(|f| header::unfold(f.value))
            .filter(|v| v.iter().any(|b| !b.is_ascii_whitespace()))
            .collect();
        (!all.is_empty()).then(|| all.join(&b","[..]))
    };
    out.push(b'(');
    nstring(out, get("Date").as_deref());
    out.push(b' ');
    // The value as Dovecot sees it: blanks after the colon skipped, line
    // folding kept (and then made one space).
    match header::first_raw(&fields, "Subject") {
        Some(v) => {
            let start = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            string_for_humans(out, &v[start..])
        }
        None => out.extend_from_slice(b"NIL"),
    }
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
