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
pub fn list_match(pattern: &[u8], name: &[u8], sep: u8) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| list_match(rest, &name[i..], sep)),
        Some((b'%', rest)) => {
            let stop = name.iter().position(|&b| b == sep).unwrap_or(name.len());
            (0..=stop).any(|i| list_match(rest, &name[i..], sep))
        }
        Some((&c, rest)) => name.first() == Some(&c) && list_match(rest, &name[1..], sep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    }
}
