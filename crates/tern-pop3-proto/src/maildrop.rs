//! The TRANSACTION state (RFC 1939 §5) as a pure state machine: the
//! messages fixed at login, which of them are marked deleted, and the
//! answer to each command. The server runs what an answer asks for (a
//! message to send, the deletions of UPDATE) against the Maildir.

use crate::Command;

/// What the engine needs of the messages fixed at login (the server keeps
/// them, shared by sessions that logged in to the same state).
pub trait Listed {
    /// How many there are.
    fn count(&self) -> usize;
    /// The size of message `i` (0-based) as sent (CRLF line ends).
    fn size(&self, i: usize) -> u64;
    /// Its unique-id listing (RFC 1939 §7 UIDL).
    fn uidl(&self, i: usize) -> &str;
}

/// The maildrop of one session.
#[derive(Debug, Clone)]
pub struct Maildrop<M> {
    messages: M,
    deleted: Vec<bool>,
}

/// What a TRANSACTION command comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this answer (one line, or a multi-line answer with its `.`),
    /// without its last CRLF.
    Reply(String),
    /// Send message `index` (0-based): whole for RETR, its header and `top`
    /// body lines for TOP, dot-stuffed ([`crate::stuff`]).
    Send {
        /// Which message.
        index: usize,
        /// TOP's line count.
        top: Option<u64>,
    },
    /// Not a TRANSACTION command of the maildrop's (CAPA, QUIT, UTF8...).
    NotMine,
}

/// A message number argument: digits only, 1 to the count, not deleted.
fn message_index(deleted: &[bool], arg: Option<&str>) -> Result<usize, &'static str> {
    let Some(arg) = arg else {
        return Err("-ERR Message number required.");
    };
    if arg.is_empty() || arg.len() > 10 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err("-ERR Invalid message number.");
    }
    let n: usize = arg.parse().map_err(|_| "-ERR Invalid message number.")?;
    if n == 0 || n > deleted.len() {
        return Err("-ERR There is no such message.");
    }
    if deleted[n - 1] {
        return Err("-ERR Message is deleted.");
    }
    Ok(n - 1)
}

impl<M: Listed> Maildrop<M> {
    /// The maildrop of `messages`, none deleted.
    pub fn new(messages: M) -> Maildrop<M> {
        let deleted = vec![false; messages.count()];
        Maildrop { messages, deleted }
    }

    /// The messages, deleted or not.
    pub fn messages(&self) -> &M {
        &self.messages
    }

    /// The messages marked deleted (0-based): what UPDATE removes.
    pub fn marked(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.deleted.len()).filter(|&i| self.deleted[i])
    }

    /// The answer to `cmd`.
    pub fn handle(&mut self, cmd: &Command) -> Action {
        use Command as C;
        match cmd {
            C::Noop => Action::Reply("+OK".to_owned()),
            C::Stat => {
                let (mut n, mut size) = (0u64, 0u64);
                for i in (0..self.deleted.len()).filter(|&i| !self.deleted[i]) {
                    n += 1;
                    size += self.messages.size(i);
                }
                Action::Reply(format!("+OK {n} {size}"))
            }
            C::List(a) => self.listing(a.as_deref(), |m, i| m.size(i).to_string()),
            C::Uidl(a) => self.listing(a.as_deref(), |m, i| m.uidl(i).to_owned()),
            C::Dele(a) => Action::Reply(match message_index(&self.deleted, a.as_deref()) {
                Ok(i) => {
                    self.deleted[i] = true;
                    "+OK Marked to be deleted.".to_owned()
                }
                Err(e) => e.to_owned(),
            }),
            C::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let n = self.deleted.len();
                let size: u64 = (0..n).map(|i| self.messages.size(i)).sum();
                Action::Reply(format!("+OK {n} messages ({size} octets)."))
            }
            C::Retr(a) => match message_index(&self.deleted, a.as_deref()) {
                Ok(index) => Action::Send { index, top: None },
                Err(e) => Action::Reply(e.to_owned()),
            },
            C::Top(a, n) => {
                let lines = match n.as_deref().map(|n| (n, n.parse::<u64>())) {
                    Some((n, Ok(v))) if n.bytes().all(|b| b.is_ascii_digit()) => v,
                    _ => {
                        return Action::Reply(
                            "-ERR TOP needs a message number and a line count.".to_owned(),
                        )
                    }
                };
                match message_index(&self.deleted, a.as_deref()) {
                    Ok(index) => Action::Send {
                        index,
                        top: Some(lines),
                    },
                    Err(e) => Action::Reply(e.to_owned()),
                }
            }
            _ => Action::NotMine,
        }
    }

    /// LIST and UIDL: one message, or all that are not deleted.
    fn listing(&self, arg: Option<&str>, item: impl Fn(&M, usize) -> String) -> Action {
        if arg.is_some() {
            return Action::Reply(match message_index(&self.deleted, arg) {
                Ok(i) => format!("+OK {} {}", i + 1, item(&self.messages, i)),
                Err(e) => e.to_owned(),
            });
        }
        let mut out = String::with_capacity(16 + self.deleted.len() * 24);
        out.push_str("+OK\r\n");
        for (i, del) in self.deleted.iter().enumerate() {
            if !del {
                out.push_str(&format!("{} {}\r\n", i + 1, item(&self.messages, i)));
            }
        }
        out.push('.');
        Action::Reply(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M(Vec<(u64, &'static str)>);
    impl Listed for M {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn size(&self, i: usize) -> u64 {
            self.0[i].0
        }
        fn uidl(&self, i: usize) -> &str {
            self.0[i].1
        }
    }

    fn drop3() -> Maildrop<M> {
        Maildrop::new(M(vec![(120, "a"), (200, "b"), (5, "c")]))
    }

    fn reply(d: &mut Maildrop<M>, line: &str) -> String {
        match d.handle(&crate::parse(line.as_bytes())) {
            Action::Reply(r) => r,
            other => format!("{other:?}"),
        }
    }

    /// RFC 1939's examples, in order.
    #[test]
    fn the_rfc_1939_transaction_examples() {
        let mut d = drop3();
        assert_eq!(reply(&mut d, "STAT"), "+OK 3 325");
        assert_eq!(reply(&mut d, "LIST"), "+OK\r\n1 120\r\n2 200\r\n3 5\r\n.");
        assert_eq!(reply(&mut d, "LIST 2"), "+OK 2 200");
        assert_eq!(reply(&mut d, "LIST 4"), "-ERR There is no such message.");
        assert_eq!(
            d.handle(&crate::parse(b"RETR 1")),
            Action::Send {
                index: 0,
                top: None
            }
        );
        assert_eq!(reply(&mut d, "DELE 1"), "+OK Marked to be deleted.");
        assert_eq!(reply(&mut d, "DELE 1"), "-ERR Message is deleted.");
        assert_eq!(reply(&mut d, "RETR 1"), "-ERR Message is deleted.");
        assert_eq!(reply(&mut d, "STAT"), "+OK 2 205");
        assert_eq!(reply(&mut d, "UIDL"), "+OK\r\n2 b\r\n3 c\r\n.");
        assert_eq!(reply(&mut d, "UIDL 3"), "+OK 3 c");
        assert_eq!(reply(&mut d, "NOOP"), "+OK");
        assert_eq!(
            d.handle(&crate::parse(b"TOP 2 10")),
            Action::Send {
                index: 1,
                top: Some(10)
            }
        );
        assert_eq!(
            reply(&mut d, "TOP 2 -1"),
            "-ERR TOP needs a message number and a line count."
        );
        assert_eq!(d.marked().collect::<Vec<_>>(), [0]);
        assert_eq!(reply(&mut d, "RSET"), "+OK 3 messages (325 octets).");
        assert_eq!(d.marked().count(), 0);
        assert_eq!(d.handle(&crate::parse(b"QUIT")), Action::NotMine);
    }

    #[test]
    fn message_numbers_are_checked() {
        let mut d = drop3();
        for bad in ["LIST 0", "LIST x", "LIST 1x", "DELE 99999999999", "RETR -1"] {
            assert!(reply(&mut d, bad).starts_with("-ERR"), "{bad}");
        }
        assert_eq!(reply(&mut d, "DELE"), "-ERR Message number required.");
        assert_eq!(d.marked().count(), 0);
    }
}
