//! The tokens of a whole command (lines and literals as the framer hands
//! them out), for the grammar tern adds around imap-codec: where `$`
//! (RFC 5182) stands as a sequence set, where search criteria begin, and
//! which bytes are quoted strings or literal data.
//!
//! One pass, no recursion; parentheses are tokens, not nesting.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A run of bytes up to a space, parenthesis, quote, brace or line end.
    Atom,
    /// A quoted string, quotes included.
    Quoted,
    /// A literal's announcement (`{n}`, `{n+}`, `~{n}`), its line end and its
    /// data.
    Literal,
    /// `(`.
    Open,
    /// `)`.
    Close,
}

/// A token and where it is in the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes in the command.
    pub range: Range<usize>,
}

/// The tokens of `bytes`. Bytes the grammar has no token for (a lone `{`)
/// are atoms of their own; a literal whose data is cut short ends the list.
pub fn tokens(bytes: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let kind = match bytes[i] {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                TokenKind::Open
            }
            b')' => {
                i += 1;
                TokenKind::Close
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                TokenKind::Quoted
            }
            b'{' | b'~' if literal_end(bytes, i).is_some() => {
                match literal_end(bytes, i) {
                    Some(end) if end <= bytes.len() => i = end,
                    // Cut short: the tokens end here.
                    _ => break,
                }
                TokenKind::Literal
            }
            _ => {
                i += 1;
                while i < bytes.len() && !b" ()\"{\r\n".contains(&bytes[i]) {
                    i += 1;
                }
                TokenKind::Atom
            }
        };
        out.push(Token {
            kind,
            range: start..i,
        });
    }
    out
}

/// Where the literal announced at `at` (`{n}`, `{n+}` or `~{n}` ending its
/// line) ends, its data included; `None` when `at` starts no announcement.
/// The announcement is read by the framer's parser.
fn literal_end(bytes: &[u8], at: usize) -> Option<usize> {
    let lf = at + bytes[at..].iter().position(|&b| b == b'\n')?;
    let (info, ann_len) = crate::framer::literal_at_end(&bytes[at..=lf])?;
    // The announcement must be all that stands between `at` and the line end.
    if ann_len != lf + 1 - at {
        return None;
    }
    usize::try_from(info.len).ok()?.checked_add(lf + 1)
}

/// Where the sequence-set argument of FETCH, STORE, COPY, MOVE or UID
/// EXPUNGE is `$` (RFC 5182): the bytes of the `$`. A `$` anywhere else (a
/// mailbox named `$`, quoted, in a literal) is not one; in search criteria
/// `$` is a key ([`crate::criteria`]).
pub fn saved_set_argument(bytes: &[u8]) -> Option<Range<usize>> {
    let toks = tokens(bytes);
    let word = |t: &Token| -> Option<String> {
        (t.kind == TokenKind::Atom)
            .then(|| String::from_utf8_lossy(&bytes[t.range.clone()]).to_ascii_uppercase())
    };
    // Tag, then the command name, after UID when it is one.
    let mut i = 1;
    let mut name = toks.get(i).and_then(word)?;
    if name == "UID" {
        i += 1;
        name = toks.get(i).and_then(word)?;
    }
    if !["FETCH", "STORE", "COPY", "MOVE", "EXPUNGE"].contains(&name.as_str()) {
        return None;
    }
    toks.get(i + 1)
        .filter(|t| t.kind == TokenKind::Atom && &bytes[t.range.clone()] == b"$")
        .map(|t| t.range.clone())
}

/// Whether `at` is inside a quoted string or a literal of `toks` (where no
/// rewriting may look).
pub fn is_protected(toks: &[Token], at: usize) -> bool {
    let i = toks.partition_point(|t| t.range.end <= at);
    toks.get(i).is_some_and(|t| {
        t.range.contains(&at) && matches!(t.kind, TokenKind::Quoted | TokenKind::Literal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cmd: &[u8]) -> Option<String> {
        saved_set_argument(cmd).map(|r| String::from_utf8_lossy(&cmd[r]).into_owned())
    }

    #[test]
    fn dollar_where_the_grammar_has_a_set() {
        assert_eq!(set(b"a FETCH $ (FLAGS)\r\n").as_deref(), Some("$"));
        assert_eq!(set(b"a UID COPY $ Trash\r\n").as_deref(), Some("$"));
        assert_eq!(set(b"a UID EXPUNGE $\r\n").as_deref(), Some("$"));
        assert_eq!(set(b"a STORE $ +FLAGS (x)\r\n").as_deref(), Some("$"));
    }

    #[test]
    fn dollar_elsewhere_is_not_a_set() {
        assert!(set(b"a CREATE $\r\n").is_none());
        assert!(set(b"a COPY 1 $\r\n").is_none());
        assert!(set(b"a SELECT $\r\n").is_none());
        assert!(set(b"a FETCH \"$\" FLAGS\r\n").is_none());
        assert!(set(b"a SEARCH $\r\n").is_none());
        assert!(set(b"a FETCH 1 (BODY[HEADER.FIELDS ($)])\r\n").is_none());
    }

    #[test]
    fn literals_and_quoted_strings_are_protected() {
        let cmd = b"a FETCH 1 (BODY[HEADER.FIELDS ({8}\r\nBINARY[1 \"BINARY[\")])\r\n";
        let toks = tokens(cmd);
        let lit = cmd.windows(7).position(|w| w == b"BINARY[").unwrap();
        assert!(is_protected(&toks, lit));
        let quoted = lit + 10;
        assert!(is_protected(&toks, quoted));
        assert!(!is_protected(&toks, 2));
        // A literal cut short ends the tokens.
        assert_eq!(tokens(b"a X {5}\r\nab").len(), 2);
    }
}
