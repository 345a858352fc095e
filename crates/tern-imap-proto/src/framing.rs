//! Small pieces of IMAP line syntax: line ends, the tag and the command
//! name of a line. Literals are [`crate::framer`]'s.

/// Strips the line end (CRLF, or a bare LF that some clients send).
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
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
    // A word ends at a space or a line end: the name never takes in a
    // literal's bytes (which may hold CRLF) from the lines after it.
    let mut words = line.split(|b| matches!(b, b' ' | b'\r' | b'\n'));
    words.next()?;
    let name = words.next()?;
    let mut s = std::str::from_utf8(name).ok()?.to_ascii_uppercase();
    if s == "UID" {
        if let Some(n) = words.next() {
            s.push(' ');
            s.push_str(&String::from_utf8_lossy(n).to_ascii_uppercase());
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names() {
        assert_eq!(tag_of(b"a001 NOOP\r\n"), Some("a001"));
        assert_eq!(tag_of(b"* NOOP\r\n"), None);
        assert_eq!(command_name(b"a1 uid fetch 1 x"), Some("UID FETCH".into()));
        assert_eq!(command_name(b"a1 append x {3}\r\n"), Some("APPEND".into()));
        assert_eq!(command_name(b"a1 \r\n"), Some(String::new()));
        // Found by the imap_session fuzz target: the name of a command
        // whose literal held a line was answered with that line in it.
        assert_eq!(
            command_name(b"INBOX {23+}\r\nx9 CREATE INBOX.pwned\r\n\r\n"),
            Some("{23+}".into())
        );
    }
}
