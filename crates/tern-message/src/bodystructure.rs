//! BODY and BODYSTRUCTURE (RFC 3501 §7.4.2, with RFC 3501 extension data:
//! MD5, disposition, language, location).

use crate::envelope::{self, quoted_or_literal};
use crate::header::{self, merge_rfc2231, parse_params, ParamValue};
use crate::mime::{Part, PartKind};

/// Whether extension data is included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extensions {
    /// BODYSTRUCTURE.
    Yes,
    /// BODY.
    No,
}

fn nstring(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => quoted_or_literal(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn params(out: &mut Vec<u8>, p: &[(String, String)]) {
    if p.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in p.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        quoted_or_literal(out, k.as_bytes());
        out.push(b' ');
        quoted_or_literal(out, v.as_bytes());
    }
    out.push(b')');
}

fn lines(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

fn split_type(ct: &ParamValue) -> (String, String) {
    let (t, s) = ct.value.split_once('/').unwrap_or((&ct.value, ""));
    (t.trim().to_owned(), s.trim().to_owned())
}

fn extension_tail(out: &mut Vec<u8>, fields: &[header::Field<'_>]) {
    out.push(b' ');
    match header::first(fields, "Content-Disposition").map(|v| parse_params(&v)) {
        Some(d) if !d.value.is_empty() => {
            out.push(b'(');
            quoted_or_literal(out, d.value.as_bytes());
            out.push(b' ');
            params(out, &merge_rfc2231(&d.params));
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match header::first(fields, "Content-Language") {
        Some(v) => {
            let langs: Vec<String> = String::from_utf8_lossy(&v)
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            match langs.as_slice() {
                [] => out.extend_from_slice(b"NIL"),
                [one] => quoted_or_literal(out, one.as_bytes()),
                many => {
                    out.push(b'(');
                    for (i, l) in many.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        quoted_or_literal(out, l.as_bytes());
                    }
                    out.push(b')');
                }
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, header::first(fields, "Content-Location").as_deref());
}

/// Writes BODY or BODYSTRUCTURE of `part` (normally the message root).
pub fn write(out: &mut Vec<u8>, msg: &[u8], part: &Part, ext: Extensions) {
    let fields = header::fields(&msg[part.header.clone()]);
    let (mtype, subtype) = split_type(&part.content_type);
    match &part.kind {
        PartKind::Multipart(children) => {
            out.push(b'(');
            for c in children {
                write(out, msg, c, ext);
            }
            out.push(b' ');
            quoted_or_literal(out, subtype.as_bytes());
            if ext == Extensions::Yes {
                out.push(b' ');
                params(out, &merge_rfc2231(&part.content_type.params));
                extension_tail(out, &fields);
            }
            out.push(b')');
        }
        kind => {
            let body = &msg[part.body.clone()];
            out.push(b'(');
            if let PartKind::Message(_) = kind {
                // Dovecot writes this type in lower case whatever the header says.
                out.extend_from_slice(b"\"message\" \"rfc822\"");
            } else {
                quoted_or_literal(out, mtype.as_bytes());
                out.push(b' ');
                quoted_or_literal(out, subtype.as_bytes());
            }
            out.push(b' ');
            let mut p = merge_rfc2231(&part.content_type.params);
            // A text part without a charset is US-ASCII (RFC 2045 §5.2), and
            // says so, as Dovecot does.
            if mtype.eq_ignore_ascii_case("text")
                && !p.iter().any(|(k, _)| k.eq_ignore_ascii_case("charset"))
            {
                p.push(("charset".to_owned(), "us-ascii".to_owned()));
            }
            params(out, &p);
            out.push(b' ');
            nstring(out, header::first(&fields, "Content-ID").as_deref());
            out.push(b' ');
            nstring(
                out,
                header::first(&fields, "Content-Description").as_deref(),
            );
            out.push(b' ');
            let enc = header::first(&fields, "Content-Transfer-Encoding")
                .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "7bit".to_owned());
            quoted_or_literal(out, enc.as_bytes());
            out.extend_from_slice(format!(" {}", body.len()).as_bytes());
            if let PartKind::Message(inner) = kind {
                out.push(b' ');
                envelope::write(out, &msg[inner.header.clone()]);
                out.push(b' ');
                write(out, msg, inner, ext);
                out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
            } else if mtype.eq_ignore_ascii_case("text") {
                out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
            }
            if ext == Extensions::Yes {
                out.push(b' ');
                nstring(out, header::first(&fields, "Content-MD5").as_deref());
                extension_tail(out, &fields);
            }
            out.push(b')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::parse;

    #[test]
    fn simple_text() {
        let m = b"Subject: x\r\n\r\nhello\r\n";
        let mut out = Vec::new();
        write(&mut out, m, &parse(m), Extensions::No);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1)"
        );
    }

    #[test]
    fn multipart_with_extensions() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n";
        let mut out = Vec::new();
        write(&mut out, m, &parse(m), Extensions::Yes);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 2 0 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 4 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"
        );
    }
}
