//! BINARY sections with a text specifier (`BINARY.PEEK[1.MIME]`,
//! `BINARY.SIZE[2.HEADER]`, `BINARY[TEXT]`).
//!
//! RFC 3516's grammar allows only part numbers inside `BINARY[...]`, and
//! imap-codec follows it; Dovecot accepts every BODY section form there,
//! and Dovecot's imaptest suite expects it. tern accepts them too: before
//! parsing, such an item is written as the BODY section of the same text
//! (which the grammar takes), and the server is told which of the command's
//! BODY sections stand for a BINARY item, so it answers with the BINARY
//! label and decoded content.

/// One BINARY item that was written as a BODY section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryAlias {
    /// Which BODY section of the rewritten command (0 for the first, in
    /// the order they appear) stands for this item.
    pub index: usize,
    /// `BINARY.SIZE[...]` rather than `BINARY[...]`/`BINARY.PEEK[...]`.
    pub size: bool,
}

use crate::lexer::TokenKind;

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

/// The FETCH command `bytes` with its text-specifier BINARY items written
/// as BODY sections, and which sections those are; `None` when the command
/// is not a FETCH or has no such item.
pub fn rewrite(bytes: &[u8]) -> Option<(Vec<u8>, Vec<BinaryAlias>)> {
    // Only FETCH and UID FETCH: the word after the tag (and after UID).
    let mut words = bytes.split(|&b| b == b' ').skip(1);
    let first = words.next()?;
    let is_fetch = first.eq_ignore_ascii_case(b"FETCH")
        || (first.eq_ignore_ascii_case(b"UID")
            && words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(b"FETCH")));
    if !is_fetch {
        return None;
    }
    // Quoted strings and literals (header names, say) are copied as they
    // are: an item name inside one is no item.
    let toks = crate::lexer::tokens(bytes);
    let protected = |at: usize| -> Option<usize> {
        let t = toks.get(toks.partition_point(|t| t.range.end <= at))?;
        (t.range.start == at && matches!(t.kind, TokenKind::Quoted | TokenKind::Literal))
            .then_some(t.range.end)
    };
    let close_of = |from: usize| -> Option<usize> {
        let mut j = from;
        while j < bytes.len() {
            if let Some(end) = protected(j) {
                j = end;
                continue;
            }
            if bytes[j] == b']' {
                return Some(j - from);
            }
            j += 1;
        }
        None
    };
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut aliases = Vec::new();
    let mut sections = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = protected(i) {
            out.extend_from_slice(&bytes[i..end]);
            i = end;
            continue;
        }
        let rest = &bytes[i..];
        let at_word_start = i > 0 && matches!(bytes[i - 1], b' ' | b'(');
        if at_word_start && (starts_with_ci(rest, b"BODY[") || starts_with_ci(rest, b"BODY.PEEK["))
        {
            sections += 1;
        }
        let binary = [
            (&b"BINARY.SIZE["[..], true, &b"BODY.PEEK["[..]),
            (&b"BINARY.PEEK["[..], false, &b"BODY.PEEK["[..]),
            (&b"BINARY["[..], false, &b"BODY["[..]),
        ]
        .into_iter()
        .find(|(name, _, _)| at_word_start && starts_with_ci(rest, name));
        if let Some((name, size, body)) = binary {
            let inner = &rest[name.len()..];
            if let Some(close) = close_of(i + name.len()) {
                let spec = &inner[..close];
                if spec.iter().any(u8::is_ascii_alphabetic) {
                    out.extend_from_slice(body);
                    out.extend_from_slice(spec);
                    out.push(b']');
                    aliases.push(BinaryAlias {
                        index: sections,
                        size,
                    });
                    sections += 1;
                    i += name.len() + close + 1;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    (!aliases.is_empty()).then_some((out, aliases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_specifiers_become_body_sections() {
        let (cmd, aliases) = rewrite(
            b"a FETCH 1 (BODY[1] binary.size[2.MIME] BINARY.PEEK[TEXT]<0.5> BINARY[3])\r\n",
        )
        .unwrap();
        assert_eq!(
            cmd,
            b"a FETCH 1 (BODY[1] BODY.PEEK[2.MIME] BODY.PEEK[TEXT]<0.5> BINARY[3])\r\n"
        );
        assert_eq!(
            aliases,
            vec![
                BinaryAlias {
                    index: 1,
                    size: true
                },
                BinaryAlias {
                    index: 2,
                    size: false
                }
            ]
        );
        let (cmd, aliases) =
            rewrite(b"a UID FETCH 1:* BINARY[1.HEADER.FIELDS (FROM)]\r\n").unwrap();
        assert_eq!(cmd, b"a UID FETCH 1:* BODY[1.HEADER.FIELDS (FROM)]\r\n");
        assert_eq!(
            aliases,
            vec![BinaryAlias {
                index: 0,
                size: false
            }]
        );
    }

    #[test]
    fn other_commands_and_plain_binary_are_left_alone() {
        assert!(rewrite(b"a FETCH 1 (BINARY[1] BINARY.SIZE[2.1])\r\n").is_none());
        assert!(rewrite(b"a SEARCH BINARY[TEXT]\r\n").is_none());
        assert!(rewrite(b"a FETCH 1 (XBINARY[TEXT])\r\n").is_none());
        // Inside a literal or a quoted string, an item name is data.
        assert!(rewrite(
            b"a FETCH 1 (BODY[HEADER.FIELDS ({13}\r\n BINARY[TEXT] \" BINARY[1.MIME]\")])\r\n"
        )
        .is_none());
        let (cmd, _) = rewrite(b"a FETCH 1 BINARY[1.HEADER.FIELDS (\"x]\")]\r\n").unwrap();
        assert_eq!(cmd, b"a FETCH 1 BODY[1.HEADER.FIELDS (\"x]\")]\r\n");
    }
}
