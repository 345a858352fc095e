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
    let _ = crate::lexer::saved_set_argument(data);
    if let Ok(mut p) = crate::parsed::parse(data, 500) {
        if let Some(c) = p.criteria.as_mut() {
            c.resolve_saved(None);
            assert!(!c.uses_saved(), "a `$` left after resolving");
        }
    }
    let (pattern, name) = data.split_at(data.len() / 2);
    let _ = crate::command::list_match(pattern, name, b'.');
    criteria(data);
}

/// The criteria parser against imap-codec's: where both read a SEARCH,
/// they must agree on what matches, for a few ways of deciding its keys.
/// Panics when they disagree.
fn criteria(data: &[u8]) {
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::imap_types::search::SearchKey;
    let Ok(Some((_, ours))) = crate::criteria::split_command(data, 500) else {
        return;
    };
    let Ok(cmd) = crate::command::parse(data) else {
        return;
    };
    let CommandBody::Search { criteria, .. } = cmd.body else {
        return;
    };
    // A key's truth: a hash of its text and the round.
    let truth = |k: &SearchKey<'_>, round: u64| -> bool {
        let mut h = round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in format!("{k:?}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h >> 63 == 1
    };
    // The codec's tree is at most nine deep: a recursive walk is bounded.
    fn reference(k: &SearchKey<'_>, leaf: &dyn Fn(&SearchKey<'_>) -> bool) -> bool {
        match k {
            SearchKey::And(ks) => ks.as_ref().iter().all(|k| reference(k, leaf)),
            SearchKey::Or(a, b) => reference(a, leaf) || reference(b, leaf),
            SearchKey::Not(k) => !reference(k, leaf),
            k => leaf(k),
        }
    }
    let mut scratch = Vec::new();
    for round in 0..4 {
        let theirs = criteria
            .as_ref()
            .iter()
            .all(|k| reference(k, &|k| truth(k, round)));
        let mine = ours.eval(&mut scratch, |k| truth(k, round));
        assert_eq!(mine, theirs, "criteria disagree with imap-codec");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_criteria_seed_reaches_both_parsers() {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/seeds/command/search-criteria"
        ))
        .unwrap_or_default();
        assert!(matches!(
            crate::criteria::split_command(&seed, 500),
            Ok(Some(_))
        ));
        assert!(crate::command::parse(&seed).is_ok());
        super::criteria(&seed);
    }
}
