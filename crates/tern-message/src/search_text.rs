//! Decoded text for SEARCH: header values with RFC 2047 words decoded, and
//! body text with transfer encodings and charsets decoded (mail-parser), and
//! a case-insensitive substring match.

use mail_parser::{MessageParser, PartType};

/// Lower-cases for matching: full Unicode lower-casing approximates
/// i;unicode-casemap closely enough for substring search.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// True if `needle` (already folded) occurs in `hay` case-insensitively.
pub fn contains_folded(hay: &str, needle_folded: &str) -> bool {
    needle_folded.is_empty() || fold(hay).contains(needle_folded)
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
    let parsed = MessageParser::new().parse(&msg[..]);
    let decoded = parsed.and_then(|m| m.subject().map(str::to_owned));
    decoded.unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
}

/// The instant an RFC 5322 date stands for, in seconds since the epoch
/// (UTC); `None` when it is not a valid date.
pub fn date_timestamp(value: &[u8]) -> Option<i64> {
    mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(value))
        .filter(|d| d.is_valid())
        .map(|d| d.to_timestamp())
}

/// Every text body of the message, decoded to UTF-8, concatenated.
pub fn body_text(msg: &[u8]) -> String {
    let Some(m) = MessageParser::new().parse(msg) else {
        return String::from_utf8_lossy(msg).into_owned();
    };
    let mut out = String::new();
    for p in &m.parts {
        match &p.body {
            PartType::Text(t) | PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(decode_header_value(b"=?utf-8?q?J=C3=B6rg?= x"), "Jörg x");
        let m = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSsO2cmc=\r\n";
        assert!(body_text(m).contains("Jörg"));
        assert!(contains_folded("Hello WORLD", &fold("world")));
        assert_eq!(date_timestamp(b"Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(date_timestamp(b"garbage"), None);
    }
}
