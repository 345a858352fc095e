//! Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
//!
//! Printable ASCII stands for itself except `&`, written `&-`; everything
//! else is UTF-16 in a modified base64 (`,` for `/`) between `&` and `-`.
//! Decoding is strict, because a name that decodes two ways could name two
//! folders: it rejects printable ASCII inside a shift, empty shifts, bad
//! padding bits, unpaired surrogates and 8-bit bytes.

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mutf7Error {
    /// A byte outside printable ASCII appeared unencoded.
    #[error("8-bit or control character in mailbox name")]
    RawNonAscii,
    /// An `&` shift is not closed with `-`.
    #[error("unterminated '&' sequence in mailbox name")]
    Unterminated,
    /// The base64 inside a shift is not valid.
    #[error("invalid modified UTF-7 in mailbox name")]
    BadEncoding,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Decodes a modified UTF-7 name into UTF-8.
///
/// # Errors
/// [`Mutf7Error`] when the name is not strictly valid.
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..0x7f).contains(&b) {
            return Err(Mutf7Error::RawNonAscii);
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let end = bytes[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p)
            .ok_or(Mutf7Error::Unterminated)?;
        let chunk = &bytes[i + 1..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let mut bits: u32 = 0;
            let mut nbits = 0;
            let mut units: Vec<u16> = Vec::new();
            for &c in chunk {
                let v = b64_value(c).ok_or(Mutf7Error::BadEncoding)?;
                bits = (bits << 6) | v;
                nbits += 6;
                if nbits >= 16 {
                    nbits -= 16;
                    units.push(((bits >> nbits) & 0xffff) as u16);
                }
            }
            // Leftover bits must be fewer than 6 and all zero.
            if nbits >= 6 || (bits & ((1 << nbits) - 1)) != 0 || units.is_empty() {
                return Err(Mutf7Error::BadEncoding);
            }
            let s = String::from_utf16(&units).map_err(|_| Mutf7Error::BadEncoding)?;
            if s.chars().any(|c| (' '..='~').contains(&c)) {
                return Err(Mutf7Error::BadEncoding);
            }
            out.push_str(&s);
        }
        i = end + 1;
    }
    Ok(out)
}

/// Encodes a UTF-8 name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for u in pending.drain(..) {
            bits = (bits << 16) | u as u32;
            nbits += 16;
            while nbits >= 6 {
                nbits -= 6;
                out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
            }
        }
        if nbits > 0 {
            out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
        }
        out.push('-');
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "&",
            "&Jjo",
            "&AGE-",
            "a\u{e9}",
            "&U,BTF2-",
            "&ZeVnLIqe",
            "&2D3-",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(s in "\\PC{0,20}") {
            let e = encode(&s);
            proptest::prop_assert_eq!(decode(&e).unwrap(), s);
        }
    }
}
