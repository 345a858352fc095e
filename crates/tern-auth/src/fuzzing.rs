//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): arbitrary
//! bytes as what clients send in SASL exchanges and as the account files an
//! operator (or an editor's crash) leaves. They must never panic;
//! `tests/fuzz_corpus.rs` replays the saved corpora and random inputs.

use crate::scram::{Exchange, ScramHash, ScramKeys};

/// SASL messages: PLAIN, CRAM-MD5, OAUTHBEARER, XOAUTH2, and a SCRAM exchange whose first and
/// final messages are the two halves of `data` (split at its first NUL).
pub fn sasl(data: &[u8]) {
    let _ = crate::sasl::decode_plain(data);
    let _ = crate::sasl::decode_cram_md5(data);
    let _ = crate::oauth::parse_oauthbearer(data);
    let _ = crate::oauth::parse_xoauth2(data);
    let (first, last) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(f) = crate::scram::parse_client_first(first) {
        let keys = ScramKeys::decoy(ScramHash::Sha256, &f.user, b"fuzz");
        let ex = Exchange::new(f, &keys, "servernonce");
        let _ = ex.finish(last, &keys, Some(b"binding"));
        let _ = ex.finish(last, &keys, None);
    }
}

/// Stored password forms that are read without hashing: SCRAM keys, the
/// cleartext prefix, and the scheme prefix.
pub fn stored_password(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::scheme::cleartext(&text);
    let _ = crate::scheme::scram_keys(&text, ScramHash::Sha1);
    if let Some(k) = crate::scheme::scram_keys(&text, ScramHash::Sha256) {
        let again = ScramKeys::parse(ScramHash::Sha256, &k.encode()["{SCRAM-SHA-256}".len()..]);
        assert_eq!(again, Some(k), "SCRAM keys round trip");
    }
}

/// A passwd-file: parsed whole, and looked up by index and by scan for
/// every name it has (the two must agree).
pub fn passwd_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("fuzz");
    let _ = crate::passwd_file::parse(path, &text);
    crate::passwd_file::check_index_and_scan(&text);
}

/// Courier's userdb text.
pub fn userdb(data: &[u8]) {
    crate::userdb::parse_for_fuzzing(&String::from_utf8_lossy(data));
}
