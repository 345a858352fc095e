//! Formatting of response data: strings, flag lists, dates.
//!
//! Responses are written straight into a byte buffer; the server's driver is
//! the only code that sends it. Strings are quoted when RFC 3501's `quoted`
//! can hold them and sent as literals otherwise, so any byte sequence a
//! message holds is reproduced exactly.

/// Appends an IMAP `string`: quoted if possible, else a literal (the rule
/// lives in `tern_message::envelope::quoted_or_literal`).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    tern_message::envelope::quoted_or_literal(out, s);
}

/// Appends a literal `{n}\r\n` followed by the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    literal_header(out, s.len());
    out.extend_from_slice(s);
}

/// Appends the `{n}\r\n` that announces a literal of `len` octets.
pub fn literal_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'{');
    decimal(out, len as u64);
    out.extend_from_slice(b"}\r\n");
}

/// Appends a number in decimal, without the formatting machinery: FETCH
/// writes several per message, 100,000 messages at a time.
pub fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends an `nstring`: `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends a mailbox name: quoted (Courier and Dovecot accept and send
/// quoted names everywhere), a literal when it cannot be quoted.
pub fn mailbox(out: &mut Vec<u8>, name: &str) {
    string(out, name.as_bytes());
}

/// A `fmt::Write` adapter over a byte buffer.
#[derive(Debug)]
pub struct Bytes<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats a `date-time` (RFC 3501 §9) in UTC: `"17-Jul-1996 02:44:25 +0000"`,
/// with the quotes.
pub fn date_time(secs_since_epoch: i64) -> String {
    let days = secs_since_epoch.div_euclid(86_400);
    let rem = secs_since_epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_literal_headers() {
        let mut out = Vec::new();
        for n in [0u64, 7, 10, 99, 12345, u64::MAX] {
            out.clear();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        out.clear();
        literal(&mut out, b"abc");
        assert_eq!(out, b"{3}\r\nabc");
    }

    #[test]
    fn strings() {
        let mut o = Vec::new();
        string(&mut o, b"a \"b\" \\");
        assert_eq!(o, b"\"a \\\"b\\\" \\\\\"");
        let mut o = Vec::new();
        string(&mut o, b"a\r\nb");
        assert_eq!(o, b"{4}\r\na\r\nb");
        let mut o = Vec::new();
        nstring(&mut o, None);
        assert_eq!(o, b"NIL");
    }

    #[test]
    fn dates() {
        assert_eq!(date_time(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(date_time(837_571_465), "\"17-Jul-1996 02:44:25 +0000\"");
    }
}
