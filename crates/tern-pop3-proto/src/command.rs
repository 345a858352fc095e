//! POP3 commands as a type, and which phase takes which.

/// A parsed command. Message numbers are kept as sent: each command checks
/// and answers them itself ("no such message" is not a syntax error).
#[derive(PartialEq, Eq)]
pub enum Command {
    /// USER name (the rest of the line).
    User(Option<String>),
    /// PASS password: everything after `PASS `, spaces included.
    Pass(Vec<u8>),
    /// AUTH [mechanism [initial-response]] (RFC 5034).
    Auth {
        /// The mechanism; none asks for the list.
        mechanism: Option<String>,
        /// The initial response, base64.
        initial: Option<String>,
    },
    /// STLS (RFC 2595).
    Stls,
    /// UTF8 (RFC 6856).
    Utf8,
    /// CAPA (RFC 2449).
    Capa,
    /// QUIT.
    Quit,
    /// NOOP.
    Noop,
    /// STAT.
    Stat,
    /// LIST [msg].
    List(Option<String>),
    /// UIDL [msg].
    Uidl(Option<String>),
    /// DELE msg.
    Dele(Option<String>),
    /// RSET.
    Rset,
    /// RETR msg.
    Retr(Option<String>),
    /// TOP msg n.
    Top(Option<String>, Option<String>),
    /// XCLIENT key=value... (Dovecot's, from a trusted proxy before the
    /// login: whose connection this is). At most 16 pairs are kept.
    Xclient(Vec<(String, String)>),
    /// Anything else (its name, upper-cased, at most 40 characters).
    Unknown(String),
}

impl std::fmt::Debug for Command {
    /// The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Pass(_) => f.write_str("Pass(<redacted>)"),
            Command::Auth { mechanism, .. } => {
                write!(f, "Auth {{ mechanism: {mechanism:?}, .. }}")
            }
            Command::User(u) => write!(f, "User({u:?})"),
            Command::List(a) => write!(f, "List({a:?})"),
            Command::Uidl(a) => write!(f, "Uidl({a:?})"),
            Command::Dele(a) => write!(f, "Dele({a:?})"),
            Command::Retr(a) => write!(f, "Retr({a:?})"),
            Command::Top(a, b) => write!(f, "Top({a:?}, {b:?})"),
            Command::Xclient(kv) => write!(f, "Xclient({kv:?})"),
            Command::Unknown(n) => write!(f, "Unknown({n:?})"),
            Command::Stls => f.write_str("Stls"),
            Command::Utf8 => f.write_str("Utf8"),
            Command::Capa => f.write_str("Capa"),
            Command::Quit => f.write_str("Quit"),
            Command::Noop => f.write_str("Noop"),
            Command::Stat => f.write_str("Stat"),
            Command::Rset => f.write_str("Rset"),
        }
    }
}

/// Parses one command line (without its line end). Keywords are
/// case-insensitive (RFC 1939 §3); arguments are separated by one or more
/// spaces.
pub fn parse(line: &[u8]) -> Command {
    let text = String::from_utf8_lossy(line);
    let (name, rest) = match text.split_once(' ') {
        Some((n, r)) => (n.to_ascii_uppercase(), Some(r)),
        None => (text.to_ascii_uppercase(), None),
    };
    let mut args = rest
        .into_iter()
        .flat_map(|r| r.split(' '))
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let (a1, a2) = (args.next(), args.next());
    match name.as_str() {
        "USER" => Command::User(rest.map(str::to_owned)),
        "PASS" => Command::Pass(line.get(5..).unwrap_or_default().to_vec()),
        "AUTH" => Command::Auth {
            mechanism: a1,
            initial: a2,
        },
        "STLS" => Command::Stls,
        "UTF8" => Command::Utf8,
        "CAPA" => Command::Capa,
        "QUIT" => Command::Quit,
        "NOOP" => Command::Noop,
        "STAT" => Command::Stat,
        "LIST" => Command::List(a1),
        "UIDL" => Command::Uidl(a1),
        "DELE" => Command::Dele(a1),
        "RSET" => Command::Rset,
        "RETR" => Command::Retr(a1),
        "TOP" => Command::Top(a1, a2),
        "XCLIENT" => Command::Xclient(
            rest.into_iter()
                .flat_map(|r| r.split(' '))
                .filter_map(|kv| kv.split_once('='))
                .take(16)
                .map(|(k, v)| (k.to_ascii_uppercase(), v.to_owned()))
                .collect(),
        ),
        _ => Command::Unknown(name.chars().take(40).collect()),
    }
}

/// Where a session is (RFC 1939 §3). UPDATE is the QUIT of TRANSACTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before login.
    Authorization,
    /// Logged in, the maildrop open.
    Transaction,
}

/// Whether a phase takes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Run it.
    Yes,
    /// A TRANSACTION command before login: `-ERR Log in first.`
    LogInFirst,
    /// A login command after login: `-ERR Already logged in.`
    AlreadyLoggedIn,
    /// No such command: `-ERR Unknown command.`
    Unknown,
}

/// Which commands each phase takes, decided from the command's type (no
/// list of names to drift from the parser).
pub fn allowed(cmd: &Command, phase: Phase) -> Allowed {
    use Command as C;
    let logs_in = matches!(
        cmd,
        C::User(_) | C::Pass(_) | C::Auth { .. } | C::Stls | C::Utf8 | C::Xclient(_)
    );
    match (cmd, phase) {
        (C::Unknown(_), _) => Allowed::Unknown,
        (C::Capa | C::Quit, _) => Allowed::Yes,
        (_, Phase::Authorization) if logs_in => Allowed::Yes,
        (_, Phase::Transaction) if logs_in => Allowed::AlreadyLoggedIn,
        (_, Phase::Authorization) => Allowed::LogInFirst,
        (_, Phase::Transaction) => Allowed::Yes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(b"user alice"), Command::User(Some("alice".into())));
        assert_eq!(
            parse(b"PASS pass word "),
            Command::Pass(b"pass word ".to_vec())
        );
        assert_eq!(
            parse(b"TOP 1  10"),
            Command::Top(Some("1".into()), Some("10".into()))
        );
        assert_eq!(parse(b"list"), Command::List(None));
        assert_eq!(
            parse(b"XCLIENT addr=192.0.2.7 PORT=4242 junk"),
            Command::Xclient(vec![
                ("ADDR".into(), "192.0.2.7".into()),
                ("PORT".into(), "4242".into())
            ])
        );
        assert_eq!(
            parse(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFsaWNlAHNlY3JldA==".into())
            }
        );
        assert_eq!(parse(b"frob x"), Command::Unknown("FROB".into()));
        assert_eq!(format!("{:?}", parse(b"PASS secret")), "Pass(<redacted>)");
    }

    #[test]
    fn phases() {
        use Allowed as A;
        use Phase::{Authorization as Auth, Transaction as Trans};
        for (line, phase, want) in [
            (&b"STAT"[..], Auth, A::LogInFirst),
            (b"NOOP", Auth, A::LogInFirst),
            (b"USER a", Trans, A::AlreadyLoggedIn),
            (b"STLS", Trans, A::AlreadyLoggedIn),
            (b"CAPA", Trans, A::Yes),
            (b"QUIT", Auth, A::Yes),
            (b"RETR 1", Trans, A::Yes),
            (b"XYZZY", Trans, A::Unknown),
        ] {
            assert_eq!(allowed(&parse(line), phase), want, "{line:?} in {phase:?}");
        }
    }

    proptest! {
        /// Any line parses to something, and the phase rule is total.
        #[test]
        fn any_line(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let c = parse(&line);
            let _ = allowed(&c, Phase::Authorization);
            let _ = allowed(&c, Phase::Transaction);
        }
    }
}
