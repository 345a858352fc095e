//! Password schemes as Dovecot writes them in a passwd-file.
//!
//! `{SCHEME}hash` names the scheme; a hash with no `{...}` prefix is a
//! `crypt(3)` string (Dovecot's default for passwd-files): `$1$` MD5,
//! `$5$`/`$6$` SHA-crypt, `$2a$`/`$2b$`/`$2y$` bcrypt, `$y$` yescrypt
//! (Debian's default), `$argon2id$`, or traditional DES.

use crate::AuthError;

/// Checks `password` against a stored hash.
///
/// # Errors
/// [`AuthError::UnknownScheme`] when the scheme is not one tern knows; a
/// wrong password is `Ok(false)`, never an error.
pub fn verify(stored: &str, password: &[u8]) -> Result<bool, AuthError> {
    let (scheme, hash) = match stored.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((s, h)) => (s.to_ascii_uppercase(), h),
        None => ("CRYPT".to_owned(), stored),
    };
    match scheme.as_str() {
        "PLAIN" | "CLEARTEXT" | "CLEAR" => Ok(constant_time_eq(hash.as_bytes(), password)),
        "CRYPT" | "DES-CRYPT" | "MD5-CRYPT" | "SHA256-CRYPT" | "SHA512-CRYPT" | "BLF-CRYPT" => {
            verify_crypt(hash, password)
        }
        "ARGON2ID" | "ARGON2I" => verify_argon2(hash, password),
        // courier-authlib's and LDAP's MD5 forms: base64, or hex for MD5RAW
        // (Dovecot's PLAIN-MD5).
        "MD5" | "SMD5" | "MD5RAW" | "PLAIN-MD5" | "LDAP-MD5" => {
            Ok(verify_md5(&scheme, hash, password))
        }
        "SHA" | "SHA1" | "SSHA" | "SHA256" | "SSHA256" | "SHA512" | "SSHA512" => {
            Ok(verify_salted_sha(&scheme, hash, password))
        }
        "SCRAM-SHA-1" | "SCRAM-SHA-256" => {
            let h = crate::scram::ScramHash::of_scheme(&scheme)
                .ok_or_else(|| AuthError::UnknownScheme(scheme.clone()))?;
            let keys = crate::scram::ScramKeys::parse(h, hash)
                .ok_or_else(|| AuthError::UnknownScheme(format!("{scheme} (malformed)")))?;
            Ok(keys.matches_password(password))
        }
        other => Err(AuthError::UnknownScheme(other.to_owned())),
    }
}

fn verify_crypt(hash: &str, password: &[u8]) -> Result<bool, AuthError> {
    if hash.starts_with("$argon2") {
        return verify_argon2(hash, password);
    }
    if hash.starts_with("$y$") || hash.starts_with("$7$") {
        use yescrypt::PasswordVerifier;
        return Ok(yescrypt::Yescrypt::default()
            .verify_password(password, hash)
            .is_ok());
    }
    let Ok(pw) = std::str::from_utf8(password) else {
        return Ok(false);
    };
    if hash.starts_with("$6$") {
        return Ok(sha_crypt::sha512_check(pw, hash).is_ok());
    }
    if hash.starts_with("$5$") {
        return Ok(sha_crypt::sha256_check(pw, hash).is_ok());
    }
    if hash.starts_with("$1$") || hash.starts_with("$2") || hash.len() == 13 {
        return Ok(pwhash::unix::verify(password, hash));
    }
    Err(AuthError::UnknownScheme(hash.chars().take(4).collect()))
}

/// `{SHA}`/`{SSHA}` and their SHA-256/512 forms, as LDAP directories keep
/// them (`userPassword`): base64 of the digest of the password and salt,
/// followed by the salt (none for the unsalted forms).
fn verify_salted_sha(scheme: &str, hash: &str, password: &[u8]) -> bool {
    use base64::Engine as _;
    use sha2::Digest as _;
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(hash.trim()) else {
        return false;
    };
    let len = match scheme {
        "SHA" | "SHA1" | "SSHA" => 20,
        "SHA256" | "SSHA256" => 32,
        _ => 64,
    };
    let salted = scheme.starts_with("SSHA");
    if raw.len() < len || (!salted && raw.len() != len) {
        return false;
    }
    let (digest, salt) = raw.split_at(len);
    let computed = match len {
        20 => sha1::Sha1::new()
            .chain_update(password)
            .chain_update(salt)
            .finalize()
            .to_vec(),
        32 => sha2::Sha256::new()
            .chain_update(password)
            .chain_update(salt)
            .finalize()
            .to_vec(),
        _ => sha2::Sha512::new()
            .chain_update(password)
            .chain_update(salt)
            .finalize()
            .to_vec(),
    };
    constant_time_eq(&computed, digest)
}

fn verify_md5(scheme: &str, hash: &str, password: &[u8]) -> bool {
    use base64::Engine as _;
    use md5::Digest as _;
    let hash = hash.trim();
    let raw = if matches!(scheme, "MD5RAW" | "PLAIN-MD5") {
        if hash.len() != 32 {
            return false;
        }
        let mut v = Vec::with_capacity(16);
        for i in (0..32).step_by(2) {
            match hash
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => v.push(b),
                None => return false,
            }
        }
        v
    } else {
        match base64::engine::general_purpose::STANDARD.decode(hash) {
            Ok(v) => v,
            Err(_) => return false,
        }
    };
    let salted = scheme == "SMD5";
    if raw.len() < 16 || (!salted && raw.len() != 16) {
        return false;
    }
    let (digest, salt) = raw.split_at(16);
    let computed = md5::Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize();
    constant_time_eq(&computed, digest)
}

/// Largest Argon2 memory cost a stored hash may ask for, KiB (1 GiB): a
/// passwd-file line cannot make one check take the machine's memory.
const MAX_ARGON2_KIB: u32 = 1024 * 1024;

thread_local! {
    /// The Argon2 working memory of this thread, kept from one check to
    /// the next. Allocating 19 MiB per check and freeing it made glibc's
    /// malloc raise its mmap threshold and then carve the next ones from
    /// heaps it keeps: a storm of wrong passwords left hundreds of MB
    /// resident. Checks run on a few threads (tern-server's password
    /// threads), so this is a few times the hash's memory cost, once.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn verify_argon2(hash: &str, password: &[u8]) -> Result<bool, AuthError> {
    use argon2::password_hash::{Output, PasswordHash};
    let malformed = || AuthError::UnknownScheme("ARGON2 (malformed)".into());
    let parsed = PasswordHash::new(hash).map_err(|_| malformed())?;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm).map_err(|_| malformed())?;
    let version = match parsed.version {
        Some(v) => argon2::Version::try_from(v).map_err(|_| malformed())?,
        None => argon2::Version::V0x13,
    };
    let params = argon2::Params::try_from(&parsed).map_err(|_| malformed())?;
    if params.m_cost() > MAX_ARGON2_KIB {
        return Err(malformed());
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(malformed());
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(|_| malformed())?;
    let mut out = vec![0u8; expected.len()];
    let argon = argon2::Argon2::new(algorithm, version, params.clone());
    ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < params.block_count() {
            memory.resize(params.block_count(), argon2::Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..])
            .map_err(|_| malformed())
    })?;
    // Output's comparison takes the same time whatever the bytes.
    let computed = Output::new(&out).map_err(|_| malformed())?;
    Ok(computed == expected)
}

/// Hashes a password with Argon2id, as `{ARGON2ID}$argon2id$...`.
///
/// # Errors
/// [`AuthError::Hash`] if the hasher fails.
pub fn hash_argon2id(password: &[u8]) -> Result<String, AuthError> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    let h = argon2::Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(format!("{{ARGON2ID}}{h}"))
}

/// Hashes a password with SHA512-crypt, as `{SHA512-CRYPT}$6$...`.
///
/// # Errors
/// [`AuthError::Hash`] if the hasher fails.
pub fn hash_sha512_crypt(password: &str) -> Result<String, AuthError> {
    let params =
        sha_crypt::Sha512Params::new(5000).map_err(|e| AuthError::Hash(format!("{e:?}")))?;
    let h = sha_crypt::sha512_simple(password, &params)
        .map_err(|e| AuthError::Hash(format!("{e:?}")))?;
    Ok(format!("{{SHA512-CRYPT}}{h}"))
}

/// Hashes a password as `{SSHA512}`: base64 of SHA-512 over the password
/// and an 8-byte random salt, then the salt, as Dovecot's `doveadm pw -s
/// SSHA512` and LDAP directories write it. A single digest: fast to check
/// (a site that wants a slow hash takes SHA512-CRYPT or ARGON2ID).
pub fn hash_ssha512(password: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let salt: [u8; 8] = rand::random();
    let mut raw = sha2::Sha512::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize()
        .to_vec();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA512}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The password itself, for an account that stores it in the clear
/// (`{PLAIN}`): what CRAM-MD5 needs, and what SCRAM keys can be made from.
pub fn cleartext(stored: &str) -> Option<&str> {
    let (scheme, rest) = stored.strip_prefix('{')?.split_once('}')?;
    matches!(
        scheme.to_ascii_uppercase().as_str(),
        "PLAIN" | "CLEARTEXT" | "CLEAR"
    )
    .then_some(rest)
}

/// The SCRAM keys an account stores (`{SCRAM-SHA-256}...`) for `hash`.
pub fn scram_keys(stored: &str, hash: crate::scram::ScramHash) -> Option<crate::scram::ScramKeys> {
    let (scheme, rest) = stored.strip_prefix('{')?.split_once('}')?;
    if crate::scram::ScramHash::of_scheme(scheme)? != hash {
        return None;
    }
    crate::scram::ScramKeys::parse(hash, rest)
}

/// Compares in a time that depends on the lengths only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_generated_hashes() {
        assert!(verify("{PLAIN}secret", b"secret").unwrap());
        assert!(!verify("{PLAIN}secret", b"secreT").unwrap());
        let a = hash_argon2id(b"pw").unwrap();
        assert!(verify(&a, b"pw").unwrap());
        assert!(!verify(&a, b"px").unwrap());
        let s = hash_sha512_crypt("pw").unwrap();
        assert!(verify(&s, b"pw").unwrap());
        assert!(verify(s.trim_start_matches("{SHA512-CRYPT}"), b"pw").unwrap());
        let (x, y) = (hash_ssha512(b"pw"), hash_ssha512(b"pw"));
        assert!(verify(&x, b"pw").unwrap() && verify(&y, b"pw").unwrap());
        assert!(!verify(&x, b"px").unwrap());
        assert_ne!(x, y, "each hash has its own salt");
    }

    #[test]
    fn known_argon2_vectors() {
        // From the reference implementation's `argon2` tool (Debian's
        // argon2 package), password "secret": Argon2id and Argon2i, two
        // lanes, a 16-byte output, and version 0x10. Checked on one thread
        // in turn, so the kept working memory is reused, grown and reused.
        let vectors = [
            "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
            "$argon2i$v=19$m=4096,t=3,p=2$c29tZXNhbHRzb21lc2FsdA$BxmGX0WdpxRmfsMocAIaAcgBYnuEN0yfH97NGzvZfGk",
            "$argon2id$v=19$m=256,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$s2dmfmHa6gBUPAUlmFQY2w",
            "$argon2id$v=16$m=256,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$IJAibB4tvAKNi0nnzU+4G4OyeT2ZItIb4lckp2clfyc",
        ];
        for _ in 0..2 {
            for v in vectors {
                assert!(verify(v, b"secret").unwrap(), "{v}");
                assert!(!verify(v, b"secreT").unwrap(), "{v}");
                assert!(
                    verify(&format!("{{ARGON2ID}}{v}"), b"secret").unwrap(),
                    "{v}"
                );
            }
        }
        // A stored hash asking for more than 1 GiB is refused, not run.
        assert!(verify(
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$s2dmfmHa6gBUPAUlmFQY2w",
            b"secret"
        )
        .is_err());
    }

    #[test]
    fn known_crypt_vectors() {
        // Produced by Debian's libxcrypt crypt(3) for the password "password"
        // (yescrypt is Debian's default for /etc/shadow and mkpasswd).
        let vectors = [
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$tnSYvahCwPBHKZUspmcxMfb0.WiB9W.zEaKlOBL35rC",
            "$2b$05$abcdefghijklmnopqrstuuWG29KuyeAicPCJODk1zjyGvyQUU2awu",
            "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
            "$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
            "$1$5pZSV9va$azfrPr6af3Fc7dLblQXVa0",
        ];
        for v in vectors {
            assert!(verify(v, b"password").unwrap(), "{v}");
            assert!(!verify(v, b"passwore").unwrap(), "{v}");
            assert!(
                verify(&format!("{{CRYPT}}{v}"), b"password").unwrap(),
                "{v}"
            );
        }
        assert!(verify(&format!("{{SHA512-CRYPT}}{}", vectors[2]), b"password").unwrap());
        assert!(verify(&format!("{{BLF-CRYPT}}{}", vectors[1]), b"password").unwrap());
        assert!(verify("{CRYPT}aZGJuE6EXrjEE", b"test").unwrap());
    }

    #[test]
    fn ldap_sha_schemes() {
        // slappasswd -h {SSHA} -s secret (salt "salt"), and {SHA} of "secret".
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ssha = sha1::Sha1::new()
            .chain_update(b"secret")
            .chain_update(b"salt")
            .finalize()
            .to_vec();
        ssha.extend_from_slice(b"salt");
        let stored = format!("{{SSHA}}{}", b64.encode(&ssha));
        assert!(verify(&stored, b"secret").unwrap());
        assert!(!verify(&stored, b"Secret").unwrap());
        assert!(verify("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", b"secret").unwrap());
        assert!(!verify("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", b"other").unwrap());
        let mut s512 = sha2::Sha512::new()
            .chain_update(b"pw")
            .chain_update(b"NaCl")
            .finalize()
            .to_vec();
        s512.extend_from_slice(b"NaCl");
        assert!(verify(&format!("{{ssha512}}{}", b64.encode(&s512)), b"pw").unwrap());
        // A salt on an unsalted scheme, or garbage, is no match.
        assert!(!verify(&format!("{{SHA512}}{}", b64.encode(&s512)), b"pw").unwrap());
        assert!(!verify("{SSHA}!!", b"pw").unwrap());
        // MD5 of "secret": base64 (Courier, LDAP) and hex (MD5RAW, PLAIN-MD5).
        assert!(verify("{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", b"secret").unwrap());
        assert!(verify("{MD5RAW}5ebe2294ecd0e0f08eab7690d2a6ee69", b"secret").unwrap());
        assert!(verify("{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", b"secret").unwrap());
        assert!(!verify("{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", b"other").unwrap());
        assert!(!verify("{MD5RAW}zz", b"secret").unwrap());
    }

    #[test]
    fn unknown_scheme_is_an_error() {
        assert!(verify("{NOPE}x", b"x").is_err());
    }
}
