//! Message flags as Maildir keeps them in the `:2,` suffix of a file name.
//!
//! The letters are those of the Maildir specification, which Courier-IMAP,
//! Dovecot, mutt and maildrop all share: `D` draft, `F` flagged, `P` passed,
//! `R` replied (IMAP `\Answered`), `S` seen, `T` trashed (IMAP `\Deleted`).
//! Letters are kept in ASCII order, as the specification requires; letters we
//! do not know (Dovecot's lower-case keyword letters, say) are preserved.

/// One IMAP system flag that Maildir stores in the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Answered`, Maildir `R`.
    Answered,
    /// `\Deleted`, Maildir `T`.
    Deleted,
    /// `\Draft`, Maildir `D`.
    Draft,
    /// `\Flagged`, Maildir `F`.
    Flagged,
    /// `\Seen`, Maildir `S`.
    Seen,
}

impl Flag {
    /// Every system flag, in the order IMAP responses list them.
    pub const ALL: [Flag; 5] = [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
    ];

    /// The Maildir letter of this flag.
    pub fn letter(self) -> u8 {
        match self {
            Flag::Answered => b'R',
            Flag::Deleted => b'T',
            Flag::Draft => b'D',
            Flag::Flagged => b'F',
            Flag::Seen => b'S',
        }
    }

    /// The IMAP name of this flag.
    pub fn imap_name(self) -> &'static str {
        match self {
            Flag::Answered => "\\Answered",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Flagged => "\\Flagged",
            Flag::Seen => "\\Seen",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Flag::Answered => 1,
            Flag::Deleted => 2,
            Flag::Draft => 4,
            Flag::Flagged => 8,
            Flag::Seen => 16,
        }
    }

    fn from_letter(c: u8) -> Option<Flag> {
        Some(match c {
            b'R' => Flag::Answered,
            b'T' => Flag::Deleted,
            b'D' => Flag::Draft,
            b'F' => Flag::Flagged,
            b'S' => Flag::Seen,
            _ => return None,
        })
    }
}

/// The set of system flags of one message, plus the info letters we do not
/// interpret (kept so that a rename never drops another program's letters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    bits: u8,
    /// Invariant: sorted, no duplicates, none of the letters of [`Flag`].
    other: Vec<u8>,
}

impl Flags {
    /// No flags.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the info part after `:2,` (e.g. `FRS`).
    pub fn from_info(info: &str) -> Self {
        let mut f = Flags::default();
        for &c in info.as_bytes() {
            match Flag::from_letter(c) {
                Some(flag) => f.bits |= flag.bit(),
                None => {
                    if c.is_ascii_graphic() && c != b',' && !f.other.contains(&c) {
                        f.other.push(c);
                    }
                }
            }
        }
        f.other.sort_unstable();
        f
    }

    /// The info letters in ASCII order, as written after `:2,`.
    pub fn to_info(&self) -> String {
        let mut letters: Vec<u8> = Flag::ALL
            .iter()
            .filter(|f| self.contains(**f))
            .map(|f| f.letter())
            .collect();
        letters.extend_from_slice(&self.other);
        letters.sort_unstable();
        letters.into_iter().map(char::from).collect()
    }

    /// True if the flag is set.
    pub fn contains(&self, flag: Flag) -> bool {
        self.bits & flag.bit() != 0
    }

    /// Sets or clears one flag.
    pub fn set(&mut self, flag: Flag, on: bool) {
        if on {
            self.bits |= flag.bit();
        } else {
            self.bits &= !flag.bit();
        }
    }

    /// Dovecot's keyword letters among the info letters (`a` to `z`).
    pub fn keyword_letters(&self) -> impl Iterator<Item = u8> + '_ {
        self.other.iter().copied().filter(u8::is_ascii_lowercase)
    }

    /// These flags with Dovecot's keyword letters replaced by `letters`.
    pub fn with_keyword_letters(&self, letters: &[u8]) -> Flags {
        let mut other: Vec<u8> = self
            .other
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_lowercase())
            .chain(letters.iter().copied().filter(u8::is_ascii_lowercase))
            .collect();
        other.sort_unstable();
        other.dedup();
        Flags {
            bits: self.bits,
            other,
        }
    }

    /// The system flags that are set, in IMAP order.
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::ALL.into_iter().filter(|f| self.contains(*f))
    }
}

/// Splits a Maildir file name into its unique base and its info part.
///
/// `1700000000.M1P2.host,S=10:2,FS` gives `("1700000000.M1P2.host,S=10", Some("FS"))`.
/// A name with no `:2,` (a message still in `new/`) has no info. The base
/// ends at the first `:`, as Dovecot reads it (`:` is Maildir's info
/// separator and never part of a unique name), so that a base read back
/// from `courierimapuiddb` splits the same way as the file name it came
/// from.
pub fn split_name(file_name: &str) -> (&str, Option<&str>) {
    match file_name.split_once(':') {
        Some((base, rest)) => (base, rest.strip_prefix("2,")),
        None => (file_name, None),
    }
}

/// Reads a `,K=value` field (`S` size, `W` size with CRLF line ends) from a base name.
pub fn name_field(base: &str, key: char) -> Option<u64> {
    base.split(',').skip(1).find_map(|part| {
        let mut chars = part.chars();
        if chars.next() == Some(key) && chars.next() == Some('=') {
            part[2..].parse().ok()
        } else {
            None
        }
    })
}

/// Whether the file holds the message exactly as IMAP sends it, line ends
/// included: its name says the size with CRLF line ends (`W=`) is its size
/// (`S=`). tern stores so a message that LF line ends cannot give back byte
/// for byte (a binary part with bare LF or CR CR LF, RFC 3516); Dovecot's
/// `W=` means the same. Such a file is read as it is, never converted.
pub fn stored_as_sent(base: &str) -> bool {
    matches!((name_field(base, 'S'), name_field(base, 'W')), (Some(s), Some(w)) if s == w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_roundtrip_keeps_unknown_letters_sorted() {
        let f = Flags::from_info("TSaF");
        assert!(f.contains(Flag::Seen) && f.contains(Flag::Deleted) && f.contains(Flag::Flagged));
        assert!(!f.contains(Flag::Draft));
        assert_eq!(f.to_info(), "FSTa");
    }

    #[test]
    fn keyword_letters_are_replaced_and_others_kept() {
        let f = Flags::from_info("FSab2");
        assert_eq!(f.keyword_letters().collect::<Vec<_>>(), b"ab");
        let g = f.with_keyword_letters(b"zc");
        assert_eq!(g.to_info(), "2FScz");
        assert!(g.contains(Flag::Seen));
    }

    #[test]
    fn split_and_fields() {
        assert_eq!(
            split_name("123.M4P5.h,S=10,W=12:2,RS"),
            ("123.M4P5.h,S=10,W=12", Some("RS"))
        );
        assert_eq!(split_name("123.M4P5.h"), ("123.M4P5.h", None));
        assert_eq!(name_field("123.M4P5.h,S=10,W=12", 'S'), Some(10));
        assert_eq!(name_field("123.M4P5.h,S=10,W=12", 'W'), Some(12));
        assert_eq!(name_field("123.M4P5.h", 'S'), None);
    }

    proptest::proptest! {
        #[test]
        fn info_is_sorted_and_stable(s in "[A-Za-z]{0,12}") {
            let f = Flags::from_info(&s);
            let info = f.to_info();
            let mut sorted: Vec<char> = info.chars().collect();
            sorted.sort_unstable();
            proptest::prop_assert_eq!(info.chars().collect::<Vec<_>>(), sorted);
            proptest::prop_assert_eq!(Flags::from_info(&info), f);
        }
    }
}
