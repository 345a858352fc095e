//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), with and without
//! channel binding (`-PLUS`), server side and without I/O: the messages are
//! parsed and built here, the exchange is driven by the server.
//!
//! Keys are stored as Dovecot writes them (`doveadm pw -s SCRAM-SHA-256`,
//! `tern pw --scheme SCRAM-SHA-256`, `gsasl --mkpasswd`):
//! `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`, the last three in
//! base64. The server never needs the password itself; an account whose
//! password is stored in the clear gets keys derived at login.

use base64::Engine as _;
use hmac::{Hmac, Mac};

use crate::sasl::SaslError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Iterations a stored key may ask for at most: a line of the account
/// database cannot make one login take seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Iterations of keys tern derives (Dovecot's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-1.
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
}

impl ScramHash {
    /// The scheme (and mechanism) name.
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The hash of a scheme name (`SCRAM-SHA-256`), if it is one.
    pub fn of_scheme(name: &str) -> Option<ScramHash> {
        match name.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-1" => Some(ScramHash::Sha1),
            "SCRAM-SHA-256" => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
            // HMAC takes a key of any length: this cannot fail.
            let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for d in data {
                m.update(d);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
            ScramHash::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi()` of RFC 5802 (PBKDF2 with this HMAC, one block).
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit + Clone>(
            password: &[u8],
            salt: &[u8],
            iterations: u32,
        ) -> Vec<u8> {
            let Ok(keyed) = <M as hmac::digest::KeyInit>::new_from_slice(password) else {
                return Vec::new();
            };
            let mut m = keyed.clone();
            m.update(salt);
            m.update(&1u32.to_be_bytes());
            let mut u = m.finalize().into_bytes();
            let mut out = u.clone();
            for _ in 1..iterations {
                let mut m = keyed.clone();
                m.update(&u);
                u = m.finalize().into_bytes();
                for (o, b) in out.iter_mut().zip(u.iter()) {
                    *o ^= b;
                }
            }
            out.to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<sha1::Sha1>>(password, salt, iterations),
            ScramHash::Sha256 => run::<Hmac<sha2::Sha256>>(password, salt, iterations),
        }
    }
}

/// What the server keeps of a password for SCRAM.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// The hash.
    pub hash: ScramHash,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramKeys {
    /// The keys of `password` with `salt` (costs `iterations` HMACs: run it
    /// off the async runtime).
    pub fn derive(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let iterations = iterations.clamp(1, MAX_ITERATIONS);
        let salted = hash.hi(password, salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        ScramKeys {
            hash,
            iterations,
            salt: salt.to_vec(),
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
        }
    }

    /// New keys for `password` with a random salt, as `tern pw` writes.
    pub fn generate(hash: ScramHash, password: &[u8]) -> ScramKeys {
        use rand::RngCore as _;
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramKeys::derive(hash, password, &salt, DEFAULT_ITERATIONS)
    }

    /// Keys that match no password, for an account that does not exist or
    /// whose password cannot be used for SCRAM: the same salt for the same
    /// name every time (`secret` is the process's), so that what the
    /// server answers does not tell such a name from a real account.
    pub fn decoy(hash: ScramHash, user: &str, secret: &[u8]) -> ScramKeys {
        let salt = ScramHash::Sha256.hmac(secret, &[b"salt\0", user.as_bytes()]);
        let stored = hash.hmac(secret, &[b"stored\0", user.as_bytes()]);
        let server = hash.hmac(secret, &[b"server\0", user.as_bytes()]);
        ScramKeys {
            hash,
            iterations: DEFAULT_ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: stored,
            server_key: server,
        }
    }

    /// Reads the part after `{SCRAM-SHA-...}`: `iterations,salt,StoredKey,ServerKey`.
    pub fn parse(hash: ScramHash, text: &str) -> Option<ScramKeys> {
        let mut parts = text.trim().split(',');
        let iterations: u32 = parts.next()?.parse().ok()?;
        let salt = B64.decode(parts.next()?).ok()?;
        let stored_key = B64.decode(parts.next()?).ok()?;
        let server_key = B64.decode(parts.next()?).ok()?;
        // gsasl appends the salted password in verbose mode; nothing else.
        if parts.count() > 1 {
            return None;
        }
        let len = hash.digest(b"").len();
        if iterations == 0
            || iterations > MAX_ITERATIONS
            || salt.is_empty()
            || stored_key.len() != len
            || server_key.len() != len
        {
            return None;
        }
        Some(ScramKeys {
            hash,
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The stored form, with its `{SCHEME}` prefix.
    pub fn encode(&self) -> String {
        format!(
            "{{{}}}{},{},{},{}",
            self.hash.name(),
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    /// Whether `password` is the one these keys were made from (a LOGIN
    /// against a SCRAM-stored account): costs the keys' iterations.
    pub fn matches_password(&self, password: &[u8]) -> bool {
        let fresh = ScramKeys::derive(self.hash, password, &self.salt, self.iterations);
        crate::scheme::constant_time_eq(&fresh.stored_key, &self.stored_key)
    }
}

/// What the client said about channel binding (the GS2 flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `n`: the client does not support it.
    None,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=name`: bound to the TLS channel by the named type.
    Bound(String),
}

/// The client's first message.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The channel binding flag.
    pub binding: Binding,
    /// The identity to act as (`a=`), if given.
    pub authzid: Option<String>,
    /// The user name (`n=`), unescaped.
    pub user: String,
    /// The client's nonce.
    pub nonce: String,
    gs2_header: String,
    bare: String,
}

/// Decodes a `saslname` (`=2C` is `,`, `=3D` is `=`).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A nonce: printable ASCII without `,`.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn malformed() -> SaslError {
    SaslError::Malformed("SCRAM")
}

/// Parses the client's first message.
///
/// # Errors
/// [`SaslError::Malformed`] for anything RFC 5802 §7 does not allow, a
/// mandatory extension (`m=`) included.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| malformed())?;
    let (flag, rest) = text.split_once(',').ok_or_else(malformed)?;
    let binding = match flag {
        "n" => Binding::None,
        "y" => Binding::ClientOnly,
        f => match f.strip_prefix("p=") {
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                Binding::Bound(name.to_owned())
            }
            _ => return Err(malformed()),
        },
    };
    let (authz, bare) = rest.split_once(',').ok_or_else(malformed)?;
    let authzid = match authz {
        "" => None,
        a => {
            let name = a.strip_prefix("a=").ok_or_else(malformed)?;
            Some(
                unescape(name)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(malformed)?,
            )
        }
    };
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .and_then(unescape)
        .filter(|u| !u.is_empty())
        .ok_or_else(malformed)?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or_else(malformed)?;
    Ok(ClientFirst {
        binding,
        authzid,
        user,
        nonce: nonce.to_owned(),
        gs2_header: format!("{flag},{authz},"),
        bare: bare.to_owned(),
    })
}

/// One exchange after the client's first message: the server's first
/// message sent, the client's final message awaited.
#[derive(Debug, Clone)]
pub struct Exchange {
    first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Starts the exchange with the account's `keys` (or decoy keys) and
    /// a fresh random `server_nonce` (printable, no `,`).
    pub fn new(first: ClientFirst, keys: &ScramKeys, server_nonce: &str) -> Exchange {
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        Exchange {
            first,
            server_first,
            nonce,
        }
    }

    /// The server's first message.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// The client's first message.
    pub fn client_first(&self) -> &ClientFirst {
        &self.first
    }

    /// Checks the client's final message against `keys`; `binding_data` is
    /// the channel's binding data for the type the client named (`None`
    /// when it named none). The server's final message when the proof is
    /// right, `None` when it is not.
    ///
    /// # Errors
    /// [`SaslError::Malformed`] for a message RFC 5802 does not allow;
    /// [`SaslError::ChannelBinding`] when the client's binding is not this
    /// channel's.
    pub fn finish(
        &self,
        msg: &[u8],
        keys: &ScramKeys,
        binding_data: Option<&[u8]>,
    ) -> Result<Option<String>, SaslError> {
        let text = std::str::from_utf8(msg).map_err(|_| malformed())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(malformed)?;
        let proof = B64.decode(proof).map_err(|_| malformed())?;
        let mut fields = without_proof.split(',');
        let cbind = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .and_then(|c| B64.decode(c).ok())
            .ok_or_else(malformed)?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or_else(malformed)?;
        let mut expected = self.first.gs2_header.as_bytes().to_vec();
        if let Binding::Bound(_) = self.first.binding {
            expected.extend_from_slice(binding_data.ok_or(SaslError::ChannelBinding)?);
        }
        if cbind != expected {
            return Err(SaslError::ChannelBinding);
        }
        if nonce != self.nonce {
            return Err(malformed());
        }
        let hash = keys.hash;
        if proof.len() != keys.stored_key.len() {
            return Ok(None);
        }
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = hash.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !crate::scheme::constant_time_eq(&hash.digest(&client_key), &keys.stored_key) {
            return Ok(None);
        }
        let server_signature = hash.hmac(&keys.server_key, &[auth_message.as_bytes()]);
        Ok(Some(format!("v={}", B64.encode(server_signature))))
    }
}

/// A fresh server nonce: 18 random bytes in base64.
pub fn server_nonce() -> String {
    use rand::RngCore as _;
    let mut n = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut n);
    B64.encode(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client side, to drive the server side with.
    fn client_final(
        hash: ScramHash,
        password: &[u8],
        client_first_bare: &str,
        gs2: &str,
        cb: &[u8],
        server_first: &str,
    ) -> String {
        let mut f = server_first.split(',');
        let nonce = f.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(f.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iter: u32 = f
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let salted = hash.hi(password, &salt, iter);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        let stored = hash.digest(&client_key);
        let mut c = gs2.as_bytes().to_vec();
        c.extend_from_slice(cb);
        let without = format!("c={},r={nonce}", B64.encode(&c));
        let am = format!("{client_first_bare},{server_first},{without}");
        let sig = hash.hmac(&stored, &[am.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without},p={}", B64.encode(proof))
    }

    #[test]
    fn rfc_7677_example() {
        // RFC 7677 §3: user "user", password "pencil".
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(ScramHash::Sha256, b"pencil", &salt, 4096);
        let ex = Exchange::new(first, &keys, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            ex.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = ex
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                &keys,
                None,
            )
            .unwrap();
        assert_eq!(
            fin.as_deref(),
            Some("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
    }

    #[test]
    fn rfc_5802_sha1_example() {
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let keys = ScramKeys::derive(ScramHash::Sha1, b"pencil", &salt, 4096);
        let ex = Exchange::new(first, &keys, "3rfcNHYJY1ZVvWVs7j");
        let fin = ex
            .finish(
                b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                &keys,
                None,
            )
            .unwrap();
        assert_eq!(fin.as_deref(), Some("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="));
    }

    #[test]
    fn stored_keys_round_trip_and_check_a_password() {
        let k = ScramKeys::generate(ScramHash::Sha256, b"secret");
        let text = k.encode();
        let body = text.strip_prefix("{SCRAM-SHA-256}").unwrap();
        let back = ScramKeys::parse(ScramHash::Sha256, body).unwrap();
        assert_eq!(back, k);
        assert!(back.matches_password(b"secret"));
        assert!(!back.matches_password(b"Secret"));
        // Keys of the wrong length or absurd cost are refused.
        assert!(ScramKeys::parse(ScramHash::Sha1, body).is_none());
        assert!(ScramKeys::parse(ScramHash::Sha256, "99999999,AAAA,AAAA,AAAA").is_none());
        assert!(ScramKeys::parse(ScramHash::Sha256, "").is_none());
    }

    #[test]
    fn binding_is_checked_against_the_channel() {
        let keys = ScramKeys::generate(ScramHash::Sha256, b"pw");
        let first = parse_client_first(b"p=tls-exporter,,n=bob,r=abc").unwrap();
        assert_eq!(first.binding, Binding::Bound("tls-exporter".into()));
        let ex = Exchange::new(first, &keys, "xyz");
        let good = client_final(
            ScramHash::Sha256,
            b"pw",
            "n=bob,r=abc",
            "p=tls-exporter,,",
            b"CHANNEL",
            ex.server_first(),
        );
        assert!(ex
            .finish(good.as_bytes(), &keys, Some(b"CHANNEL"))
            .unwrap()
            .is_some());
        assert_eq!(
            ex.finish(good.as_bytes(), &keys, Some(b"OTHER")),
            Err(SaslError::ChannelBinding)
        );
        assert_eq!(
            ex.finish(good.as_bytes(), &keys, None),
            Err(SaslError::ChannelBinding)
        );
        let wrong = client_final(
            ScramHash::Sha256,
            b"nope",
            "n=bob,r=abc",
            "p=tls-exporter,,",
            b"CHANNEL",
            ex.server_first(),
        );
        assert_eq!(
            ex.finish(wrong.as_bytes(), &keys, Some(b"CHANNEL")),
            Ok(None)
        );
    }

    #[test]
    fn first_messages() {
        let f = parse_client_first(b"n,a=al=2Cice,n=ma=3Dster,r=x").unwrap();
        assert_eq!(f.authzid.as_deref(), Some("al,ice"));
        assert_eq!(f.user, "ma=ster");
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=a,r=b",
            b"n,,n=,r=b",
            b"n,,n=a",
            b"n,,m=ext,n=a,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=a,r=b c",
            b"n,b=x,n=a,r=b",
            b"p=,,n=a,r=b",
            b"n,,n=a,r=\xff",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoys_are_stable_per_name_and_match_nothing() {
        let a = ScramKeys::decoy(ScramHash::Sha256, "nobody", b"k");
        assert_eq!(a, ScramKeys::decoy(ScramHash::Sha256, "nobody", b"k"));
        assert_ne!(
            a.salt,
            ScramKeys::decoy(ScramHash::Sha256, "other", b"k").salt
        );
        assert!(!a.matches_password(b""));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(m in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_client_first(&m);
            if let Ok(f) = parse_client_first(b"n,,n=u,r=n") {
                let keys = ScramKeys::decoy(ScramHash::Sha1, "u", b"s");
                let ex = Exchange::new(f, &keys, "s");
                let _ = ex.finish(&m, &keys, None);
            }
        }
    }
}
