//! Small pieces of IMAP line syntax: line ends, the tag and command name
//! of a line, and a literal announcement at the end of a line.
//!
//! The server's input goes through [`crate::framer`], which tracks every
//! literal; [`literal_announcement`] is for reading the other side's lines
//! where nothing is at stake (tests and tools reading a server's answers).

/// How a literal was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralSync {
    /// `{n}`: the client waits for a `+` continuation.
    Sync,
    /// `{n+}` (LITERAL+): the data follows at once.
    NonSync,
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// Octets that follow.
    pub len: u64,
    /// Whether the client waits for `+`.
    pub sync: LiteralSync,
    /// Offset of the `{` in the line.
    pub brace_at: usize,
}

/// Strips the line end (CRLF, or a bare LF that some clients send).
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// If `line` (with or without its CRLF) ends in a literal announcement,
/// returns it. `~{n}` (RFC 3516 literal8) is recognised too.
pub fn literal_announcement(line: &[u8]) -> Option<Announcement> {
    let l = strip_eol(line);
    let inner = l.strip_suffix(b"}")?;
    let brace_at = inner.iter().rposition(|b| *b == b'{')?;
    let mut digits = &inner[brace_at + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            LiteralSync::NonSync
        }
        None => LiteralSync::Sync,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(Announcement {
        len,
        sync,
        brace_at,
    })
}

/// The tag of a command line, if it starts with a plausible one (used to
/// answer a line the parser refuses with a tagged BAD).
pub fn tag_of(line: &[u8]) -> Option<&str> {
    let end = line
        .iter()
        .position(|b| *b == b' ' || *b == b'\r' || *b == b'\n')?;
    let tag = &line[..end];
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .iter()
            .all(|&b| b > 0x20 && b < 0x7f && !b"(){%*\"\\+".contains(&b));
    if ok {
        std::str::from_utf8(tag).ok()
    } else {
        None
    }
}

/// The command name (second word) of a line, upper-cased, for routing
/// decisions made before the parser runs (APPEND literal streaming).
pub fn command_name(line: &[u8]) -> Option<String> {
    let mut words = line.split(|b| *b == b' ');
    words.next()?;
    let name = words.next()?;
    let name = strip_eol(name);
    let mut s = std::str::from_utf8(name).ok()?.to_ascii_uppercase();
    if s == "UID" {
        if let Some(n) = words.next() {
            s.push(' ');
            s.push_str(&String::from_utf8_lossy(strip_eol(n)).to_ascii_uppercase());
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements() {
        let a = literal_announcement(b"A1 LOGIN {5}\r\n").unwrap();
        assert_eq!((a.len, a.sync, a.brace_at), (5, LiteralSync::Sync, 9));
        let a = literal_announcement(b"A1 APPEND x {12+}\r\n").unwrap();
        assert_eq!((a.len, a.sync), (12, LiteralSync::NonSync));
        assert!(literal_announcement(b"A1 NOOP\r\n").is_none());
        assert!(literal_announcement(b"A1 X {}\r\n").is_none());
        assert!(literal_announcement(b"A1 X {1a}\r\n").is_none());
        assert!(literal_announcement(b"A1 X {99999999999999999999}\r\n").is_none());
    }

    #[test]
    fn tags_and_names() {
        assert_eq!(tag_of(b"a001 NOOP\r\n"), Some("a001"));
        assert_eq!(tag_of(b"* NOOP\r\n"), None);
        assert_eq!(command_name(b"a1 uid fetch 1 x"), Some("UID FETCH".into()));
        assert_eq!(command_name(b"a1 append x {3}\r\n"), Some("APPEND".into()));
    }
}
