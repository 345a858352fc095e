//! LOGIN and AUTHENTICATE (PLAIN, LOGIN; SASL-IR, RFC 4959).

use base64::Engine as _;
use imap_codec::imap_types::auth::AuthMechanism;
use tern_imap_proto::framing;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

use super::session::{End, Reply, Session, State};
use crate::users::{Denied, LoginResult, User};

/// What a LOGIN or AUTHENTICATE comes to.
#[derive(Debug)]
pub(crate) enum LoginAnswer {
    /// The credentials are good: this is the account (its Maildir made).
    Accepted(User),
    /// Refused, with the tagged answer.
    Refused(Reply),
}

impl From<Reply> for LoginAnswer {
    fn from(r: Reply) -> Self {
        LoginAnswer::Refused(r)
    }
}

/// The answer to a password sent where cleartext logins are not allowed.
fn privacy_required() -> Reply {
    Reply::no(
        Some(Code::PrivacyRequired),
        "Plaintext login is disabled: use STARTTLS or the TLS port",
    )
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl Session {
    pub(crate) async fn login(&mut self, user: String, pass: Vec<u8>) -> Result<LoginAnswer, End> {
        if !self.cleartext_allowed() {
            return Ok(privacy_required().into());
        }
        self.check_credentials(user, pass).await
    }

    pub(crate) async fn authenticate(
        &mut self,
        mechanism: AuthMechanism<'static>,
        ir: Option<Vec<u8>>,
    ) -> Result<LoginAnswer, End> {
        // Both mechanisms carry the password in the clear.
        if matches!(mechanism, AuthMechanism::Plain | AuthMechanism::Login)
            && !self.cleartext_allowed()
        {
            return Ok(privacy_required().into());
        }
        match mechanism {
            AuthMechanism::Plain => {
                let msg = match ir {
                    Some(m) => m,
                    None => match self.sasl_step("").await? {
                        Ok(m) => m,
                        Err(r) => return Ok(r.into()),
                    },
                };
                match tern_auth::sasl::decode_plain(&msg) {
                    Ok(c) => {
                        if c.authzid.as_deref().is_some_and(|z| z != c.authcid) {
                            return Ok(Reply::no(
                                Some(Code::AuthorizationFailed),
                                "Acting as another user is not allowed",
                            )
                            .into());
                        }
                        self.check_credentials(c.authcid, c.password.expose().clone())
                            .await
                    }
                    Err(e) => Ok(Reply::bad(format!("Invalid SASL message: {e}")).into()),
                }
            }
            AuthMechanism::Login => {
                let user = match ir {
                    Some(u) => u,
                    None => match self.sasl_step("VXNlcm5hbWU6").await? {
                        Ok(u) => u,
                        Err(r) => return Ok(r.into()),
                    },
                };
                let pass = match self.sasl_step("UGFzc3dvcmQ6").await? {
                    Ok(p) => p,
                    Err(r) => return Ok(r.into()),
                };
                self.check_credentials(String::from_utf8_lossy(&user).into_owned(), pass)
                    .await
            }
            other => Ok(Reply::no(
                Some(Code::Cannot),
                format!("Unsupported authentication mechanism {other}"),
            )
            .into()),
        }
    }

    /// Sends a SASL challenge and reads the client's base64 answer.
    async fn sasl_step(&mut self, challenge: &str) -> Result<Result<Vec<u8>, Reply>, End> {
        self.conn
            .out
            .extend_from_slice(format!("+ {challenge}\r\n").as_bytes());
        self.flush().await?;
        let Some(line) = self.read_line().await? else {
            return Ok(Err(Reply::bad_code(Code::Limit, "SASL response too long")));
        };
        let line = framing::strip_eol(&line);
        if line == b"*" {
            return Ok(Err(Reply::bad("Authentication cancelled")));
        }
        if line == b"=" {
            return Ok(Ok(Vec::new()));
        }
        match B64.decode(line) {
            Ok(v) => Ok(Ok(v)),
            Err(_) => Ok(Err(Reply::bad("Invalid base64 in SASL response"))),
        }
    }

    /// Checks the credentials; on success the account is returned, not
    /// installed: the pre-login phase decides what becomes of it.
    async fn check_credentials(&mut self, user: String, pass: Vec<u8>) -> Result<LoginAnswer, End> {
        let result = crate::login::verify(
            &self.svc,
            user.clone(),
            pass,
            "imap",
            self.peer,
            self.conn.tls_active,
        )
        .await;
        match result {
            LoginResult::Ok(u) => {
                if let Err(e) = crate::login::prepare(&self.svc, &u).await {
                    tracing::error!(user = %u.name, cause = %e, "cannot create the Maildir");
                    return Ok(Reply::no(
                        Some(Code::Unavailable),
                        "Mailbox store unavailable, try again later",
                    )
                    .into());
                }
                tracing::Span::current().record("user", u.name.as_str());
                tracing::info!(tls = self.conn.tls_active, "login");
                Ok(LoginAnswer::Accepted(u))
            }
            LoginResult::TempFail(why) => {
                tracing::error!(cause = %why, "user database unavailable");
                Ok(Reply::no(
                    Some(Code::Unavailable),
                    "Authentication service unavailable, try again later",
                )
                .into())
            }
            LoginResult::Blocked => Ok(Reply::no(
                Some(Code::Unavailable),
                "Too many failed logins from your address; try again later",
            )
            .into()),
            LoginResult::Denied(Denied::Service) => Ok(Reply::no(
                Some(Code::AuthorizationFailed),
                "IMAP access is disabled for this account",
            )
            .into()),
            LoginResult::Denied(Denied::NeedsTls) => Ok(Reply::no(
                Some(Code::PrivacyRequired),
                "This account may log in over TLS only (use STARTTLS or port 993)",
            )
            .into()),
            LoginResult::Failed => {
                let failures = match &mut self.state {
                    State::NotAuthenticated { failures } => {
                        *failures += 1;
                        *failures
                    }
                    _ => 1,
                };
                tracing::info!(attempted = %user, failures, "authentication failed");
                crate::login::failure_pause(&self.svc, failures, self.peer).await;
                if failures >= self.svc.max_auth_failures {
                    // The tagged NO follows, then the run loop closes.
                    self.untagged("BYE Too many failed logins");
                    self.state = State::Logout;
                }
                Ok(Reply::no(Some(Code::AuthenticationFailed), "Authentication failed").into())
            }
        }
    }
}
