//! Bearer tokens checked here, without asking anyone: a JSON Web Token
//! (RFC 7519) signed by a key of the site's identity provider, given as a
//! JSON Web Key Set (RFC 7517, what the provider publishes at its
//! `jwks_uri`).
//!
//! A token is accepted only when its signature verifies with a key of the
//! set under an algorithm that key allows (`none` never is: the algorithm
//! comes from the key, not from the token), it has not expired (`exp` is
//! required), it is already valid (`nbf`), and, where configured, its
//! issuer and audience are the expected ones. The account is the claim the
//! operator names (`sub`, `email`, `preferred_username`...). Verifying is a
//! single signature check on at most [`crate::oauth::MAX_TOKEN`] bytes, cheap
//! enough to run where the login runs.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// One usable key of the set.
struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The keys and the rules a locally checked token must meet.
pub struct JwtValidator {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    username_claim: String,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The algorithms a key may verify: the one its `alg` names, else those
/// its type and curve allow.
fn algorithms_of(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    use Algorithm as A;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => return Err("an EC key on a curve other than P-256 or P-384".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![A::EdDSA],
            _ => return Err("an OKP key other than Ed25519".into()),
        },
        AlgorithmParameters::OctetKey(_) => vec![A::HS256, A::HS384, A::HS512],
    };
    let Some(named) = jwk.common.key_algorithm else {
        return Ok(by_type);
    };
    let named = match named {
        KeyAlgorithm::HS256 => A::HS256,
        KeyAlgorithm::HS384 => A::HS384,
        KeyAlgorithm::HS512 => A::HS512,
        KeyAlgorithm::ES256 => A::ES256,
        KeyAlgorithm::ES384 => A::ES384,
        KeyAlgorithm::RS256 => A::RS256,
        KeyAlgorithm::RS384 => A::RS384,
        KeyAlgorithm::RS512 => A::RS512,
        KeyAlgorithm::PS256 => A::PS256,
        KeyAlgorithm::PS384 => A::PS384,
        KeyAlgorithm::PS512 => A::PS512,
        KeyAlgorithm::EdDSA => A::EdDSA,
        other => return Err(format!("{other}: not a signature algorithm")),
    };
    if by_type.contains(&named) {
        Ok(vec![named])
    } else {
        Err(format!("alg {named:?} does not fit the key's type"))
    }
}

impl JwtValidator {
    /// The validator for the key set `jwks` (JSON text): tokens must come
    /// from `issuer` and be meant for `audience` where those are given,
    /// `leeway_secs` of clock difference is forgiven, and `username_claim`
    /// names the account.
    ///
    /// # Errors
    /// A key set that is not JSON, holds no usable key, or a key that
    /// cannot be used (private parts are never needed and ignored), as text
    /// for the operator.
    pub fn new(
        jwks: &str,
        issuer: Option<String>,
        audience: Option<String>,
        leeway_secs: u64,
        username_claim: &str,
    ) -> Result<JwtValidator, String> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let name = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            let algorithms = algorithms_of(jwk).map_err(|e| format!("key {name}: {e}"))?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {name}: {e}"))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithms,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the key set holds no key".into());
        }
        Ok(JwtValidator {
            keys,
            issuer,
            audience,
            leeway_secs,
            username_claim: username_claim.to_owned(),
        })
    }

    /// Whether `token` has the form of a JWT (three base64url parts), so
    /// that an opaque token can go to introspection instead.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = 0;
        for p in token.split('.') {
            if p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return false;
            }
            parts += 1;
        }
        parts == 3
    }

    /// The account `token` was issued to, when it is valid; `None` when it
    /// is not (bad signature, unknown key, expired, wrong issuer or
    /// audience, no account claim).
    pub fn check(&self, token: &str) -> Option<String> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&header.alg)
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        });
        for k in candidates {
            let mut v = Validation::new(header.alg);
            v.algorithms = vec![header.alg];
            v.leeway = self.leeway_secs;
            // A configured issuer or audience is required, not only
            // compared when present.
            let mut required = vec!["exp"];
            if self.issuer.is_some() {
                required.push("iss");
            }
            if self.audience.is_some() {
                required.push("aud");
            }
            v.set_required_spec_claims(&required);
            v.validate_nbf = true;
            match &self.audience {
                Some(a) => v.set_audience(&[a]),
                None => v.validate_aud = false,
            }
            if let Some(i) = &self.issuer {
                v.set_issuer(&[i]);
            }
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &v) {
                Ok(data) => {
                    return data
                        .claims
                        .get(&self.username_claim)
                        .and_then(serde_json::Value::as_str)
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned);
                }
                Err(e) => {
                    tracing::debug!(cause = %e, "bearer token refused");
                    if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                        // The signature held: the claims are what failed,
                        // and another key will not change them.
                        return None;
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn hs_set() -> String {
        format!(
            r#"{{"keys":[{{"kty":"oct","kid":"k1","alg":"HS256","k":"{}"}}]}}"#,
            b64(b"0123456789abcdef0123456789abcdef")
        )
    }

    fn hs_token(claims: &serde_json::Value, kid: Option<&str>, secret: &[u8]) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn a_signed_unexpired_token_names_its_account() {
        let v = JwtValidator::new(&hs_set(), None, None, 0, "sub").unwrap();
        let secret = b"0123456789abcdef0123456789abcdef";
        let good = serde_json::json!({"sub": "alice", "exp": now() + 60});
        let t = hs_token(&good, Some("k1"), secret);
        assert!(JwtValidator::looks_like_jwt(&t));
        assert_eq!(v.check(&t).as_deref(), Some("alice"));
        // No kid: every key of the right algorithm is tried.
        assert_eq!(
            v.check(&hs_token(&good, None, secret)).as_deref(),
            Some("alice")
        );
        // Another secret, another kid, expired, no exp, not yet valid, no claim.
        assert_eq!(v.check(&hs_token(&good, Some("k1"), b"wrong")), None);
        assert_eq!(v.check(&hs_token(&good, Some("k2"), secret)), None);
        for bad in [
            serde_json::json!({"sub": "alice", "exp": now() - 10}),
            serde_json::json!({"sub": "alice"}),
            serde_json::json!({"sub": "alice", "exp": now() + 60, "nbf": now() + 600}),
            serde_json::json!({"email": "alice", "exp": now() + 60}),
        ] {
            assert_eq!(v.check(&hs_token(&bad, Some("k1"), secret)), None, "{bad}");
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let v = JwtValidator::new(
            &hs_set(),
            Some("https://idp.example".into()),
            Some("imap".into()),
            0,
            "sub",
        )
        .unwrap();
        let t = |c: serde_json::Value| hs_token(&c, Some("k1"), secret);
        let exp = now() + 60;
        assert_eq!(
            v.check(&t(serde_json::json!({"sub":"a","exp":exp,"iss":"https://idp.example","aud":["imap","smtp"]})))
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            v.check(&t(
                serde_json::json!({"sub":"a","exp":exp,"iss":"https://evil.example","aud":"imap"})
            )),
            None
        );
        assert_eq!(
            v.check(&t(
                serde_json::json!({"sub":"a","exp":exp,"iss":"https://idp.example","aud":"web"})
            )),
            None
        );
        assert_eq!(
            v.check(&t(serde_json::json!({"sub":"a","exp":exp,"aud":"imap"}))),
            None
        );
        assert_eq!(
            v.check(&t(
                serde_json::json!({"sub":"a","exp":exp,"iss":"https://idp.example"})
            )),
            None
        );
    }

    #[test]
    fn the_algorithm_comes_from_the_key_not_the_token() {
        // An unsigned token ("alg":"none") and an HMAC token signed with
        // an EC key's public coordinates as the secret both fail.
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        let set = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"ec","x":"{}","y":"{}"}}]}}"#,
            b64(&raw[1..33]),
            b64(&raw[33..65])
        );
        let v = JwtValidator::new(&set, None, None, 0, "sub").unwrap();
        let claims = serde_json::json!({"sub": "alice", "exp": now() + 60});
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec".into());
        let pem = kp.serialize_pem();
        let good = encode(
            &h,
            &claims,
            &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(v.check(&good).as_deref(), Some("alice"));
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","kid":"ec"}"#),
            b64(claims.to_string().as_bytes())
        );
        assert_eq!(v.check(&none), None);
        assert!(!JwtValidator::looks_like_jwt(&none));
        let confused = hs_token(&claims, Some("ec"), raw);
        assert_eq!(v.check(&confused), None);
    }

    #[test]
    fn unusable_key_sets_are_refused() {
        for bad in [
            "",
            "{}",
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"oct","k":"AAAA","alg":"RS256"}]}"#,
            r#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#,
        ] {
            assert!(
                JwtValidator::new(bad, None, None, 0, "sub").is_err(),
                "{bad}"
            );
        }
        assert!(!JwtValidator::looks_like_jwt("opaque-token"));
        assert!(!JwtValidator::looks_like_jwt("a.b"));
        assert!(!JwtValidator::looks_like_jwt("a..c"));
    }
}
