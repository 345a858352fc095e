//! Command parsing through imap-codec, and the small conversions the server
//! needs from its types.

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

/// Why a complete command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not a valid command.
    #[error("syntax error in command")]
    Syntax,
    /// The command is incomplete (the framer should prevent this).
    #[error("incomplete command")]
    Incomplete,
}

/// Parses one complete command (all its lines and literals).
///
/// # Errors
/// [`ParseError::Syntax`] when the grammar rejects it.
pub fn parse(bytes: &[u8]) -> Result<Command<'static>, ParseError> {
    match CommandCodec::default().decode(bytes) {
        Ok((_, cmd)) => Ok(cmd.into_static()),
        Err(CommandDecodeError::Failed) => Err(ParseError::Syntax),
        Err(CommandDecodeError::Incomplete) | Err(CommandDecodeError::LiteralFound { .. }) => {
            Err(ParseError::Incomplete)
        }
    }
}

/// Every command the grammar parses, each with one valid example. A command
/// line that does not parse is answered "invalid arguments" when its name is
/// here and "unknown command" otherwise; the test below parses each example
/// and checks that it is the command named, so this table cannot name a
/// command the parser does not know; the end-to-end tests send every
/// command with bad arguments.
pub const COMMANDS: &[(&str, &[u8])] = &[
    ("CAPABILITY", b"a CAPABILITY\r\n"),
    ("NOOP", b"a NOOP\r\n"),
    ("LOGOUT", b"a LOGOUT\r\n"),
    ("STARTTLS", b"a STARTTLS\r\n"),
    ("AUTHENTICATE", b"a AUTHENTICATE PLAIN\r\n"),
    ("LOGIN", b"a LOGIN u p\r\n"),
    ("SELECT", b"a SELECT INBOX\r\n"),
    ("EXAMINE", b"a EXAMINE INBOX\r\n"),
    ("CREATE", b"a CREATE x\r\n"),
    ("DELETE", b"a DELETE x\r\n"),
    ("RENAME", b"a RENAME x y\r\n"),
    ("SUBSCRIBE", b"a SUBSCRIBE x\r\n"),
    ("UNSUBSCRIBE", b"a UNSUBSCRIBE x\r\n"),
    ("LIST", b"a LIST \"\" *\r\n"),
    ("LSUB", b"a LSUB \"\" *\r\n"),
    ("STATUS", b"a STATUS INBOX (MESSAGES)\r\n"),
    ("APPEND", b"a APPEND INBOX {1}\r\nx\r\n"),
    ("CHECK", b"a CHECK\r\n"),
    ("CLOSE", b"a CLOSE\r\n"),
    ("UNSELECT", b"a UNSELECT\r\n"),
    ("EXPUNGE", b"a EXPUNGE\r\n"),
    ("UID EXPUNGE", b"a UID EXPUNGE 1\r\n"),
    ("SEARCH", b"a SEARCH ALL\r\n"),
    ("UID SEARCH", b"a UID SEARCH ALL\r\n"),
    ("FETCH", b"a FETCH 1 FLAGS\r\n"),
    ("UID FETCH", b"a UID FETCH 1 FLAGS\r\n"),
    ("STORE", b"a STORE 1 +FLAGS (x)\r\n"),
    ("UID STORE", b"a UID STORE 1 +FLAGS (x)\r\n"),
    ("COPY", b"a COPY 1 x\r\n"),
    ("UID COPY", b"a UID COPY 1 x\r\n"),
    ("MOVE", b"a MOVE 1 x\r\n"),
    ("UID MOVE", b"a UID MOVE 1 x\r\n"),
    ("SORT", b"a SORT (DATE) UTF-8 ALL\r\n"),
    ("UID SORT", b"a UID SORT (DATE) UTF-8 ALL\r\n"),
    ("THREAD", b"a THREAD REFERENCES UTF-8 ALL\r\n"),
    ("UID THREAD", b"a UID THREAD REFERENCES UTF-8 ALL\r\n"),
    ("IDLE", b"a IDLE\r\n"),
    ("ENABLE", b"a ENABLE UTF8=ACCEPT\r\n"),
    ("COMPRESS", b"a COMPRESS DEFLATE\r\n"),
    ("GETQUOTA", b"a GETQUOTA \"\"\r\n"),
    ("GETQUOTAROOT", b"a GETQUOTAROOT INBOX\r\n"),
    ("SETQUOTA", b"a SETQUOTA \"\" (STORAGE 1)\r\n"),
    ("ID", b"a ID NIL\r\n"),
    ("NAMESPACE", b"a NAMESPACE\r\n"),
];

/// Whether `name` (as [`crate::framing::command_name`] gives it: upper
/// case, `UID X` for UID commands) is a command the grammar knows.
pub fn is_command_name(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name) || crate::acl::is_acl_command(name)
}

/// The wire name of a mailbox (`INBOX` for the inbox, in any case).
pub fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".to_owned(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

/// The raw bytes of a LIST pattern.
pub fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    }
}

/// Matches a LIST pattern (`*` any, `%` any but the separator) against a
/// name, per RFC 3501 §6.3.8.
///
/// The pattern comes from the client, so the work must not depend on it
/// beyond its length: this runs the pattern as a set of positions (an NFA)
/// over the name, one pass, no recursion, `O(pattern × name)` steps at
/// most. Runs of wildcards are merged first (`**`, `%*` and `*%` are `*`;
/// `%%` is `%`) and a pattern with more literal bytes than the name cannot
/// match, so the pattern that takes part is at most twice the name long.
pub fn list_match(pattern: &[u8], name: &[u8], sep: u8) -> bool {
    let pat = merge_wildcards(pattern);
    let literals = pat.iter().filter(|&&b| b != b'*' && b != b'%').count();
    if literals > name.len() {
        return false;
    }
    // active[i]: the name so far can be matched by pat[..i].
    let mut active = vec![false; pat.len() + 1];
    let mut next = vec![false; pat.len() + 1];
    active[0] = true;
    close_over_wildcards(&pat, &mut active);
    for &c in name {
        next.iter_mut().for_each(|b| *b = false);
        let mut any = false;
        for (i, &p) in pat.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let (stay, advance) = match p {
                b'*' => (true, false),
                b'%' => (c != sep, false),
                lit => (false, lit == c),
            };
            if stay {
                next[i] = true;
                any = true;
            }
            if advance {
                next[i + 1] = true;
                any = true;
            }
        }
        if !any {
            return false;
        }
        close_over_wildcards(&pat, &mut next);
        std::mem::swap(&mut active, &mut next);
    }
    active[pat.len()]
}

/// A wildcard matches the empty string: a position before one also stands
/// after it.
fn close_over_wildcards(pat: &[u8], set: &mut [bool]) {
    for i in 0..pat.len() {
        if set[i] && matches!(pat[i], b'*' | b'%') {
            set[i + 1] = true;
        }
    }
}

/// Merges each run of wildcards into one: `*` when the run holds a `*`,
/// else `%` (two `%` match what one does).
fn merge_wildcards(pattern: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(pattern.len().min(1024));
    for &b in pattern {
        match (out.last().copied(), b) {
            (Some(b'*'), b'*' | b'%') => {}
            (Some(b'%'), b'*') => {
                if let Some(last) = out.last_mut() {
                    *last = b'*';
                }
            }
            (Some(b'%'), b'%') => {}
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain recursive definition of RFC 3501 §6.3.8, for comparison
    /// on small inputs only.
    fn reference(pattern: &[u8], name: &[u8], sep: u8) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|i| reference(rest, &name[i..], sep)),
            Some((b'%', rest)) => {
                let stop = name.iter().position(|&b| b == sep).unwrap_or(name.len());
                (0..=stop).any(|i| reference(rest, &name[i..], sep))
            }
            Some((&c, rest)) => name.first() == Some(&c) && reference(rest, &name[1..], sep),
        }
    }

    proptest! {
        #[test]
        fn list_match_agrees_with_the_definition(
            pattern in "[ab.*%]{0,10}",
            name in "[ab.]{0,10}",
        ) {
            prop_assert_eq!(
                list_match(pattern.as_bytes(), name.as_bytes(), b'.'),
                reference(pattern.as_bytes(), name.as_bytes(), b'.')
            );
        }
    }

    #[test]
    fn command_table_matches_the_parser() {
        for (name, example) in COMMANDS {
            let cmd = parse(example).unwrap_or_else(|_| panic!("{name} example"));
            let uid = matches!(
                cmd.body,
                CommandBody::Search { uid: true, .. }
                    | CommandBody::Fetch { uid: true, .. }
                    | CommandBody::Store { uid: true, .. }
                    | CommandBody::Copy { uid: true, .. }
                    | CommandBody::Move { uid: true, .. }
                    | CommandBody::Sort { uid: true, .. }
                    | CommandBody::Thread { uid: true, .. }
                    | CommandBody::ExpungeUid { .. }
            );
            let parsed = if uid {
                format!("UID {}", cmd.body.name())
            } else {
                cmd.body.name().to_owned()
            };
            assert_eq!(&parsed, name);
            assert_eq!(
                crate::framing::command_name(example).as_deref(),
                Some(*name)
            );
        }
    }

    #[test]
    fn hostile_patterns_are_cheap() {
        // 30,000 wildcards overflowed the old recursive matcher's stack;
        // 20 stars and a miss backtracked for seconds. Both are one pass now.
        let stars = vec![b'*'; 30_000];
        assert!(list_match(&stars, b"INBOX.a.b", b'.'));
        let mut p = vec![b'*'; 20];
        p.push(b'x');
        let name = vec![b'a'; 200];
        assert!(!list_match(&p, &name, b'.'));
        let mut p: Vec<u8> = b"*a".repeat(15_000);
        p.push(b'!');
        assert!(!list_match(&p, &name, b'.'));
        let p: Vec<u8> = b"%*".repeat(15_000);
        assert!(list_match(&p, &name, b'.'));
    }
    use imap_codec::imap_types::command::CommandBody;

    #[test]
    fn parses_common_commands() {
        let c = parse(b"a1 LOGIN alice secret\r\n").unwrap();
        assert_eq!(c.tag.as_ref(), "a1");
        assert!(matches!(c.body, CommandBody::Login { .. }));
        assert!(parse(b"a1 FROB\r\n").is_err());
        let c = parse(b"a2 LIST \"\" ~foo\r\n").unwrap();
        assert!(matches!(c.body, CommandBody::List { .. }));
        let c = parse(b"a3 select inbox\r\n").unwrap();
        let CommandBody::Select { mailbox, .. } = c.body else {
            panic!()
        };
        assert_eq!(mailbox_name(&mailbox), "INBOX");
    }

    #[test]
    fn list_patterns() {
        assert!(list_match(b"*", b"INBOX.a.b", b'.'));
        assert!(list_match(b"INBOX.%", b"INBOX.a", b'.'));
        assert!(!list_match(b"INBOX.%", b"INBOX.a.b", b'.'));
        assert!(list_match(b"%", b"INBOX", b'.'));
        assert!(!list_match(b"INBOX.%", b"INBOX", b'.'));
        assert!(list_match(b"IN*X.%b", b"INBOX.ab", b'.'));
        assert!(!list_match(b"IN*X.%b", b"INBOX.a.b", b'.'));
        assert!(list_match(b"%.%", b"INBOX.a", b'.'));
        assert!(list_match(b"*%*%", b"", b'.'));
        assert!(!list_match(b"x", b"", b'.'));
        assert!(list_match(b"", b"", b'.'));
    }
}
