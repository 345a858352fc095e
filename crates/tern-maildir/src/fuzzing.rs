//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): arbitrary
//! bytes as the files other programs (and crashes) leave in a Maildir:
//! `courierimapuiddb` and `dovecot-uidlist`, `courierimapkeywords/:list`,
//! `courierpop3dsizelist`, `maildirsize`, message file names. They must
//! never panic, and what tern writes back must read back the same;
//! `tests/fuzz_corpus.rs` replays the saved corpora and random inputs.

use crate::uiddb::{ParseOutcome, UidDb};

/// `courierimapuiddb` and `dovecot-uidlist`: parsed; a parsed list written
/// back in Courier's form reads back equal.
pub fn uiddb(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let ParseOutcome::Ok(db) = UidDb::parse_courier(&text) {
        let again = UidDb::parse_courier(&db.to_courier());
        assert_eq!(again, ParseOutcome::Ok(db), "courierimapuiddb round trip");
    }
    let _ = UidDb::parse_dovecot(&text);
}

/// `courierimapkeywords/:list`: what tern writes back reads back to the
/// same text.
pub fn keywords(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let db = crate::keywords::KeywordDb::parse(&text);
    let written = db.serialise();
    let again = crate::keywords::KeywordDb::parse(&written);
    assert_eq!(again.serialise(), written, "keyword list round trip");
}

/// `courierpop3dsizelist`.
pub fn pop3list(data: &[u8]) {
    let _ = crate::pop3list::Pop3List::parse(&String::from_utf8_lossy(data));
}

/// `maildirsize`, and the first line as a quota.
pub fn maildirsize(data: &[u8]) {
    let _ = crate::quota::parse_file(data);
    let _ = crate::quota::QuotaSpec::parse(&String::from_utf8_lossy(data));
}

/// A message file name: its flags, sizes and info.
pub fn file_name(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let (base, info) = crate::flags::split_name(&name);
    let _ = crate::flags::name_field(base, 'S');
    let _ = crate::flags::name_field(base, 'W');
    if let Some(info) = info {
        let flags = crate::Flags::from_info(info);
        assert_eq!(
            crate::Flags::from_info(&flags.to_info()),
            flags,
            "flag letters round trip"
        );
    }
}

/// `dovecot-uidlist` as tern keeps it in step: the merged text of a list
/// and a Courier list reads back as a Dovecot list.
pub fn dovecot_uidlist(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let db = match UidDb::parse_dovecot(&text) {
        ParseOutcome::Ok(db) => db,
        _ => UidDb::with_validity(1_700_000_000),
    };
    if let Some(merged) = crate::dovecot_uidlist::merged(&text, &db) {
        let _ = UidDb::parse_dovecot(&merged);
    }
}
