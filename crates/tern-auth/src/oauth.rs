//! OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's form): a bearer token is
//! checked by the site's OAuth 2.0 token introspection endpoint (RFC 7662),
//! which says whether it is active and whose it is.
//!
//! The endpoint is asked with a small HTTP/1.0 POST (`token=...`, HTTP basic
//! authentication with the configured client id and secret), over TLS for
//! `https://` with the configured CA; the answer is read up to 64 KiB within
//! the timeout, and at most `max_running` requests are open at once.
//! HTTP/1.0 keeps the answer unchunked and the connection one-shot.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::AuthError;

/// Largest introspection answer read.
const MAX_ANSWER: u64 = 64 * 1024;

/// Largest token accepted.
pub const MAX_TOKEN: usize = 16 * 1024;

/// What a client sent in an OAUTHBEARER or XOAUTH2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerMessage {
    /// The user the client names (`a=` for OAUTHBEARER, `user=` for
    /// XOAUTH2), if any.
    pub user: Option<String>,
    /// The token.
    pub token: String,
}

fn malformed(m: &'static str) -> crate::sasl::SaslError {
    crate::sasl::SaslError::Malformed(m)
}

/// Parses `auth=Bearer TOKEN` among `\x01`-separated key-value pairs.
fn bearer_of(pairs: &str, m: &'static str) -> Result<String, crate::sasl::SaslError> {
    let auth = pairs
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .ok_or_else(|| malformed(m))?;
    let (scheme, token) = auth.split_once(' ').ok_or_else(|| malformed(m))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed(m));
    }
    let token = token.trim();
    // RFC 6750 b64token characters.
    if token.is_empty()
        || token.len() > MAX_TOKEN
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
    {
        return Err(malformed(m));
    }
    Ok(token.to_owned())
}

/// Parses an OAUTHBEARER client response:
/// `n,a=user,\x01host=...\x01port=...\x01auth=Bearer TOKEN\x01\x01`.
///
/// # Errors
/// [`crate::sasl::SaslError::Malformed`] for any other shape.
pub fn parse_oauthbearer(msg: &[u8]) -> Result<BearerMessage, crate::sasl::SaslError> {
    const M: &str = "OAUTHBEARER";
    let text = std::str::from_utf8(msg).map_err(|_| malformed(M))?;
    let body = text.strip_suffix("\x01\x01").ok_or_else(|| malformed(M))?;
    let (gs2, pairs) = body.split_once('\x01').ok_or_else(|| malformed(M))?;
    let mut parts = gs2.split(',');
    if !matches!(parts.next(), Some("n") | Some("y")) {
        return Err(malformed(M));
    }
    let user = match parts.next() {
        Some("") | None => None,
        Some(a) => Some(
            a.strip_prefix("a=")
                .map(|u| u.replace("=2C", ",").replace("=3D", "="))
                .filter(|u| !u.is_empty())
                .ok_or_else(|| malformed(M))?,
        ),
    };
    Ok(BearerMessage {
        user,
        token: bearer_of(pairs, M)?,
    })
}

/// Parses an XOAUTH2 client response: `user=USER\x01auth=Bearer TOKEN\x01\x01`.
///
/// # Errors
/// [`crate::sasl::SaslError::Malformed`] for any other shape.
pub fn parse_xoauth2(msg: &[u8]) -> Result<BearerMessage, crate::sasl::SaslError> {
    const M: &str = "XOAUTH2";
    let text = std::str::from_utf8(msg).map_err(|_| malformed(M))?;
    let body = text.strip_suffix("\x01\x01").ok_or_else(|| malformed(M))?;
    let user = body
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("user="))
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    Ok(BearerMessage {
        user,
        token: bearer_of(body, M)?,
    })
}

/// The error a server sends before failing an OAUTHBEARER or XOAUTH2
/// exchange (RFC 7628 §3.2.2).
pub fn failure_json() -> &'static str {
    r#"{"status":"invalid_token","schemes":"bearer"}"#
}

/// A configured introspection endpoint.
#[derive(Clone)]
pub struct Introspection {
    tls: bool,
    host: String,
    port: u16,
    path: String,
    authorization: String,
    username_field: String,
    timeout: Duration,
    connector: Option<tokio_rustls::TlsConnector>,
    running: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Introspection {
    /// The endpoint at `url` (`http://` or `https://`), asked as
    /// `client_id`/`client_secret`; `username_field` of the answer names
    /// the account (`username`, `sub`, `email`...); `ca` verifies an
    /// `https://` endpoint.
    ///
    /// # Errors
    /// A URL or CA file that cannot be used, as text for the operator.
    pub fn new(
        url: &str,
        client_id: &str,
        client_secret: &str,
        username_field: &str,
        timeout: Duration,
        connector: Option<tokio_rustls::TlsConnector>,
    ) -> Result<Introspection, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url}: not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ') {
            return Err(format!("{url}: not a usable URL"));
        }
        if tls && connector.is_none() {
            return Err(format!("{url}: an https:// endpoint needs oauth.ca"));
        }
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{client_id}:{client_secret}"));
        Ok(Introspection {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
            authorization: format!("Basic {basic}"),
            username_field: username_field.to_owned(),
            timeout,
            connector: if tls { connector } else { None },
            running: Arc::new(tokio::sync::Semaphore::new(32)),
        })
    }

    /// Whose `token` is, when the endpoint says it is active; `None` when
    /// it is not (or names no account).
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the endpoint does not answer in
    /// time, answers anything but 200 with JSON, or too many requests are
    /// open.
    pub async fn check(&self, token: &str) -> Result<Option<String>, AuthError> {
        let unavailable =
            |why: String| AuthError::Unavailable(format!("OAuth introspection: {why}"));
        let Ok(_permit) = self.running.clone().try_acquire_owned() else {
            return Err(unavailable("too many requests open".into()));
        };
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let request = format!(
            "POST {} HTTP/1.0\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.path,
            self.host,
            self.authorization,
            body.len()
        );
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            if self.tls {
                let Some(c) = &self.connector else {
                    return Err("no TLS configuration".to_owned());
                };
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| e.to_string())?;
                let mut s = c.connect(name, tcp).await.map_err(|e| e.to_string())?;
                s.write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.take(MAX_ANSWER).read_to_end(&mut answer).await;
            } else {
                let mut s = tcp;
                s.write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.take(MAX_ANSWER).read_to_end(&mut answer).await;
            }
            Ok(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unavailable("timed out".into()))?
            .map_err(unavailable)?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| unavailable("no HTTP answer".into()))?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(unavailable(format!("HTTP status {status}")));
        }
        let json: serde_json::Value =
            serde_json::from_str(body.trim()).map_err(|e| unavailable(format!("JSON: {e}")))?;
        if json.get("active").and_then(serde_json::Value::as_bool) != Some(true) {
            return Ok(None);
        }
        // An expired token the endpoint still calls active is not.
        if let Some(exp) = json.get("exp").and_then(serde_json::Value::as_u64) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if exp <= now {
                return Ok(None);
            }
        }
        Ok(json
            .get(&self.username_field)
            .and_then(serde_json::Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_owned))
    }
}

/// A JWKS file, re-read when it changes (providers rotate their keys), at
/// most once a second.
#[derive(Debug)]
struct JwksFile {
    settings: JwtSettings,
    state: std::sync::Mutex<JwksState>,
}

#[derive(Debug)]
struct JwksState {
    validator: Arc<crate::jwt::JwtValidator>,
    mtime: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

/// Reads the key file of `j`: the validator and the file's mtime.
fn load_keys(
    j: &JwtSettings,
) -> Result<(crate::jwt::JwtValidator, Option<std::time::SystemTime>), String> {
    let text =
        std::fs::read_to_string(&j.keys).map_err(|e| format!("{}: {e}", j.keys.display()))?;
    let mtime = std::fs::metadata(&j.keys).and_then(|m| m.modified()).ok();
    let v = crate::jwt::JwtValidator::new(
        &text,
        j.issuer.clone(),
        j.audience.clone(),
        j.leeway_secs,
        &j.username_claim,
    )
    .map_err(|e| format!("{}: {e}", j.keys.display()))?;
    Ok((v, mtime))
}

impl JwksFile {
    fn open(settings: JwtSettings) -> Result<JwksFile, String> {
        let (v, mtime) = load_keys(&settings)?;
        Ok(JwksFile {
            settings,
            state: std::sync::Mutex::new(JwksState {
                validator: Arc::new(v),
                mtime,
                checked: std::time::Instant::now(),
            }),
        })
    }

    /// The current keys: a file that changed is read again; one that
    /// became unusable keeps the last good keys (and says so in the log).
    fn current(&self) -> Arc<crate::jwt::JwtValidator> {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = std::time::Instant::now();
            let path = &self.settings.keys;
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if mtime != st.mtime {
                match load_keys(&self.settings) {
                    Ok((v, m)) => {
                        st.validator = Arc::new(v);
                        st.mtime = m;
                        tracing::info!(path = %path.display(), "JWT keys re-read");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "JWT keys not re-read, the old ones stay");
                    }
                }
            }
        }
        st.validator.clone()
    }
}

/// How bearer tokens are checked: a token in the form of a JWT by the
/// configured keys when there are some, any other token (or every token,
/// without keys) by the introspection endpoint.
#[derive(Debug)]
pub struct TokenCheck {
    introspection: Option<Introspection>,
    jwks: Option<JwksFile>,
}

/// Where `[auth.oauth]` keeps the keys of locally checked tokens.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The JSON Web Key Set file.
    pub keys: std::path::PathBuf,
    /// The required `iss`.
    pub issuer: Option<String>,
    /// The required `aud`.
    pub audience: Option<String>,
    /// Clock difference forgiven on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// The claim naming the account.
    pub username_claim: String,
}

impl TokenCheck {
    /// Checks by `introspection`, by the keys of `jwt`, or both.
    ///
    /// # Errors
    /// Neither given, or a key file that cannot be used.
    pub fn new(
        introspection: Option<Introspection>,
        jwt: Option<JwtSettings>,
    ) -> Result<TokenCheck, String> {
        let jwks = jwt.map(JwksFile::open).transpose()?;
        if introspection.is_none() && jwks.is_none() {
            return Err("needs introspection_url or jwt_keys".into());
        }
        Ok(TokenCheck {
            introspection,
            jwks,
        })
    }

    /// Whose `token` is, when it is valid; `None` when it is not.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when the introspection endpoint cannot
    /// say.
    pub async fn check(&self, token: &str) -> Result<Option<String>, AuthError> {
        if let Some(j) = &self.jwks {
            if crate::jwt::JwtValidator::looks_like_jwt(token) {
                return Ok(j.current().check(token));
            }
        }
        match &self.introspection {
            Some(i) => i.check(token).await,
            None => Ok(None),
        }
    }
}

/// `application/x-www-form-urlencoded` of a value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_messages() {
        let m = parse_oauthbearer(
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01",
        )
        .unwrap();
        assert_eq!(m.user.as_deref(), Some("user@example.com"));
        assert_eq!(m.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        let m = parse_oauthbearer(b"n,,\x01auth=Bearer abc\x01\x01").unwrap();
        assert_eq!(m.user, None);
        for bad in [
            &b"n,,\x01auth=Bearer abc"[..],
            b"n,,\x01auth=Basic abc\x01\x01",
            b"x,,\x01auth=Bearer abc\x01\x01",
            b"n,,\x01auth=Bearer a b\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,b=x,\x01auth=Bearer abc\x01\x01",
        ] {
            assert!(parse_oauthbearer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xoauth2_messages() {
        let m = parse_xoauth2(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01").unwrap();
        assert_eq!(m.user.as_deref(), Some("someuser@example.com"));
        assert!(m.token.starts_with("ya29."));
        assert!(parse_xoauth2(b"user=x\x01auth=Bearer \x01\x01").is_err());
    }

    #[test]
    fn endpoints() {
        let d = Duration::from_secs(1);
        let i = Introspection::new(
            "http://127.0.0.1:8080/introspect",
            "a",
            "b",
            "username",
            d,
            None,
        )
        .unwrap();
        assert_eq!(
            (i.host.as_str(), i.port, i.path.as_str()),
            ("127.0.0.1", 8080, "/introspect")
        );
        assert!(Introspection::new("https://idp.example/x", "a", "b", "sub", d, None).is_err());
        assert!(Introspection::new("ftp://x/", "a", "b", "sub", d, None).is_err());
        assert_eq!(form_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
