//! Line-end normalisation: Maildir files usually hold LF line ends, IMAP
//! speaks CRLF (RFC 3501 §2.2: messages are sent with CRLF).

use std::borrow::Cow;

/// Returns `data` with every bare LF turned into CRLF (borrowed when there is
/// nothing to change).
pub fn to_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    let bare = data
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    if !bare {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 30);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Cow::Owned(out)
}

/// [`to_crlf`] of a message read in pieces: the state is the last byte of
/// the piece before, so that a CR at the end of one piece and its LF at the
/// start of the next stay one line end. Lets a large message go out from
/// its file a piece at a time instead of whole in memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct ToCrlf {
    prev: u8,
}

impl ToCrlf {
    /// Appends `piece` to `out` with every bare LF written as CRLF.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        out.reserve(piece.len() + piece.len() / 30 + 1);
        for &b in piece {
            if b == b'\n' && self.prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            self.prev = b;
        }
    }
}

/// Turns CRLF into LF, for storing a message as Maildir programs expect it.
/// Lone CRs are kept.
pub fn to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(matches!(to_crlf(b"a\r\n"), Cow::Borrowed(_)));
        assert_eq!(to_lf(b"a\r\nb\rc\n"), b"a\nb\rc\n");
    }

    #[test]
    fn pieces_convert_as_the_whole_at_every_split() {
        let data: &[u8] = b"\na\r\nb\n\r\r\n\n\rc\n";
        let whole = to_crlf(data).into_owned();
        for a in 0..=data.len() {
            for b in a..=data.len() {
                let (mut t, mut out) = (ToCrlf::default(), Vec::new());
                for piece in [&data[..a], &data[a..b], &data[b..]] {
                    t.push(piece, &mut out);
                }
                assert_eq!(out, whole, "split at {a} and {b}");
            }
        }
    }
}
