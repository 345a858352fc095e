//! Decoded text for SEARCH: header values with RFC 2047 words decoded
//! (mail-parser), body text with transfer encodings and charsets decoded
//! (tern's MIME tree, encoding_rs), and a case-insensitive substring match.

use mail_parser::MessageParser;

/// The i;unicode-casemap form of a string (RFC 5051) as Dovecot computes
/// it: each character mapped to its simple titlecase form (one character
/// for one: "ß" stays "ß", so "STRASSE" does not find "Straße", as in
/// Dovecot) and then fully decomposed (compatibility decomposition), with
/// nothing mapped again afterwards ("ﬁ" becomes a lower-case "fi").
/// SEARCH compares these forms, and SORT orders by them (a decomposed "Ç"
/// is "C" and a combining mark, which sorts after the ASCII letters).
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        unicode_normalization::char::decompose_compatible(simple_titlecase(c), |d| out.push(d));
    }
    out
}

/// The Unicode simple titlecase mapping (UnicodeData.txt): the upper case
/// where that is one character, the titlecase letters of the four Latin
/// digraphs, the Greek letters with ypogegrammeni, and the character
/// itself where only a multi-character (SpecialCasing) mapping exists.
fn simple_titlecase(c: char) -> char {
    match c {
        '\u{01C4}'..='\u{01C6}' => '\u{01C5}',
        '\u{01C7}'..='\u{01C9}' => '\u{01C8}',
        '\u{01CA}'..='\u{01CC}' => '\u{01CB}',
        '\u{01F1}'..='\u{01F3}' => '\u{01F2}',
        '\u{1F80}'..='\u{1F87}' | '\u{1F90}'..='\u{1F97}' | '\u{1FA0}'..='\u{1FA7}' => {
            char::from_u32(c as u32 + 8).unwrap_or(c)
        }
        '\u{1FB3}' => '\u{1FBC}',
        '\u{1FC3}' => '\u{1FCC}',
        '\u{1FF3}' => '\u{1FFC}',
        // Georgian letters are their own titlecase.
        '\u{10D0}'..='\u{10FA}' | '\u{10FD}'..='\u{10FF}' => c,
        _ => {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        }
    }
}

/// A search charset by its name: `None` for UTF-8 and US-ASCII (strings
/// are taken as they are), the decoder for any other charset the WHATWG
/// encoding standard knows (ISO-8859-*, windows-125x, KOI8-R, KOI8-U,
/// ISO-2022-JP, GB2312, GBK, Big5, EUC-JP, Shift_JIS, ...); `Err` when the
/// name is unknown (BADCHARSET).
pub fn search_charset(
    name: &str,
) -> Result<Option<&'static encoding_rs::Encoding>, UnknownCharset> {
    if name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII") {
        return Ok(None);
    }
    encoding_rs::Encoding::for_label(name.as_bytes())
        .map(Some)
        .ok_or(UnknownCharset)
}

/// A charset name no decoder knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown charset")]
pub struct UnknownCharset;

/// Decodes a search string in `charset` (see [`search_charset`]) to UTF-8.
pub fn decode_in(bytes: &[u8], charset: Option<&'static encoding_rs::Encoding>) -> String {
    match charset {
        None => String::from_utf8_lossy(bytes).into_owned(),
        Some(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
    }
}

/// True if `needle` (already folded) occurs in `hay` case-insensitively.
pub fn contains_folded(hay: &str, needle_folded: &str) -> bool {
    if needle_folded.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle_folded.is_ascii() {
        // The folded form of ASCII text is its upper case: compare in
        // place rather than copying the text.
        return contains_ascii_nocase(hay.as_bytes(), needle_folded.as_bytes());
    }
    fold(hay).contains(needle_folded)
}

/// True if the upper-case ASCII `needle` occurs in `hay`, ignoring ASCII
/// case. Candidates are found with memchr on the first byte in both cases.
fn contains_ascii_nocase(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let (upper, lower) = (first.to_ascii_uppercase(), first.to_ascii_lowercase());
    let mut from = 0;
    while from <= last_start {
        let Some(p) = memchr::memchr2(upper, lower, &hay[from..=last_start]) else {
            return false;
        };
        let at = from + p;
        if hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Decodes RFC 2047 encoded words in a raw header value.
pub fn decode_header_value(raw: &[u8]) -> String {
    if !raw.windows(2).any(|w| w == b"=?") {
        return String::from_utf8_lossy(raw).into_owned();
    }
    // mail-parser decodes encoded words in unstructured fields such as Subject.
    let mut msg = b"Subject: ".to_vec();
    msg.extend_from_slice(raw);
    msg.extend_from_slice(b"\r\n\r\n");
    let decoded = guarded(|| {
        MessageParser::new()
            .parse(&msg[..])
            .and_then(|m| m.subject().map(str::to_owned))
    });
    decoded
        .flatten()
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
}

/// The instant an RFC 5322 date stands for, in seconds since the epoch
/// (UTC); `None` when it is not a date. The grammar accepted is Dovecot's
/// (`[weekday ","] d[d] month [yy]yy h[h]:mm[:ss] [zone]`, `.` also as the
/// time separator, an unknown zone as GMT), so SORT by DATE and THREAD
/// order messages with odd dates as Dovecot does.
pub fn date_timestamp(value: &[u8]) -> Option<i64> {
    let mut p = DateParser { s: value, i: 0 };
    p.skip_cfws();
    let mut tok = p.atom()?;
    if tok.len() == 3 {
        if p.peek() != Some(b',') {
            return None;
        }
        p.i += 1;
        p.skip_cfws();
        tok = p.atom()?;
    }
    let two_digits = |t: &[u8]| -> Option<u32> {
        match t {
            [a] if a.is_ascii_digit() => Some(u32::from(a - b'0')),
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            }
            _ => None,
        }
    };
    let day = two_digits(tok)?;
    let month_tok = p.atom()?;
    if month_tok.len() < 3 {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| month_tok[..3].eq_ignore_ascii_case(m))? as u32
        + 1;
    let year_tok = p.atom()?;
    if !(year_tok.len() == 2 || year_tok.len() == 4) || !year_tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut year: i32 = std::str::from_utf8(year_tok).ok()?.parse().ok()?;
    if year_tok.len() == 2 {
        year += if year < 70 { 2000 } else { 1900 };
    } else if year < 1900 {
        return None;
    }
    let hour = two_digits(p.atom()?)?;
    let is_sep = |c: Option<u8>| matches!(c, Some(b':') | Some(b'.'));
    if !is_sep(p.peek()) {
        return None;
    }
    p.i += 1;
    p.skip_cfws();
    let min_tok = p.atom()?;
    if min_tok.len() != 2 {
        return None;
    }
    let min = two_digits(min_tok)?;
    let mut sec = 0;
    if is_sep(p.peek()) {
        p.i += 1;
        p.skip_cfws();
        let t = p.atom()?;
        if t.len() != 2 {
            return None;
        }
        sec = two_digits(t)?;
    }
    let offset_min = if p.i >= p.s.len() {
        0
    } else {
        zone_offset(p.atom()?)
    };
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let t = date.and_hms_opt(hour, min, sec)?.and_utc().timestamp();
    Some(t - i64::from(offset_min) * 60)
}

/// A zone's offset in minutes; unknown zones are GMT (as Dovecot).
fn zone_offset(z: &[u8]) -> i32 {
    if z.len() == 5 && (z[0] == b'+' || z[0] == b'-') && z[1..].iter().all(u8::is_ascii_digit) {
        let d = |i: usize| i32::from(z[i] - b'0');
        let off = (d(1) * 10 + d(2)) * 60 + d(3) * 10 + d(4);
        return if z[0] == b'+' { off } else { -off };
    }
    if z.len() == 1 {
        // Military zones, the correct way rather than as RFC 822 wrote them.
        let c = z[0].to_ascii_uppercase() as i32;
        let a = i32::from(b'A');
        return match c {
            c if c < i32::from(b'J') => (c - a + 1) * 60,
            c if c == i32::from(b'J') => 0,
            c if c <= i32::from(b'M') => (c - a) * 60,
            c if c < i32::from(b'Z') => (i32::from(b'M') - c) * 60,
            _ => 0,
        };
    }
    if z.len() == 3 && z[2].eq_ignore_ascii_case(&b'T') {
        let base = match z[0].to_ascii_uppercase() {
            b'E' => -5 * 60,
            b'C' => -6 * 60,
            b'M' => -7 * 60,
            b'P' => -8 * 60,
            _ => return 0,
        };
        return match z[1].to_ascii_uppercase() {
            b'D' => base + 60,
            b'S' => base,
            _ => 0,
        };
    }
    0
}

/// The tokens of a date: RFC 5322 atoms separated by folding white space
/// and comments.
struct DateParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> DateParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_cfws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0usize;
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        match c {
                            // A quoted pair; a backslash at the very end
                            // stays inside the text.
                            b'\\' => self.i = (self.i + 1).min(self.s.len()),
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// An atom and the white space after it; `None` when there is none.
    fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80 {
                self.i += 1;
            } else {
                break;
            }
        }
        let tok = self.s.get(start..self.i).unwrap_or_default();
        self.skip_cfws();
        (!tok.is_empty()).then_some(tok)
    }
}

/// Runs mail-parser (RFC 2047 decoding) on untrusted bytes. mail-parser
/// 0.11 panics on some inputs (found by the fuzz tests); a message must
/// never make SEARCH fail, so a panic means "not decodable" and the caller
/// falls back to the raw text.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Every text body of the message, decoded to UTF-8, concatenated.
pub fn body_text(msg: &[u8]) -> String {
    body_text_of(msg, &crate::mime::parse(msg))
}

/// As [`body_text`], with the message's MIME tree parsed before.
///
/// As Dovecot searches bodies: the decoded text of every text (and
/// message/*) part, those inside attached messages included; multipart
/// preambles and epilogues, part headers and non-text parts (images,
/// archives) are not body text.
pub fn body_text_of(msg: &[u8], root: &crate::mime::Part) -> String {
    let mut out = String::new();
    add_text_parts(msg, root, &mut out, 0);
    out
}

/// Every header of the message, as SEARCH TEXT looks at headers: the
/// message's own, those of its MIME parts and of the messages attached to
/// it, each field as `Name: value` with its value unfolded and its encoded
/// words decoded, one field a line. (Field names count: `TEXT message-id`
/// finds every message with a Message-ID, as in Dovecot.)
pub fn headers_text_of(msg: &[u8], root: &crate::mime::Part) -> String {
    let mut out = String::new();
    add_headers(msg, root, &mut out, 0);
    out
}

fn add_headers(msg: &[u8], part: &crate::mime::Part, out: &mut String, depth: usize) {
    use crate::mime::PartKind;
    if depth > 256 {
        return;
    }
    let block = msg.get(part.header.clone()).unwrap_or_default();
    // Line by line rather than field by field: a line without a colon
    // (broken mail) is searched too, as Dovecot searches it.
    let mut logical: Vec<u8> = Vec::new();
    let flush = |line: &mut Vec<u8>, out: &mut String| {
        if line.is_empty() {
            return;
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                out.push_str(&String::from_utf8_lossy(&line[..colon]));
                out.push_str(": ");
                let value = &line[colon + 1..];
                let start = value
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(value.len());
                out.push_str(&decode_header_value(&value[start..]));
            }
            None => out.push_str(&String::from_utf8_lossy(line)),
        }
        out.push('\n');
        line.clear();
    };
    for raw in block.split_inclusive(|&b| b == b'\n') {
        let text = raw
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(raw);
        if text.first().is_some_and(|&b| b == b' ' || b == b'\t') && !logical.is_empty() {
            logical.push(b' ');
            logical.extend_from_slice(text.trim_ascii_start());
        } else {
            flush(&mut logical, out);
            logical.extend_from_slice(text);
        }
    }
    flush(&mut logical, out);
    match &part.kind {
        PartKind::Multipart(children) => {
            for c in children {
                add_headers(msg, c, out, depth + 1);
            }
        }
        PartKind::Message(inner) => add_headers(msg, inner, out, depth + 1),
        PartKind::Leaf => {}
    }
}

/// Appends the decoded text of `part` and the parts inside it.
fn add_text_parts(msg: &[u8], part: &crate::mime::Part, out: &mut String, depth: usize) {
    use crate::binary::{decode_base64, decode_quoted_printable, encoding_of, Encoding};
    use crate::mime::PartKind;
    // The MIME parser bounds the depth; this keeps the recursion finite
    // on its own.
    if depth > 256 {
        return;
    }
    match &part.kind {
        PartKind::Multipart(children) => {
            for c in children {
                add_text_parts(msg, c, out, depth + 1);
            }
        }
        PartKind::Message(inner) => add_text_parts(msg, inner, out, depth + 1),
        PartKind::Leaf => {
            if !matches!(part.media_type().as_str(), "text" | "message") {
                return;
            }
            let header = msg.get(part.header.clone()).unwrap_or_default();
            let body = msg.get(part.body.clone()).unwrap_or_default();
            // Most mail needs no transfer decoding: the body is read where
            // it stands.
            let mut decoded = Vec::new();
            let bytes = match encoding_of(header) {
                Encoding::Base64 => {
                    decode_base64(body, &mut decoded);
                    &decoded[..]
                }
                Encoding::QuotedPrintable => {
                    decode_quoted_printable(body, &mut decoded);
                    &decoded[..]
                }
                _ => body,
            };
            // US-ASCII parts often carry UTF-8: read them as UTF-8 (as
            // Dovecot does); an unknown charset too.
            let charset = part.content_type.param("charset").unwrap_or("utf-8").trim();
            let encoding = if charset.eq_ignore_ascii_case("us-ascii")
                || charset.eq_ignore_ascii_case("ascii")
            {
                encoding_rs::UTF_8
            } else {
                encoding_rs::Encoding::for_label(charset.as_bytes()).unwrap_or(encoding_rs::UTF_8)
            };
            out.push_str(&encoding.decode(bytes).0);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_search_in_place_agrees_with_folding() {
        for (hay, needle, want) in [
            ("Hello WORLD", "WORLD", true),
            ("hello world", "WORLD", true),
            ("wworld", "WORLD", true),
            ("worl", "WORLD", false),
            ("xxWorlD", "WORLD", true),
            ("w", "W", true),
            ("", "W", false),
            ("abc", "", true),
            ("zebrazebr", "ZEBRA", true),
            ("zebrzebr", "ZEBRA", false),
        ] {
            assert_eq!(contains_folded(hay, needle), want, "{hay:?} {needle:?}");
            assert_eq!(fold(hay).contains(needle), want, "{hay:?} {needle:?}");
        }
        // Non-ASCII text still goes through folding.
        // As Dovecot (measured with its SEARCH): simple titlecase, then
        // decomposition.
        assert!(!contains_folded("Straße", &fold("STRASSE")));
        assert!(contains_folded("Straße", &fold("STRAßE")));
        assert!(!contains_folded("ﬁnance", &fold("FINANCE")));
        assert!(contains_folded("ﬁnance", &fold("ﬁnance")));
        for (hay, needle) in [
            ("ǆungla", "ǄUNGLA"),
            ("ǆungla", "ǅUNGLA"),
            ("ᾳx", "ᾼX"),
            ("İstanbul", "İSTANBUL"),
            ("ı", "I"),
            ("\u{212A}", "K"),
            ("\u{2126}", "ω"),
            ("Grüße", "grüße"),
        ] {
            assert!(contains_folded(hay, &fold(needle)), "{hay} {needle}");
        }
        for (hay, needle) in [
            ("ᾳx", "ΑΙX"),
            ("İstanbul", "ISTANBUL"),
            ("ǆungla", "DžUNGLA"),
        ] {
            assert!(!contains_folded(hay, &fold(needle)), "{hay} {needle}");
        }
    }

    #[test]
    fn decodes() {
        assert_eq!(decode_header_value(b"=?utf-8?q?J=C3=B6rg?= x"), "Jörg x");
        let m = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSsO2cmc=\r\n";
        assert!(body_text(m).contains("Jörg"));
        // Made mail-parser 0.11.9 panic: nested messages without text.
        let nested = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n\r\n--b--\r\n";
        assert!(!body_text(nested).contains("message/rfc822"));
        // The text of an attached message is body text; a preamble, part
        // headers and non-text parts are not.
        let forwarded = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble words\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\naGlkZGVu\r\n--b--\r\n";
        let text = body_text(forwarded);
        assert!(text.contains("first") && text.contains("Grüße"), "{text}");
        for absent in ["preamble", "Subject: inner", "Content-Type", "hidden"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        let plain = b"Subject: x\r\n\r\nplain body\r\n";
        assert_eq!(body_text(plain), "plain body\r\n\n");
        assert!(contains_folded("Hello WORLD", &fold("world")));
        let koi8 = search_charset("KOI8-R").unwrap();
        assert_eq!(decode_in(b"\xf0\xd2\xc9\xd7\xc5\xd4", koi8), "Привет");
        assert!(search_charset("X-NO-SUCH").is_err());
        let m = b"Content-Type: text/plain; charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n";
        assert!(body_text(m).contains("Привет"));
        assert!(contains_folded("Ça va très bien", &fold("TRÈS")));
        assert_eq!(fold("ﬁx"), "fiX");
        assert_eq!(date_timestamp(b"Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(date_timestamp(b"1 Jan 70 00:00 GMT"), Some(0));
        assert_eq!(
            date_timestamp(b"Thu, 1 Jan 1970 00:00:00 (no zone)"),
            Some(0)
        );
        assert_eq!(date_timestamp(b"01 Jan 1970 00:00 EST"), Some(5 * 3600));
        // As Dovecot: the zone glued to the time is no date.
        assert_eq!(date_timestamp(b"01 Jan 2001 00:01+0000"), None);
        assert_eq!(date_timestamp(b"garbage"), None);
    }
}
