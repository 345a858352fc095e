//! The credential check that LOGIN and AUTHENTICATE (handlers in
//! [`super::cmd`]; the mechanisms of [`crate::sasl`], SASL-IR RFC 4959)
//! share.

use base64::Engine as _;
use tern_imap_proto::framing;
use tern_imap_proto::response::Code;

use super::session::{End, Reply, Session, State};
use crate::listener::Protocol;
use crate::sasl::Answer;
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
pub(super) fn privacy_required() -> Reply {
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
    /// Checks the credentials; on success the account is returned, not
    /// installed: the pre-login phase decides what becomes of it.
    pub(super) async fn check_credentials(
        &mut self,
        user: String,
        pass: Vec<u8>,
    ) -> Result<LoginAnswer, End> {
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
    pub(super) async fn conclude(
        &mut self,
        result: LoginResult,
        user: String,
    ) -> Result<LoginAnswer, End> {
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
                // An account of another server has no Maildir here; a
                // login a trusted proxy relayed here is served here.
                let route = if self.routed_here {
                    None
                } else {
                    crate::proxy::route_of(
                        &u.name,
                        u.mailhost.as_deref(),
                        &self.svc.hostname,
                        &self.svc.proxy,
                        &self.svc.relayed,
                    )
                };
                let elsewhere = route.is_some();
                // Taken once: the pre-login step relays by it.
                self.login_route = Some(route);
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
