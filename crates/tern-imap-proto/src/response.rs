//! Response codes (RFC 3501 §7.1, RFC 5530 and the extensions tern offers)
//! as a type, so that a handler can only name a code that exists and the
//! wire form is written in one place.

use std::fmt;

/// A response code: the bracketed part of a status response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// RFC 3501: text the user must see.
    Alert,
    /// RFC 3501: the charset is not supported; the ones that are.
    BadCharset(Vec<&'static str>),
    /// RFC 3501: the capabilities, after a login or in the greeting.
    Capability(String),
    /// RFC 3501: a message's header could not be parsed.
    Parse,
    /// RFC 3501: the mailbox is selected read-only.
    ReadOnly,
    /// RFC 3501: the mailbox is selected read-write.
    ReadWrite,
    /// RFC 3501: the target mailbox does not exist; CREATE it first.
    TryCreate,
    /// RFC 4315: where APPEND put the message.
    AppendUid {
        /// UIDVALIDITY of the target.
        uidvalidity: u32,
        /// The new message's UID.
        uid: u32,
    },
    /// RFC 4315: where COPY or MOVE put the messages.
    CopyUid {
        /// UIDVALIDITY of the target.
        uidvalidity: u32,
        /// The source UIDs, as a sequence set.
        source: String,
        /// The new UIDs, in the same order, as a sequence set.
        dest: String,
    },
    /// RFC 3516: a content transfer encoding tern cannot decode.
    UnknownCte,
    /// RFC 4469 / RFC 7889: the message is larger than the server takes.
    TooBig,
    /// RFC 5530: temporarily unavailable.
    Unavailable,
    /// RFC 5530: wrong user name or password.
    AuthenticationFailed,
    /// RFC 5530: authenticated, but not allowed to act as that user.
    AuthorizationFailed,
    /// RFC 5530: the credentials have expired.
    Expired,
    /// RFC 5530: the operation needs a protected connection.
    PrivacyRequired,
    /// RFC 5530: the user should contact the administrator.
    ContactAdmin,
    /// RFC 5530: not permitted by the access control.
    NoPerm,
    /// RFC 5530: busy; try again later.
    InUse,
    /// RFC 5530: some of the messages were expunged meanwhile.
    ExpungeIssued,
    /// RFC 5530: the server found damaged data.
    Corruption,
    /// RFC 5530: a server bug (see the server log).
    ServerBug,
    /// RFC 5530: the client did something wrong.
    ClientBug,
    /// RFC 5530: the operation can never succeed.
    Cannot,
    /// RFC 5530: a limit was reached.
    Limit,
    /// RFC 5530: over quota.
    OverQuota,
    /// RFC 5530: the mailbox exists already.
    AlreadyExists,
    /// RFC 5530: the mailbox does not exist.
    Nonexistent,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Code::Capability(caps) => return write!(f, "CAPABILITY {caps}"),
            Code::BadCharset(list) => return write!(f, "BADCHARSET ({})", list.join(" ")),
            Code::AppendUid { uidvalidity, uid } => {
                return write!(f, "APPENDUID {uidvalidity} {uid}")
            }
            Code::CopyUid {
                uidvalidity,
                source,
                dest,
            } => return write!(f, "COPYUID {uidvalidity} {source} {dest}"),
            Code::Alert => "ALERT",
            Code::Parse => "PARSE",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::TryCreate => "TRYCREATE",
            Code::UnknownCte => "UNKNOWN-CTE",
            Code::TooBig => "TOOBIG",
            Code::Unavailable => "UNAVAILABLE",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Code::Expired => "EXPIRED",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ContactAdmin => "CONTACTADMIN",
            Code::NoPerm => "NOPERM",
            Code::InUse => "INUSE",
            Code::ExpungeIssued => "EXPUNGEISSUED",
            Code::Corruption => "CORRUPTION",
            Code::ServerBug => "SERVERBUG",
            Code::ClientBug => "CLIENTBUG",
            Code::Cannot => "CANNOT",
            Code::Limit => "LIMIT",
            Code::OverQuota => "OVERQUOTA",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::Nonexistent => "NONEXISTENT",
        };
        f.write_str(word)
    }
}

/// Tagged response status (RFC 3501 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The command succeeded.
    Ok,
    /// The command failed.
    No,
    /// The command was not understood or not allowed.
    Bad,
}

/// A command's final answer: status, optional RFC 5530 code, text.
#[derive(Debug, Clone)]
pub struct Reply {
    /// OK, NO or BAD.
    pub status: Status,
    /// The bracketed response code.
    pub code: Option<Code>,
    /// The human-readable text.
    pub text: String,
}

impl Reply {
    /// OK with a text.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    /// OK with a code and a text.
    pub fn ok_code(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            code: Some(code),
            text: text.into(),
        }
    }
    /// NO, with or without a code.
    pub fn no(code: Option<Code>, text: impl Into<String>) -> Reply {
        Reply {
            status: Status::No,
            code,
            text: text.into(),
        }
    }
    /// BAD with a text.
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
    /// BAD with a code and a text.
    pub fn bad_code(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Bad,
            code: Some(code),
            text: text.into(),
        }
    }

    /// Appends the answer as the tagged line of `tag` (RFC 3501 §7.1).
    pub fn write_tagged(&self, tag: &str, out: &mut Vec<u8>) {
        let status = match self.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        };
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.as_bytes());
        out.push(b' ');
        if let Some(c) = &self.code {
            out.push(b'[');
            out.extend_from_slice(c.to_string().as_bytes());
            out.extend_from_slice(b"] ");
        }
        write_text(&self.text, out);
        out.extend_from_slice(b"\r\n");
    }
}

/// The human-readable text of a response as it may go on the wire: a
/// text may quote what the client sent (an option's name, a command's, a
/// mailbox name), so a control byte (a CR or LF that would end the line
/// early) is sent as `?`, and so is every byte past 7 bits (RFC 3501's
/// TEXT-CHAR is 7-bit; a client that did not enable UTF-8 may refuse the
/// line); a text that would end the line as a literal announcement (`{3}`,
/// which a client would wait on) gets a `.` after it.
fn write_text(text: &str, out: &mut Vec<u8>) {
    out.extend(
        text.bytes()
            .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' }),
    );
    if text.ends_with('}') {
        out.push(b'.');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(Code::Nonexistent.to_string(), "NONEXISTENT");
        assert_eq!(Code::ReadOnly.to_string(), "READ-ONLY");
        assert_eq!(
            Code::AppendUid {
                uidvalidity: 7,
                uid: 3
            }
            .to_string(),
            "APPENDUID 7 3"
        );
        assert_eq!(
            Code::CopyUid {
                uidvalidity: 7,
                source: "1:2".into(),
                dest: "5:6".into()
            }
            .to_string(),
            "COPYUID 7 1:2 5:6"
        );
        let mut out = Vec::new();
        Reply::no(Some(Code::Nonexistent), "No such mailbox").write_tagged("a1", &mut out);
        Reply::ok("done").write_tagged("a2", &mut out);
        assert_eq!(
            out,
            b"a1 NO [NONEXISTENT] No such mailbox\r\na2 OK done\r\n"
        );
        // What a text quotes from the client goes out as 7-bit text on one
        // line that is no literal announcement.
        let mut out = Vec::new();
        Reply::bad("Unknown mailbox Entw\u{fc}rfe\r\nx {3}").write_tagged("a3", &mut out);
        assert_eq!(out, b"a3 BAD Unknown mailbox Entw??rfe??x {3}.\r\n");
    }
}
