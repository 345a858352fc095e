//! The ACL commands (RFC 4314 §3), which imap-codec's grammar does not
//! have: SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS. Their arguments
//! are only astrings, read here from [`crate::lexer`]'s tokens (atoms,
//! quoted strings, literals) in one pass.

use crate::lexer::{tokens, TokenKind};

/// The command names this module parses, each with a valid example (the
/// engine answers a malformed one "invalid arguments", not "unknown").
pub const COMMANDS: &[(&str, &[u8])] = &[
    ("SETACL", b"a SETACL INBOX bob lr\r\n"),
    ("DELETEACL", b"a DELETEACL INBOX bob\r\n"),
    ("GETACL", b"a GETACL INBOX\r\n"),
    ("LISTRIGHTS", b"a LISTRIGHTS INBOX bob\r\n"),
    ("MYRIGHTS", b"a MYRIGHTS INBOX\r\n"),
];

/// An ACL command's arguments (the mailbox as the client spelled it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclCommand {
    /// `SETACL mailbox identifier rights` (`+`/`-` before the rights add
    /// or remove).
    SetAcl {
        /// The mailbox.
        mailbox: String,
        /// The identifier (`-` first for a negative entry).
        identifier: String,
        /// The rights, as sent.
        rights: String,
    },
    /// `DELETEACL mailbox identifier`.
    DeleteAcl {
        /// The mailbox.
        mailbox: String,
        /// The identifier.
        identifier: String,
    },
    /// `GETACL mailbox`.
    GetAcl {
        /// The mailbox.
        mailbox: String,
    },
    /// `LISTRIGHTS mailbox identifier`.
    ListRights {
        /// The mailbox.
        mailbox: String,
        /// The identifier.
        identifier: String,
    },
    /// `MYRIGHTS mailbox`.
    MyRights {
        /// The mailbox.
        mailbox: String,
    },
}

impl AclCommand {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            AclCommand::SetAcl { .. } => "SETACL",
            AclCommand::DeleteAcl { .. } => "DELETEACL",
            AclCommand::GetAcl { .. } => "GETACL",
            AclCommand::ListRights { .. } => "LISTRIGHTS",
            AclCommand::MyRights { .. } => "MYRIGHTS",
        }
    }
}

/// Whether `name` (upper case) is one of the ACL commands.
pub fn is_acl_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

/// Parses a whole ACL command (tag included); `None` when it is not one or
/// its arguments are malformed (wrong count, an astring that is not one,
/// bytes that are not UTF-8).
pub fn parse(bytes: &[u8]) -> Option<AclCommand> {
    let body = bytes.strip_suffix(b"\r\n")?;
    let toks = tokens(body);
    let name = toks.get(1).filter(|t| t.kind == TokenKind::Atom)?;
    let name = std::str::from_utf8(&body[name.range.clone()])
        .ok()?
        .to_ascii_uppercase();
    // One space between words, nothing before the tag, nothing after.
    let mut args = Vec::with_capacity(3);
    for (i, t) in toks.iter().enumerate().skip(2) {
        let prev_end = toks[i - 1].range.end;
        if t.range.start != prev_end + 1 || body.get(prev_end) != Some(&b' ') {
            return None;
        }
        args.push(astring(&body[t.range.clone()], t.kind)?);
        if args.len() > 3 {
            return None;
        }
    }
    let first_gap = toks.get(1)?.range.start;
    if toks.first()?.range.start != 0 || first_gap != toks[0].range.end + 1 {
        return None;
    }
    if toks.last()?.range.end != body.len() {
        return None;
    }
    let mut a = args.into_iter();
    let cmd = match (name.as_str(), a.len()) {
        ("SETACL", 3) => AclCommand::SetAcl {
            mailbox: a.next()?,
            identifier: a.next()?,
            rights: a.next()?,
        },
        ("DELETEACL", 2) => AclCommand::DeleteAcl {
            mailbox: a.next()?,
            identifier: a.next()?,
        },
        ("GETACL", 1) => AclCommand::GetAcl { mailbox: a.next()? },
        ("LISTRIGHTS", 2) => AclCommand::ListRights {
            mailbox: a.next()?,
            identifier: a.next()?,
        },
        ("MYRIGHTS", 1) => AclCommand::MyRights { mailbox: a.next()? },
        _ => return None,
    };
    Some(cmd)
}

/// The value of an astring token (RFC 3501 `astring`): an atom of
/// ASTRING-CHARs, a quoted string (`\"` and `\\` the only escapes, no
/// line ends), or a literal's data; UTF-8 only.
fn astring(tok: &[u8], kind: TokenKind) -> Option<String> {
    let bytes = match kind {
        TokenKind::Atom => {
            let ok = tok
                .iter()
                .all(|&b| b > 0x20 && b < 0x7f && !b"(){%*\"\\".contains(&b));
            ok.then(|| tok.to_vec())?
        }
        TokenKind::Quoted => {
            let inner = tok.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            while let Some(&b) = it.next() {
                match b {
                    b'\\' => match it.next() {
                        Some(&e @ (b'"' | b'\\')) => out.push(e),
                        _ => return None,
                    },
                    b'\r' | b'\n' | 0 => return None,
                    _ => out.push(b),
                }
            }
            out
        }
        TokenKind::Literal => {
            let lf = tok.iter().position(|&b| b == b'\n')?;
            let data = &tok[lf + 1..];
            if data.contains(&0) {
                return None;
            }
            data.to_vec()
        }
        TokenKind::Open | TokenKind::Close => return None,
    };
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_parses_as_its_command() {
        for (name, example) in COMMANDS {
            let cmd = parse(example).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(cmd.name(), *name);
            assert!(is_acl_command(name));
        }
    }

    #[test]
    fn astrings_in_every_form() {
        assert_eq!(
            parse(b"a SETACL \"INBOX.My Stuff\" {3}\r\nbob -lr\r\n"),
            Some(AclCommand::SetAcl {
                mailbox: "INBOX.My Stuff".into(),
                identifier: "bob".into(),
                rights: "-lr".into()
            })
        );
        assert_eq!(
            parse(b"a myrights \"a\\\"b\"\r\n"),
            Some(AclCommand::MyRights {
                mailbox: "a\"b".into()
            })
        );
        assert_eq!(
            parse(b"a GETACL \"\"\r\n"),
            Some(AclCommand::GetAcl { mailbox: "".into() })
        );
    }

    #[test]
    fn malformed_arguments_are_refused() {
        for bad in [
            &b"a GETACL\r\n"[..],
            b"a GETACL INBOX extra\r\n",
            b"a SETACL INBOX bob\r\n",
            b"a SETACL INBOX bob lr x\r\n",
            b"a GETACL  INBOX\r\n",
            b"a GETACL INBOX \r\n",
            b"a GETACL (INBOX)\r\n",
            b"a GETACL IN*BOX\r\n",
            b"a GETACL \"a\\xb\"\r\n",
            b"a GETACL \"\xff\"\r\n",
            b"a GETACL INBOX",
            b"a NOOP\r\n",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
