//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): arbitrary
//! bytes through the framer and the command parser. They must never panic
//! and check the framer's invariants; `tests/fuzz_corpus.rs` replays the
//! saved corpora and random inputs through them in every test run.

use crate::framer::{Event, Framer, FramerLimits};

/// The framer fed `data` in pieces (the first byte picks the piece size
/// and the second how literals are treated), with small limits so that
/// every limit is reached. Panics when an invariant breaks: a command over
/// the limit, a command not ending in CRLF, a chunk longer than its literal.
pub fn framer(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(2));
    let piece = usize::from(head.first().copied().unwrap_or(7) % 32) + 1;
    let policy = head.get(1).copied().unwrap_or(0) % 3;
    let limits = FramerLimits {
        max_line: 80,
        max_command: 300,
        max_discard: 500,
    };
    let mut f = Framer::new(limits);
    let mut pieces = rest.chunks(piece);
    let mut streaming = 0u64;
    loop {
        match f.next_event() {
            Event::NeedInput => match pieces.next() {
                Some(p) => f.feed(p),
                None => return,
            },
            Event::Literal { info, prefix } => {
                assert!(prefix.len() <= limits.max_command);
                match policy {
                    0 => {
                        let _ = f.inline();
                    }
                    1 => {
                        f.stream();
                        streaming = info.len;
                    }
                    _ => f.refuse(),
                }
            }
            Event::Chunk(c) => {
                assert!(c.len() as u64 <= streaming, "chunk beyond its literal");
                streaming -= c.len() as u64;
            }
            Event::Command(c) => {
                assert!(c.len() <= limits.max_command + 1, "command over the limit");
                assert!(c.ends_with(b"\r\n"));
                let _ = crate::command::parse(&c);
            }
            Event::TooLong { .. } => {}
            Event::Fatal => return,
        }
    }
}

/// The command parser and the grammar tern adds around it.
pub fn command(data: &[u8]) {
    let _ = crate::command::parse(data);
    let _ = crate::esearch::split_return(data);
    let _ = crate::binary_sections::rewrite(data);
    let _ = crate::lexer::saved_result_uses(data);
    let (pattern, name) = data.split_at(data.len() / 2);
    let _ = crate::command::list_match(pattern, name, b'.');
}
