//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): each feeds
//! arbitrary bytes through one path a client's FETCH, SEARCH or SORT takes.
//! They must never panic; `tests/fuzz_corpus.rs` replays the saved corpora
//! and random inputs through them in every test run.

use crate::bodystructure::{self, Extensions};
use crate::section::{extract, partial, Specifier};

/// MIME structure: the tree, BODY, BODYSTRUCTURE, ENVELOPE, the summary
/// (and its on-disk form), sections and their BINARY (decoded) forms.
pub fn structure(data: &[u8]) {
    let msg = crate::crlf::to_crlf(data);
    let root = crate::mime::parse(&msg);
    let mut out = Vec::new();
    bodystructure::write(&mut out, &msg, &root, Extensions::Yes);
    bodystructure::write(&mut out, &msg, &root, Extensions::No);
    crate::envelope::write(&mut out, &msg[root.header.clone()]);
    // The summary, and its on-disk form read back.
    let summary = crate::summary::summarize(&msg);
    let mut disk = Vec::new();
    summary.encode(&mut disk);
    assert_eq!(
        crate::summary::Reader::new(&disk).summary().as_ref(),
        Some(&summary)
    );
    let specs = [
        Specifier::Whole,
        Specifier::Header,
        Specifier::Text,
        Specifier::Mime,
        Specifier::HeaderFields(vec!["subject".into(), "from".into()]),
        Specifier::HeaderFieldsNot(vec!["received".into()]),
    ];
    for path in [
        &[][..],
        &[1],
        &[2],
        &[1, 1],
        &[2, 1],
        &[1, 2, 3],
        &[3, 1, 1],
    ] {
        for spec in &specs {
            if let Some(d) = extract(&msg, &root, path, spec) {
                let _ = partial(&d, 3, 17);
            }
        }
        if let Ok(Some(d)) = crate::binary::section(&msg, &root, path) {
            let _ = partial(&d, 3, 17);
        }
    }
}

/// SEARCH and SORT text: decoded bodies and headers, dates, base subjects,
/// the casemap, thread ids.
pub fn search(data: &[u8]) {
    let msg = crate::crlf::to_crlf(data);
    let text = crate::search_text::body_text(&msg);
    let _ = crate::search_text::contains_folded(&text, &crate::search_text::fold("needle"));
    let root = crate::mime::parse(&msg);
    let headers = crate::search_text::headers_text_of(&msg, &root);
    let _ = crate::search_text::contains_folded(&headers, &crate::search_text::fold("id:"));
    for f in crate::header::fields(&msg[root.header.clone()]) {
        let value = crate::header::unfold(f.value);
        let decoded = crate::search_text::decode_header_value(&value);
        let _ = crate::search_text::fold(&decoded);
        let _ = crate::subject::base_subject(&decoded);
        let _ = crate::search_text::date_timestamp(&value);
        let _ = crate::thread::message_ids(&decoded);
        let _ = crate::header::parse_params(&value);
    }
}

/// Address lists as ENVELOPE and SORT read them.
pub fn address(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::address::parse_list(&text);
    let _ = crate::address::normalized(&text);
}

/// The summary cache file (`tern.cache`) as read back from disk, whatever
/// its bytes: decoding never panics, and what decodes is written and read
/// back the same.
pub fn summary_cache(data: &[u8]) {
    use crate::summary::{decode_cache, encode_cache_entry, CACHE_MAGIC};
    // Most inputs lack the magic line: try them both as they are and after it.
    let with_magic = [CACHE_MAGIC, data].concat();
    for input in [data, &with_magic] {
        if let Some(entries) = decode_cache(input) {
            let mut again = CACHE_MAGIC.to_vec();
            for (base, s) in &entries {
                encode_cache_entry(&mut again, base, s);
            }
            assert_eq!(decode_cache(&again).as_ref(), Some(&entries));
        }
    }
}
