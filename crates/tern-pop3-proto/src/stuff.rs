//! A message as RETR and TOP send it (RFC 1939 §3): every line ended by
//! CRLF, a line beginning with `.` given one more, read in pieces of any
//! size. Nothing of a line is held back but one CR, so a message of one
//! gigabyte-long line costs no more memory than any other.

/// The state of one message being sent.
#[derive(Debug, Clone)]
pub struct Stuffer {
    /// At the start of a line (nothing of it seen yet).
    at_start: bool,
    /// A CR was seen last: a line end when LF follows, else part of the line.
    pending_cr: bool,
    /// Bytes of the current line sent so far (the held CR not counted).
    content: u64,
    /// Still in the header (TOP counts body lines only).
    in_header: bool,
    /// Body lines TOP still sends; `None` for RETR (all).
    body_lines: Option<u64>,
    /// TOP has sent all it was asked for.
    done: bool,
}

impl Stuffer {
    /// For RETR (`top` None) or `TOP msg n` (`top` Some(n)).
    pub fn new(top: Option<u64>) -> Stuffer {
        Stuffer {
            at_start: true,
            pending_cr: false,
            content: 0,
            in_header: true,
            body_lines: top,
            done: false,
        }
    }

    /// Appends the wire form of `input`, the next piece of the message, to
    /// `out`; false once TOP has all its lines (the rest need not be read).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.done {
                return false;
            }
            if self.at_start {
                if !self.in_header {
                    if let Some(n) = &mut self.body_lines {
                        if *n == 0 {
                            self.done = true;
                            return false;
                        }
                        *n -= 1;
                    }
                }
                self.at_start = false;
                self.content = 0;
                if b == b'.' {
                    out.push(b'.');
                }
            }
            match b {
                b'\n' => {
                    // One CR before the LF is the line end's own.
                    self.pending_cr = false;
                    out.extend_from_slice(b"\r\n");
                    if self.in_header && self.content == 0 {
                        self.in_header = false;
                    }
                    self.at_start = true;
                }
                b'\r' => {
                    if self.pending_cr {
                        out.push(b'\r');
                        self.content += 1;
                    }
                    self.pending_cr = true;
                }
                _ => {
                    if self.pending_cr {
                        out.push(b'\r');
                        self.content += 1;
                        self.pending_cr = false;
                    }
                    out.push(b);
                    self.content += 1;
                }
            }
        }
        !self.done
    }

    /// Ends the message: a last line without a line end gets one (the
    /// `.` line that ends the response is the caller's).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_start && !self.done {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            self.at_start = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stuff(data: &[u8], top: Option<u64>) -> Vec<u8> {
        let mut st = Stuffer::new(top);
        let mut out = Vec::new();
        if st.push(data, &mut out) {
            st.finish(&mut out);
        }
        out
    }

    /// The line-by-line form this replaces: what the stream must equal.
    fn by_lines(data: &[u8], top: Option<u64>) -> Vec<u8> {
        let (mut in_header, mut body) = (true, top);
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(p) => (&rest[..p], &rest[p + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if in_header {
                if line.is_empty() {
                    in_header = false;
                }
            } else if let Some(n) = &mut body {
                if *n == 0 {
                    break;
                }
                *n -= 1;
            }
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            rest = next;
        }
        out
    }

    #[test]
    fn dots_are_doubled_and_lines_end_in_crlf() {
        assert_eq!(
            stuff(b"A: b\n\n.x\n..\nend", None),
            b"A: b\r\n\r\n..x\r\n...\r\nend\r\n"
        );
        assert_eq!(stuff(b"A: b\r\n\r\nx\r\n", None), b"A: b\r\n\r\nx\r\n");
        assert_eq!(stuff(b"a\r\r\nb\rc\r", None), b"a\r\r\nb\rc\r\n");
    }

    #[test]
    fn top_counts_body_lines() {
        assert_eq!(
            stuff(b"A: b\nC: d\n\n1\n2\n3\n", Some(0)),
            b"A: b\r\nC: d\r\n\r\n"
        );
        assert_eq!(
            stuff(b"A: b\n\n1\n2\n3\n", Some(2)),
            b"A: b\r\n\r\n1\r\n2\r\n"
        );
    }

    fn messageish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"Subject: x".to_vec()),
            Just(b"body".to_vec()),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Split anywhere, the stream sends what the line-by-line form did.
        #[test]
        fn pieces_of_any_size_send_what_whole_lines_did(
            data in messageish(),
            top in prop::option::of(0u64..4),
            cut in 1usize..7,
        ) {
            let mut st = Stuffer::new(top);
            let mut out = Vec::new();
            let mut more = true;
            for piece in data.chunks(cut) {
                if !st.push(piece, &mut out) {
                    more = false;
                    break;
                }
            }
            if more {
                st.finish(&mut out);
            }
            prop_assert_eq!(out, by_lines(&data, top));
        }
    }
}
