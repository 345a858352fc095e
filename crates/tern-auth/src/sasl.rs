//! SASL mechanisms without I/O: the names, PLAIN (RFC 4616), LOGIN and
//! CRAM-MD5 (RFC 2195); SCRAM is in [`crate::scram`].

use crate::Secret;

/// Credentials a client presented.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The identity to act as, if different from `authcid` (we only allow
    /// it to be empty or equal).
    pub authzid: Option<String>,
    /// The user name.
    pub authcid: String,
    /// The password.
    pub password: Secret<Vec<u8>>,
}

/// Why a SASL message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The message is not valid for the mechanism.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// The client's channel binding is not this connection's (or it said
    /// the server has none where the server offers it): a man in the
    /// middle, or a client that was told a downgraded list.
    #[error("channel binding does not match")]
    ChannelBinding,
}

/// A SASL mechanism tern serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
    /// CRAM-MD5 (RFC 2195): needs the password in the clear on the server.
    CramMd5,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// SCRAM-SHA-1-PLUS: with channel binding.
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: with channel binding.
    ScramSha256Plus,
    /// EXTERNAL (RFC 4422 appendix A): the identity the TLS client
    /// certificate proved.
    External,
    /// OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token.
    OAuthBearer,
    /// XOAUTH2: the same, in Google's older form.
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order they are offered in).
    pub const ALL: [Mechanism; 10] = [
        Mechanism::External,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::External => "EXTERNAL",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The mechanism named `name` (any case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the password itself crosses the wire (allowed only where
    /// cleartext logins are).
    pub fn is_cleartext(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }

    /// Whether it binds to the TLS channel (offered only over TLS).
    pub fn needs_tls(self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus | Mechanism::External
        )
    }

    /// Whether the server needs the account's stored password or keys
    /// (no use with a directory that only checks a password by binding).
    pub fn needs_stored_secret(self) -> bool {
        !self.is_cleartext()
            && !matches!(
                self,
                Mechanism::External | Mechanism::OAuthBearer | Mechanism::XOAuth2
            )
    }

    /// Whether it sends a bearer token (offered only with an OAuth
    /// introspection endpoint configured, and where cleartext logins are
    /// allowed: a token is as good as a password while it lives).
    pub fn is_bearer(self) -> bool {
        matches!(self, Mechanism::OAuthBearer | Mechanism::XOAuth2)
    }

    /// The SCRAM hash and whether it is the `-PLUS` form.
    pub fn scram(self) -> Option<(crate::scram::ScramHash, bool)> {
        use crate::scram::ScramHash;
        match self {
            Mechanism::ScramSha1 => Some((ScramHash::Sha1, false)),
            Mechanism::ScramSha1Plus => Some((ScramHash::Sha1, true)),
            Mechanism::ScramSha256 => Some((ScramHash::Sha256, false)),
            Mechanism::ScramSha256Plus => Some((ScramHash::Sha256, true)),
            _ => None,
        }
    }
}

/// A CRAM-MD5 challenge: `<random.time@host>`, never the same twice.
pub fn cram_md5_challenge(hostname: &str) -> String {
    use rand::RngCore as _;
    let r = rand::thread_rng().next_u64();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("<{r}.{t}@{hostname}>")
}

/// Decodes a CRAM-MD5 response: `user SP 32-hex-digits`.
///
/// # Errors
/// [`SaslError::Malformed`] for any other shape.
pub fn decode_cram_md5(msg: &[u8]) -> Result<(String, [u8; 16]), SaslError> {
    let bad = || SaslError::Malformed("CRAM-MD5");
    let text = std::str::from_utf8(msg).map_err(|_| bad())?;
    let (user, hex) = text.rsplit_once(' ').ok_or_else(bad)?;
    if user.is_empty() || hex.len() != 32 {
        return Err(bad());
    }
    let mut digest = [0u8; 16];
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok((user.to_owned(), digest))
}

/// Whether `digest` is HMAC-MD5 of `challenge` keyed with `password`.
pub fn cram_md5_matches(password: &[u8], challenge: &[u8], digest: &[u8; 16]) -> bool {
    use hmac::Mac as _;
    let Ok(mut m) = <hmac::Hmac<md5::Md5> as hmac::digest::KeyInit>::new_from_slice(password)
    else {
        return false;
    };
    m.update(challenge);
    m.verify_slice(digest).is_ok()
}

/// Decodes a PLAIN message: `authzid NUL authcid NUL passwd`.
///
/// # Errors
/// [`SaslError::Malformed`] when the message has not exactly three parts or
/// the names are not UTF-8.
pub fn decode_plain(msg: &[u8]) -> Result<Credentials, SaslError> {
    let parts: Vec<&[u8]> = msg.split(|b| *b == 0).collect();
    let [authz, authc, pass] = parts.as_slice() else {
        return Err(SaslError::Malformed("PLAIN"));
    };
    let authcid = String::from_utf8(authc.to_vec()).map_err(|_| SaslError::Malformed("PLAIN"))?;
    let authzid = String::from_utf8(authz.to_vec()).map_err(|_| SaslError::Malformed("PLAIN"))?;
    if authcid.is_empty() {
        return Err(SaslError::Malformed("PLAIN"));
    }
    Ok(Credentials {
        authzid: (!authzid.is_empty()).then_some(authzid),
        authcid,
        password: Secret::new(pass.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = decode_plain(b"\0alice\0secret").unwrap();
        assert_eq!(c.authcid, "alice");
        assert_eq!(c.password.expose(), b"secret");
        assert!(c.authzid.is_none());
        assert!(decode_plain(b"alice\0secret").is_err());
        assert!(decode_plain(b"\0\0x").is_err());
    }

    #[test]
    fn cram_md5_rfc_2195_example() {
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        let (user, digest) = decode_cram_md5(b"tim b913a602c7eda7a495b4e6e7334d3890").unwrap();
        assert_eq!(user, "tim");
        assert!(cram_md5_matches(b"tanstaaftanstaaf", challenge, &digest));
        assert!(!cram_md5_matches(b"tanstaaf", challenge, &digest));
        for bad in [
            &b"tim"[..],
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim zz13a602c7eda7a495b4e6e7334d3890",
            b"tim b913",
        ] {
            assert!(decode_cram_md5(bad).is_err());
        }
        assert_ne!(cram_md5_challenge("h"), cram_md5_challenge("h"));
    }

    #[test]
    fn mechanism_names() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(&m.name().to_lowercase()), Some(m));
        }
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
    }
}
