//! Raw header fields: splitting a header block into fields, unfolding, and
//! parsing `Content-*` values with their parameters.

/// One header field as it stands in the message.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The field name, as written.
    pub name: &'a [u8],
    /// The raw value after the colon (with folding, without the final CRLF).
    pub value: &'a [u8],
    /// The whole field including its final CRLF.
    pub raw: &'a [u8],
}

/// Splits a header block (which may end with the empty line) into fields.
pub fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let start = i;
        // Find the end of this field: a line end not followed by WSP.
        let mut end = i;
        loop {
            match block[end..].iter().position(|&b| b == b'\n') {
                Some(p) => {
                    end += p + 1;
                    if end < block.len() && (block[end] == b' ' || block[end] == b'\t') {
                        continue;
                    }
                }
                None => end = block.len(),
            }
            break;
        }
        let raw = &block[start..end];
        i = end;
        if raw == b"\r\n" || raw == b"\n" {
            break;
        }
        // A line that is no field (no colon, or no name) is kept with an
        // empty name: no name matches it, and HEADER.FIELDS.NOT returns it,
        // as Dovecot does.
        let Some(colon) = raw.iter().position(|&b| b == b':') else {
            out.push(Field {
                name: b"",
                value: b"",
                raw,
            });
            continue;
        };
        let name = trim_end(&raw[..colon]);
        if name.is_empty() {
            out.push(Field {
                name: b"",
                value: b"",
                raw,
            });
            continue;
        }
        let mut value = &raw[colon + 1..];
        value = value.strip_suffix(b"\n").unwrap_or(value);
        value = value.strip_suffix(b"\r").unwrap_or(value);
        out.push(Field { name, value, raw });
    }
    out
}

fn trim_end(s: &[u8]) -> &[u8] {
    let mut e = s.len();
    while e > 0 && (s[e - 1] == b' ' || s[e - 1] == b'\t') {
        e -= 1;
    }
    &s[..e]
}

/// Removes folding (CRLF before WSP) and surrounding white space.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    let s = out
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(out.len());
    let e = out
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|p| p + 1)
        .unwrap_or(s);
    out[s..e.max(s)].to_vec()
}

/// The first field with this name (case-insensitive), unfolded.
pub fn first(fields: &[Field<'_>], name: &str) -> Option<Vec<u8>> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| unfold(f.value))
}

/// The raw value of the first field named `name`, folding kept.
pub fn first_raw<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value)
}

/// A `Content-Type`-like value: a token and `;`-separated parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamValue {
    /// The value before the first `;` (e.g. `text/plain`, `attachment`).
    pub value: String,
    /// Parameters in order, names as written, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ParamValue {
    /// A parameter by name, case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Merges RFC 2231 parameter continuations as Dovecot does, so that
/// BODYSTRUCTURE shows the same parameter list: plain parameters first in
/// their order, then the `name*...` ones sorted by name and index, each set
/// `name*0`, `name*1*`... joined into one `name` (or `name*` when any piece
/// is extended; plain pieces then have `%` escaped, and a plain first piece
/// gets an empty charset and language `''`). A set with a missing index is
/// left as it is.
pub fn merge_rfc2231(params: &[(String, String)]) -> Vec<(String, String)> {
    struct Piece<'a> {
        name: &'a str,
        idx: u32,
        extended: bool,
        value: &'a str,
    }
    let mut out = Vec::with_capacity(params.len());
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    for (k, v) in params {
        let Some(star) = k.find('*') else {
            out.push((k.clone(), v.clone()));
            continue;
        };
        let rest = &k[star + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let idx = rest[..digits].parse::<u32>().unwrap_or(0);
        let tail = &rest[digits..];
        let (extended, ok) = match tail {
            "" => (false, true),
            "*" => (true, true),
            _ => (false, false),
        };
        // `name*` alone is index 0, extended.
        let (idx, extended) = if rest.is_empty() {
            (0, true)
        } else {
            (idx, extended)
        };
        if !ok {
            out.push((k.clone(), v.clone()));
            continue;
        }
        pieces.push(Piece {
            name: &k[..star],
            idx,
            extended,
            value: v,
        });
    }
    pieces.sort_by(|a, b| a.name.cmp(b.name).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut ok = true;
        let mut any_extended = false;
        while j < pieces.len() && pieces[j].name.eq_ignore_ascii_case(pieces[i].name) {
            ok &= pieces[j].idx as usize == j - i;
            any_extended |= pieces[j].extended;
            j += 1;
        }
        if ok {
            let mut value = String::new();
            if !pieces[i].extended && any_extended {
                value.push_str("''");
            }
            for p in &pieces[i..j] {
                if !p.extended && any_extended {
                    value.push_str(&p.value.replace('%', "%25"));
                } else {
                    value.push_str(p.value);
                }
            }
            let key = if any_extended {
                format!("{}*", pieces[i].name)
            } else {
                pieces[i].name.to_owned()
            };
            out.push((key, value));
        } else {
            for p in &pieces[i..j] {
                let key = if p.extended {
                    format!("{}*{}*", p.name, p.idx)
                } else {
                    format!("{}*{}", p.name, p.idx)
                };
                out.push((key, p.value.to_owned()));
            }
        }
        i = j;
    }
    out
}

/// Parses `value; a=b; c="d e"` leniently (comments dropped, bad
/// parameters skipped).
pub fn parse_params(raw: &[u8]) -> ParamValue {
    let s = String::from_utf8_lossy(&unfold(raw)).into_owned();
    let s = strip_comments(&s);
    let mut chars = s.char_indices().peekable();
    let mut value_end = s.len();
    let mut in_quote = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => in_quote = !in_quote,
            '\\' if in_quote => {
                chars.next();
            }
            ';' if !in_quote => {
                value_end = i;
                break;
            }
            _ => {}
        }
    }
    let value = s[..value_end].trim().to_owned();
    let mut params = Vec::new();
    let mut rest = if value_end < s.len() {
        &s[value_end + 1..]
    } else {
        ""
    };
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().trim_matches(';').trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut end = q.len();
            let mut it = q.char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = it.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => out.push(c),
                }
            }
            let remainder = &q[end.min(q.len())..];
            let next = remainder
                .find(';')
                .map(|p| &remainder[p + 1..])
                .unwrap_or("");
            (out, next)
        } else {
            let end = after.find(';').unwrap_or(after.len());
            let next = if end < after.len() {
                &after[end + 1..]
            } else {
                ""
            };
            (after[..end].trim().to_owned(), next)
        };
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            params.push((name, val));
        }
        rest = next;
    }
    ParamValue { value, params }
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if depth == 0 {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                in_quote = !in_quote;
                out.push(c);
            }
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_with_folding() {
        let block = b"Subject: a\r\n b\r\nFrom: x\r\nbogus line\r\n\r\n";
        let f = fields(block);
        assert_eq!(f.len(), 3);
        assert_eq!((f[2].name, f[2].raw), (&b""[..], &b"bogus line\r\n"[..]));
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].raw, b"Subject: a\r\n b\r\n");
        assert_eq!(unfold(f[0].value), b"a b");
    }

    #[test]
    fn params() {
        let p = parse_params(b" text/plain; charset=\"utf-8\" (comment); format=flowed");
        assert_eq!(p.value, "text/plain");
        assert_eq!(p.param("CHARSET"), Some("utf-8"));
        assert_eq!(p.param("format"), Some("flowed"));
        let p = parse_params(b"multipart/mixed;\r\n\tboundary=\"==a;b==\"");
        assert_eq!(p.param("boundary"), Some("==a;b=="));
    }
}
