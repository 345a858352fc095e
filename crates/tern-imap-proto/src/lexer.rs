//! The tokens of a whole command (lines and literals as the framer hands
//! them out), for the grammar tern adds around imap-codec: where `$`
//! (RFC 5182) stands as a sequence set, and which bytes are quoted strings
//! or literal data that no rewriting may touch.
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

/// How a `$` stands in a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedUse {
    /// As the sequence set of FETCH, STORE, COPY, MOVE or UID EXPUNGE, or as
    /// a search key of its own: the bytes of the `$`.
    Set(Range<usize>),
    /// As the argument of the search key `UID`: the bytes of `UID $`.
    UidKey(Range<usize>),
}

impl SavedUse {
    /// The bytes it stands for.
    pub fn range(&self) -> Range<usize> {
        match self {
            SavedUse::Set(r) | SavedUse::UidKey(r) => r.clone(),
        }
    }
}

/// Every `$` of `bytes` that the grammar reads as a saved result: the
/// sequence set of FETCH, STORE, COPY, MOVE and UID EXPUNGE, and a search
/// key (or the set of the key `UID`) of SEARCH, SORT and THREAD. A `$`
/// anywhere else (a mailbox named `$`, `SUBJECT $`, quoted, in a literal) is
/// not one.
pub fn saved_result_uses(bytes: &[u8]) -> Vec<SavedUse> {
    let toks = tokens(bytes);
    let word = |t: &Token| -> Option<String> {
        (t.kind == TokenKind::Atom)
            .then(|| String::from_utf8_lossy(&bytes[t.range.clone()]).to_ascii_uppercase())
    };
    let is_dollar = |t: &Token| t.kind == TokenKind::Atom && &bytes[t.range.clone()] == b"$";
    let mut uses = Vec::new();
    // Tag, then the command name, after UID when it is one.
    let mut i = 1;
    let mut name = toks.get(i).and_then(word).unwrap_or_default();
    if name == "UID" {
        i += 1;
        name = toks.get(i).and_then(word).unwrap_or_default();
    }
    i += 1;
    match name.as_str() {
        "FETCH" | "STORE" | "COPY" | "MOVE" | "EXPUNGE" => {
            if let Some(t) = toks.get(i).filter(|t| is_dollar(t)) {
                uses.push(SavedUse::Set(t.range.clone()));
            }
            return uses;
        }
        "SEARCH" => {}
        "SORT" => {
            // The sort criteria in parentheses, then the charset.
            if toks.get(i).map(|t| t.kind) == Some(TokenKind::Open) {
                while toks.get(i).is_some_and(|t| t.kind != TokenKind::Close) {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        }
        // The algorithm, then the charset.
        "THREAD" => i += 2,
        _ => return uses,
    }
    while let Some(t) = toks.get(i) {
        i += 1;
        if is_dollar(t) {
            uses.push(SavedUse::Set(t.range.clone()));
            continue;
        }
        let Some(key) = word(t) else {
            continue;
        };
        match key.as_str() {
            "UID" => {
                if let Some(arg) = toks.get(i) {
                    if is_dollar(arg) {
                        uses.push(SavedUse::UidKey(t.range.start..arg.range.end));
                    }
                    i += 1;
                }
            }
            "HEADER" => i += 2,
            // MODSEQ "/flags/\\draft" all 620162338 or MODSEQ 620162338.
            "MODSEQ" => {
                i += if toks.get(i).map(|t| t.kind) == Some(TokenKind::Quoted) {
                    3
                } else {
                    1
                }
            }
            k if crate::criteria::ONE_ARG.contains(&k) || k == "CHARSET" => i += 1,
            _ => {}
        }
    }
    uses
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

    fn sets(cmd: &[u8]) -> Vec<String> {
        saved_result_uses(cmd)
            .into_iter()
            .map(|u| match u {
                SavedUse::Set(r) => String::from_utf8_lossy(&cmd[r]).into_owned(),
                SavedUse::UidKey(r) => format!("key:{}", String::from_utf8_lossy(&cmd[r])),
            })
            .collect()
    }

    #[test]
    fn dollar_where_the_grammar_has_a_set() {
        assert_eq!(sets(b"a FETCH $ (FLAGS)\r\n"), ["$"]);
        assert_eq!(sets(b"a UID COPY $ Trash\r\n"), ["$"]);
        assert_eq!(sets(b"a UID EXPUNGE $\r\n"), ["$"]);
        assert_eq!(sets(b"a STORE $ +FLAGS (x)\r\n"), ["$"]);
        assert_eq!(
            sets(b"a SEARCH $ SUBJECT $ OR (UID $) NOT $\r\n"),
            ["$", "key:UID $", "$"]
        );
        assert_eq!(sets(b"a UID SORT (DATE SUBJECT) UTF-8 $\r\n"), ["$"]);
        assert_eq!(sets(b"a THREAD REFERENCES UTF-8 HEADER $ $ $\r\n"), ["$"]);
    }

    #[test]
    fn dollar_elsewhere_is_not_a_set() {
        assert!(sets(b"a CREATE $\r\n").is_empty());
        assert!(sets(b"a COPY 1 $\r\n").is_empty());
        assert!(sets(b"a SELECT $\r\n").is_empty());
        assert!(sets(b"a SEARCH SUBJECT \"$\" BODY {1}\r\n$ TEXT $\r\n").is_empty());
        assert!(sets(b"a SEARCH CHARSET $ ALL\r\n").is_empty());
        assert!(sets(b"a FETCH 1 (BODY[HEADER.FIELDS ($)])\r\n").is_empty());
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
