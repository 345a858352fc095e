//! LOGIN and AUTHENTICATE (the mechanisms of [`crate::sasl`]; SASL-IR,
//! RFC 4959).

use base64::Engine as _;
use imap_codec::imap_types::auth::AuthMechanism;
use tern_imap_proto::framing;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

use super::session::{End, Reply, Session, State};
use crate::listener::Protocol;
use crate::sasl::{Answer, Outcome, Refusal};
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

impl crate::sasl::Challenger for Session {
    type End = End;

    /// `+ base64` and the client's base64 line (RFC 3501 §6.2.2).
    async fn challenge(&mut self, data: &[u8]) -> Result<Answer, End> {
        self.conn.out.extend_from_slice(b"+ ");
        self.conn.out.extend_from_slice(B64.encode(data).as_bytes());
        self.conn.out.extend_from_slice(b"\r\n");
        self.flush().await?;
        let Some(line) = self.read_line().await? else {
            return Ok(Answer::TooLong);
        };
        let line = framing::strip_eol(&line);
        Ok(crate::sasl::answer(line))
    }
}

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
        let svc = self.svc.clone();
        // The exchange borrows the connection to talk; the context has a
        // copy of what it needs of it.
        let binding = self.conn.binding.clone();
        let ctx = crate::sasl::Context::of(
            &svc,
            "imap",
            self.peer,
            self.conn.tls_active,
            binding.as_deref(),
        );
        let name = mechanism.to_string();
        // Boxed: the exchange's state lives on the heap while it runs, not
        // in every session's future for its whole life.
        match Box::pin(crate::sasl::run(ctx, &name, ir, self)).await? {
            Outcome::Checked(result, attempted, secret) => {
                self.login_secret = secret;
                self.conclude(result, attempted).await
            }
            Outcome::Refused(r) => Ok(match r {
                Refusal::Unsupported => Reply::no(
                    Some(Code::Cannot),
                    format!("Unsupported authentication mechanism {name}"),
                ),
                Refusal::PrivacyRequired => privacy_required(),
                Refusal::Cancelled => Reply::bad("Authentication cancelled"),
                Refusal::TooLong => Reply::bad_code(Code::Limit, "SASL response too long"),
                Refusal::BadBase64 => Reply::bad("Invalid base64 in SASL response"),
                Refusal::Malformed(e) => Reply::bad(format!("Invalid SASL message: {e}")),
                Refusal::ActAsOther => Reply::no(
                    Some(Code::AuthorizationFailed),
                    "Acting as another user is not allowed",
                ),
            }
            .into()),
        }
    }

    /// Checks the credentials; on success the account is returned, not
    /// installed: the pre-login phase decides what becomes of it.
    async fn check_credentials(&mut self, user: String, pass: Vec<u8>) -> Result<LoginAnswer, End> {
        self.login_secret = crate::login::forwardable(&self.svc, &user, &pass);
        let result = crate::login::verify(
            &self.svc,
            user.clone(),
            pass,
            "imap",
            self.peer,
            self.conn.tls_active,
        )
        .await;
        self.conclude(result, user).await
    }

    /// What a checked login comes to: the account made ready, or the
    /// answer to a refusal (a failure counted and paused for).
    async fn conclude(&mut self, result: LoginResult, user: String) -> Result<LoginAnswer, End> {
        if !matches!(result, LoginResult::Ok(_)) {
            // A refused login's password is kept no longer.
            self.login_secret = None;
        }
        match result {
            LoginResult::Ok(u) => {
                if let Some(slot) = self.slot.as_mut() {
                    if let Err(limit) = slot.log_in(&self.svc, &u.name, Protocol::Imap) {
                        tracing::warn!(user = %u.name, limit, "login refused: too many sessions of this account");
                        return Ok(Reply::no(
                            Some(Code::Limit),
                            "Too many connections for this account; log out elsewhere or try again later",
                        )
                        .into());
                    }
                }
                // An account of another server has no Maildir here.
                let elsewhere = crate::proxy::route_of(
                    &u.name,
                    u.mailhost.as_deref(),
                    &self.svc.hostname,
                    &self.svc.proxy,
                    &self.svc.relayed,
                )
                .is_some();
                if elsewhere {
                    tracing::Span::current().record("user", u.name.as_str());
                    return Ok(LoginAnswer::Accepted(u));
                }
                if let Err(e) = crate::login::prepare(&self.svc, &u).await {
                    tracing::error!(user = %u.name, cause = %e, "cannot create the Maildir");
                    if let Some(slot) = self.slot.as_mut() {
                        slot.log_out();
                    }
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
