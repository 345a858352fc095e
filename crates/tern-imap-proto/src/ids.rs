//! Message sequence numbers and UIDs as types of their own (RFC 3501
//! §2.3.1): both are `u32` on the wire, and mistaking one for the other,
//! or a 1-based sequence number for a 0-based position, is the classic
//! IMAP server bug. What resolves a set or names a message for the client
//! says which it is.

use std::fmt;

/// A message's unique identifier within its mailbox's UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub u32);

/// A message sequence number: 1 for the first message of the mailbox as
/// the client knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u32);

impl Seq {
    /// The number of the message at 0-based position `index`; `None` past
    /// what a sequence number can hold.
    pub fn from_index(index: usize) -> Option<Seq> {
        u32::try_from(index).ok()?.checked_add(1).map(Seq)
    }

    /// The number of the message at 0-based position `index` of a
    /// mailbox, which holds fewer than 2^32 messages (a position past that
    /// is given the last number).
    pub fn at(index: usize) -> Seq {
        Seq(u32::try_from(index)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1))
    }

    /// The number `n` as sent; `None` for 0, which names no message.
    pub fn new(n: u32) -> Option<Seq> {
        (n != 0).then_some(Seq(n))
    }

    /// Its 0-based position.
    pub fn index(self) -> usize {
        self.0 as usize - 1
    }

    /// The number as sent.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_numbers_differ_by_one_and_zero_is_none() {
        let s = Seq::from_index(0).unwrap();
        assert_eq!((s.get(), s.index(), s.to_string()), (1, 0, "1".to_owned()));
        assert_eq!(Seq::new(0), None);
        assert_eq!(Seq::new(7).map(Seq::index), Some(6));
        assert_eq!(Seq::from_index(u32::MAX as usize), None);
        assert_eq!(Seq::at(4).get(), 5);
        assert_eq!(Seq::at(usize::MAX).get(), u32::MAX);
    }
}
