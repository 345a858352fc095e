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
    // A bearer token checked locally: the header and claims of whatever
    // arrives are decoded (a key set of one HMAC key and one EC key).
    if let Ok(token) = std::str::from_utf8(data) {
        if crate::jwt::JwtValidator::looks_like_jwt(token) {
            if let Some(v) = fuzz_jwt_keys() {
                let _ = v.check(token);
            }
        }
    }
    // And a key set: whatever a provider's JWKS file holds.
    let _ = crate::jwt::JwtValidator::new(&String::from_utf8_lossy(data), None, None, 0, "sub");
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

/// The key set the sasl entry point checks tokens against, made once.
fn fuzz_jwt_keys() -> Option<&'static crate::jwt::JwtValidator> {
    static KEYS: std::sync::OnceLock<Option<crate::jwt::JwtValidator>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        crate::jwt::JwtValidator::new(
            r#"{"keys":[{"kty":"oct","kid":"h","k":"MDEyMzQ1Njc4OWFiY2RlZg"},
                {"kty":"EC","crv":"P-256","kid":"e",
                 "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                 "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
            Some("iss".into()),
            Some("aud".into()),
            0,
            "sub",
        )
        .ok()
    })
    .as_ref()
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzzed_key_set_is_usable() {
        // The seed token is signed with the set's HMAC key: the fuzzer
        // starts from a token that reaches the claims.
        let keys = super::fuzz_jwt_keys().expect("the key set parses");
        let seed = include_str!("../../../fuzz/seeds/sasl/jwt-hs256");
        assert_eq!(keys.check(seed.trim()).as_deref(), Some("alice"));
    }
}
