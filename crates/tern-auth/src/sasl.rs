//! SASL mechanisms PLAIN (RFC 4616) and LOGIN, without I/O.

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
}
