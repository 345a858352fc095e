//! SASL exchanges as IMAP's AUTHENTICATE and POP3's AUTH share them: which
//! mechanisms are offered, and each mechanism's steps (PLAIN, LOGIN,
//! CRAM-MD5, SCRAM-SHA-1/256 with and without channel binding), over any
//! transport that can send a challenge and read the answer ([`Challenger`]).
//!
//! The mechanisms' messages are parsed and built in `tern_auth` without
//! I/O; here they meet the account backends, the password threads and the
//! connection's TLS channel.

use std::net::SocketAddr;
use std::sync::Arc;

use tern_auth::sasl::{Mechanism, SaslError};
use tern_auth::scram::{Binding, ScramHash, ScramKeys};
use tern_auth::UserEntry;

use crate::imap::Services;
use crate::tls::ChannelBindings;
use crate::users::LoginResult;

/// What the server offers for SASL, from the configuration.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// The mechanisms the operator enabled (`auth.mechanisms`), strongest
    /// first; `-PLUS` forms are offered with their base over TLS.
    pub mechanisms: Vec<Mechanism>,
    /// The `tls-server-end-point` hash of the server's certificate.
    pub end_point: Option<Vec<u8>>,
    /// A key of this process for the decoy SCRAM salts of unknown users.
    pub secret: [u8; 32],
    /// How a client certificate names its account (EXTERNAL).
    pub cert_field: crate::config::CertField,
    /// How OAUTHBEARER and XOAUTH2 tokens are checked.
    pub oauth: Option<std::sync::Arc<tern_auth::oauth::TokenCheck>>,
}

impl Default for SaslSettings {
    fn default() -> Self {
        SaslSettings::new(&[Mechanism::Plain, Mechanism::Login], None)
    }
}

impl SaslSettings {
    /// Settings offering `enabled` (in the order of [`Mechanism::ALL`]).
    pub fn new(enabled: &[Mechanism], end_point: Option<Vec<u8>>) -> SaslSettings {
        use rand::RngCore as _;
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let mut mechanisms: Vec<Mechanism> = Mechanism::ALL
            .into_iter()
            .filter(|m| enabled.contains(m))
            .collect();
        // A SCRAM mechanism brings its -PLUS form: binding to the channel
        // is never weaker, and is offered only where there is one.
        for (base, plus) in [
            (Mechanism::ScramSha256, Mechanism::ScramSha256Plus),
            (Mechanism::ScramSha1, Mechanism::ScramSha1Plus),
        ] {
            if mechanisms.contains(&base) && !mechanisms.contains(&plus) {
                mechanisms.push(plus);
            }
        }
        mechanisms.sort_by_key(|m| Mechanism::ALL.iter().position(|a| a == m));
        SaslSettings {
            mechanisms,
            end_point,
            secret,
            cert_field: Default::default(),
            oauth: None,
        }
    }

    /// Parses `auth.mechanisms` names.
    ///
    /// # Errors
    /// A name tern does not serve, as text for the operator.
    pub fn parse_names(names: &[String]) -> Result<Vec<Mechanism>, String> {
        names
            .iter()
            .map(|n| {
                Mechanism::from_name(n).ok_or_else(|| {
                    format!(
                        "auth.mechanisms: unknown mechanism {n:?} (tern serves {})",
                        Mechanism::ALL.map(Mechanism::name).join(", ")
                    )
                })
            })
            .collect()
    }
}

/// The mechanisms this connection is offered: a cleartext one only where
/// cleartext logins are allowed, a `-PLUS` one only over TLS, and one that
/// needs a stored secret only when a backend keeps them.
pub(crate) fn offered(
    svc: &Services,
    cleartext_ok: bool,
    binding: Option<&ChannelBindings>,
) -> Vec<Mechanism> {
    let holds_secrets = svc.users.as_ref().is_some_and(|u| u.holds_secrets());
    svc.sasl
        .mechanisms
        .iter()
        .copied()
        .filter(|m| !m.is_cleartext() || cleartext_ok)
        .filter(|m| !m.needs_tls() || binding.is_some())
        .filter(|m| *m != Mechanism::External || binding.is_some_and(|b| b.client_name.is_some()))
        .filter(|m| !m.is_bearer() || (svc.sasl.oauth.is_some() && cleartext_ok))
        .filter(|m| !m.needs_stored_secret() || holds_secrets)
        .collect()
}

/// The client's answer to a challenge.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Decoded data.
    Data(Vec<u8>),
    /// `*`: the client gave up.
    Cancelled,
    /// The line was longer than the protocol's limit.
    TooLong,
    /// The line was not base64.
    BadBase64,
}

/// What a client's answer line (its line end removed) says.
pub(crate) fn answer(line: &[u8]) -> Answer {
    use base64::Engine as _;
    match line {
        b"*" => Answer::Cancelled,
        b"" | b"=" => Answer::Data(Vec::new()),
        l => match base64::engine::general_purpose::STANDARD.decode(l) {
            Ok(v) => Answer::Data(v),
            Err(_) => Answer::BadBase64,
        },
    }
}

/// A connection a SASL exchange runs over.
pub(crate) trait Challenger {
    /// Why the connection ended.
    type End;
    /// Sends `data` as a challenge and reads the client's answer.
    async fn challenge(&mut self, data: &[u8]) -> Result<Answer, Self::End>;
}

/// Why an exchange ended without a password being checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a mechanism offered here.
    Unsupported,
    /// A cleartext mechanism where cleartext logins are not allowed.
    PrivacyRequired,
    /// The client sent `*`.
    Cancelled,
    /// An answer longer than the limit.
    TooLong,
    /// An answer that was not base64.
    BadBase64,
    /// A message the mechanism does not allow.
    Malformed(String),
    /// An authorization identity other than the user, with no master
    /// users configured.
    ActAsOther,
}

/// How an exchange ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A password (or proof) was checked: the login's result, the name
    /// the client gave (for the log), and the password when the mechanism
    /// sent one for the user itself (what a proxy can log in with).
    Checked(LoginResult, String, Option<tern_auth::Secret<Vec<u8>>>),
    /// Refused before any check.
    Refused(Refusal),
}

/// What an exchange needs to know about its connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub svc: &'a Arc<Services>,
    pub service: &'static str,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    pub cleartext_ok: bool,
    pub binding: Option<&'a ChannelBindings>,
}

impl<'a> Context<'a> {
    /// The context of a connection.
    pub fn of(
        svc: &'a Arc<Services>,
        service: &'static str,
        peer: Option<SocketAddr>,
        tls: bool,
        binding: Option<&'a ChannelBindings>,
    ) -> Context<'a> {
        Context {
            svc,
            service,
            peer,
            tls,
            cleartext_ok: crate::login::cleartext_allowed(svc, tls, peer),
            binding,
        }
    }

    async fn verify(&self, user: String, pass: Vec<u8>) -> LoginResult {
        crate::login::verify(self.svc, user, pass, self.service, self.peer, self.tls).await
    }
}

/// Answers to a challenge as data, or the refusal they come to.
fn data(a: Answer) -> Result<Vec<u8>, Refusal> {
    match a {
        Answer::Data(d) => Ok(d),
        Answer::Cancelled => Err(Refusal::Cancelled),
        Answer::TooLong => Err(Refusal::TooLong),
        Answer::BadBase64 => Err(Refusal::BadBase64),
    }
}

macro_rules! step {
    ($io:expr, $challenge:expr) => {
        match data($io.challenge($challenge).await?) {
            Ok(d) => d,
            Err(r) => return Ok(Outcome::Refused(r)),
        }
    };
}

/// Runs the exchange of mechanism `name` (with the client's initial
/// response, if it sent one) to its end.
pub(crate) async fn run<C: Challenger>(
    ctx: Context<'_>,
    name: &str,
    initial: Option<Vec<u8>>,
    io: &mut C,
) -> Result<Outcome, C::End> {
    let Some(mech) = Mechanism::from_name(name) else {
        return Ok(Outcome::Refused(Refusal::Unsupported));
    };
    if mech.is_cleartext() && !ctx.cleartext_ok {
        return Ok(Outcome::Refused(Refusal::PrivacyRequired));
    }
    if !offered(ctx.svc, ctx.cleartext_ok, ctx.binding).contains(&mech) {
        return Ok(Outcome::Refused(Refusal::Unsupported));
    }
    match mech {
        Mechanism::Plain => {
            let msg = match initial {
                Some(m) => m,
                None => step!(io, b""),
            };
            let c = match tern_auth::sasl::decode_plain(&msg) {
                Ok(c) => c,
                Err(e) => return Ok(Outcome::Refused(Refusal::Malformed(e.to_string()))),
            };
            let pass = c.password.expose().clone();
            match c.authzid {
                Some(target) if target != c.authcid => {
                    if !ctx.svc.users.as_ref().is_some_and(|u| u.has_masters()) {
                        return Ok(Outcome::Refused(Refusal::ActAsOther));
                    }
                    let r = crate::login::verify_master(
                        ctx.svc,
                        &target,
                        &c.authcid,
                        pass,
                        ctx.service,
                        ctx.peer,
                        ctx.tls,
                    )
                    .await;
                    Ok(Outcome::Checked(
                        r,
                        format!("{target} (master {})", c.authcid),
                        None,
                    ))
                }
                _ => Ok(Outcome::Checked(
                    ctx.verify(c.authcid.clone(), pass).await,
                    c.authcid,
                    Some(c.password),
                )),
            }
        }
        Mechanism::Login => {
            let user = match initial {
                Some(u) => u,
                None => step!(io, b"Username:"),
            };
            let pass = step!(io, b"Password:");
            let user = String::from_utf8_lossy(&user).into_owned();
            let secret = crate::login::forwardable(ctx.svc, &user, &pass);
            Ok(Outcome::Checked(
                ctx.verify(user.clone(), pass).await,
                user,
                secret,
            ))
        }
        Mechanism::CramMd5 => {
            if initial.is_some() {
                return Ok(Outcome::Refused(Refusal::Malformed(
                    "CRAM-MD5 takes no initial response".into(),
                )));
            }
            let challenge = tern_auth::sasl::cram_md5_challenge(&ctx.svc.hostname);
            let answer = step!(io, challenge.as_bytes());
            let (user, digest) = match tern_auth::sasl::decode_cram_md5(&answer) {
                Ok(v) => v,
                Err(e) => return Ok(Outcome::Refused(Refusal::Malformed(e.to_string()))),
            };
            let r = cram_md5(ctx, &user, challenge.as_bytes(), &digest).await;
            Ok(Outcome::Checked(r, user, None))
        }
        Mechanism::External => {
            let Some(name) = ctx.binding.and_then(|b| b.client_name.clone()) else {
                return Ok(Outcome::Refused(Refusal::Unsupported));
            };
            // The client may name the identity to act as; it must be the
            // certificate's (an empty one means the certificate's).
            let asked = match initial {
                Some(z) => z,
                None => step!(io, b""),
            };
            if !asked.is_empty() && asked != name.as_bytes() {
                return Ok(Outcome::Refused(Refusal::ActAsOther));
            }
            let id = Identity {
                authcid: name.clone(),
                target: None,
            };
            let r = match entry_of(ctx, &id).await {
                Ok(Some(e)) => proven(ctx, &id, &e).await,
                Ok(None) => {
                    tracing::info!(user = %name, "EXTERNAL: the certificate names no account");
                    LoginResult::Failed
                }
                Err(r) => r,
            };
            Ok(Outcome::Checked(r, name, None))
        }
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => bearer(ctx, mech, initial, io).await,
        Mechanism::ScramSha1
        | Mechanism::ScramSha1Plus
        | Mechanism::ScramSha256
        | Mechanism::ScramSha256Plus => scram(ctx, mech, initial, io).await,
    }
}

/// The account a login name stands for, and the master user it is logged
/// in by, if any.
struct Identity {
    /// Whose password (or keys) is checked.
    authcid: String,
    /// Whose session it becomes, when not `authcid`'s (a master login).
    target: Option<String>,
}

fn identity(svc: &Services, user: &str, authzid: Option<&str>) -> Result<Identity, Refusal> {
    let masters = svc.users.as_ref().is_some_and(|u| u.has_masters());
    match authzid {
        Some(z) if z != user => {
            if !masters {
                return Err(Refusal::ActAsOther);
            }
            Ok(Identity {
                authcid: user.to_owned(),
                target: Some(z.to_owned()),
            })
        }
        _ => match svc.users.as_ref().and_then(|u| u.split_master(user)) {
            Some((target, master)) => Ok(Identity {
                authcid: master.to_owned(),
                target: Some(target.to_owned()),
            }),
            None => Ok(Identity {
                authcid: user.to_owned(),
                target: None,
            }),
        },
    }
}

/// The stored entry of `id.authcid`: a master user's from the master
/// file, anyone else's from the backends.
async fn entry_of(ctx: Context<'_>, id: &Identity) -> Result<Option<UserEntry>, LoginResult> {
    let Some(db) = &ctx.svc.users else {
        return Ok(None);
    };
    if ctx.svc.login_failures.blocked(ctx.peer.map(|p| p.ip())) {
        return Err(LoginResult::Blocked);
    }
    let found = if id.target.is_some() {
        db.master_entry(&id.authcid)
    } else {
        let remote = ctx.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        db.lookup(&tern_auth::sql::Request {
            user: &id.authcid,
            service: ctx.service,
            remote: &remote,
        })
        .await
    };
    found.map_err(|e| LoginResult::TempFail(e.to_string()))
}

/// The login a proven identity comes to.
async fn proven(ctx: Context<'_>, id: &Identity, entry: &UserEntry) -> LoginResult {
    let Some(db) = &ctx.svc.users else {
        return LoginResult::Failed;
    };
    match &id.target {
        Some(target) => {
            crate::login::master_target(
                ctx.svc,
                db,
                target,
                &id.authcid,
                ctx.service,
                ctx.peer,
                ctx.tls,
            )
            .await
        }
        None => crate::login::finish(
            ctx.svc,
            ctx.peer,
            LoginResult::Ok(db.user_for(entry)),
            ctx.service,
            ctx.tls,
        ),
    }
}

async fn cram_md5(
    ctx: Context<'_>,
    user: &str,
    challenge: &[u8],
    digest: &[u8; 16],
) -> LoginResult {
    let id = match identity(ctx.svc, user, None) {
        Ok(id) => id,
        Err(_) => return LoginResult::Failed,
    };
    let entry = match entry_of(ctx, &id).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let secret = entry
        .as_ref()
        .filter(|e| e.auth == tern_auth::EntryAuth::Hash)
        .and_then(|e| tern_auth::scheme::cleartext(&e.password));
    // An account without a cleartext password costs the same HMAC.
    let good = tern_auth::sasl::cram_md5_matches(
        secret.unwrap_or("\u{0}decoy").as_bytes(),
        challenge,
        digest,
    ) && secret.is_some();
    match (good, &entry) {
        (true, Some(e)) => proven(ctx, &id, e).await,
        _ => {
            if entry.is_some() && secret.is_none() {
                tracing::info!(
                    user,
                    "CRAM-MD5 refused: the account's password is not stored in the clear"
                );
            }
            LoginResult::Failed
        }
    }
}

/// The SCRAM keys of an account, or decoy keys that match no proof: an
/// account whose password is hashed some other way (Argon2, a bind)
/// cannot log in by SCRAM, and is not told apart from an unknown one.
async fn scram_keys(
    ctx: Context<'_>,
    hash: ScramHash,
    entry: Option<&UserEntry>,
    user: &str,
) -> ScramKeys {
    let secret = ctx.svc.sasl.secret;
    let stored = entry
        .filter(|e| e.auth == tern_auth::EntryAuth::Hash)
        .map(|e| e.password.clone());
    if let Some(keys) = stored
        .as_deref()
        .and_then(|p| tern_auth::scheme::scram_keys(p, hash))
    {
        return keys;
    }
    let cleartext = stored
        .as_deref()
        .and_then(tern_auth::scheme::cleartext)
        .map(|p| p.as_bytes().to_vec());
    let derive_anyway = cleartext.is_none()
        && ctx
            .svc
            .users
            .as_ref()
            .is_some_and(|u| u.usual_password_is_cleartext());
    let decoy = ScramKeys::decoy(hash, user, &secret);
    if cleartext.is_none() && !derive_anyway {
        if entry.is_some() {
            tracing::info!(
                user,
                "SCRAM refused: the account's password cannot make SCRAM keys"
            );
        }
        return decoy;
    }
    // Keys from a cleartext password: derived with the name's stable salt,
    // on a password thread (4096 HMACs).
    let password = cleartext.clone().unwrap_or_else(|| secret.to_vec());
    let salt = decoy.salt.clone();
    let derived = crate::login::on_checker(move || {
        ScramKeys::derive(hash, &password, &salt, tern_auth::scram::DEFAULT_ITERATIONS)
    })
    .await;
    match (cleartext, derived) {
        (Some(_), Some(k)) => k,
        _ => decoy,
    }
}

/// OAUTHBEARER and XOAUTH2: the token's owner, as the introspection
/// endpoint says, must be the user the client names (if it names one) and
/// an account here.
async fn bearer<C: Challenger>(
    ctx: Context<'_>,
    mech: Mechanism,
    initial: Option<Vec<u8>>,
    io: &mut C,
) -> Result<Outcome, C::End> {
    let msg = match initial {
        Some(m) if !m.is_empty() => m,
        _ => step!(io, b""),
    };
    let parsed = if mech == Mechanism::OAuthBearer {
        tern_auth::oauth::parse_oauthbearer(&msg)
    } else {
        tern_auth::oauth::parse_xoauth2(&msg)
    };
    let m = match parsed {
        Ok(m) => m,
        Err(e) => return Ok(Outcome::Refused(Refusal::Malformed(e.to_string()))),
    };
    let Some(endpoint) = ctx.svc.sasl.oauth.clone() else {
        return Ok(Outcome::Refused(Refusal::Unsupported));
    };
    let named = m.user.clone().unwrap_or_default();
    if ctx.svc.login_failures.blocked(ctx.peer.map(|p| p.ip())) {
        return Ok(Outcome::Checked(LoginResult::Blocked, named, None));
    }
    let owner = match endpoint.check(&m.token).await {
        Ok(o) => o,
        Err(e) => {
            return Ok(Outcome::Checked(
                LoginResult::TempFail(e.to_string()),
                named,
                None,
            ))
        }
    };
    let owner = owner.filter(|o| m.user.as_deref().is_none_or(|u| u == o));
    let Some(owner) = owner else {
        // RFC 7628 §3.2.2: the error goes out as a challenge, the client
        // answers it (with a lone ^A), and the exchange then fails.
        let _ = io
            .challenge(tern_auth::oauth::failure_json().as_bytes())
            .await?;
        tracing::info!(user = %named, "bearer token refused");
        return Ok(Outcome::Checked(LoginResult::Failed, named, None));
    };
    let id = Identity {
        authcid: owner.clone(),
        target: None,
    };
    let r = match entry_of(ctx, &id).await {
        Ok(Some(e)) => proven(ctx, &id, &e).await,
        Ok(None) => {
            tracing::info!(user = %owner, "the token's owner is no account here");
            LoginResult::Failed
        }
        Err(r) => r,
    };
    Ok(Outcome::Checked(r, owner, None))
}

async fn scram<C: Challenger>(
    ctx: Context<'_>,
    mech: Mechanism,
    initial: Option<Vec<u8>>,
    io: &mut C,
) -> Result<Outcome, C::End> {
    let Some((hash, plus)) = mech.scram() else {
        return Ok(Outcome::Refused(Refusal::Unsupported));
    };
    let first = match initial {
        Some(m) if !m.is_empty() => m,
        _ => step!(io, b""),
    };
    let first = match tern_auth::scram::parse_client_first(&first) {
        Ok(f) => f,
        Err(e) => return Ok(Outcome::Refused(Refusal::Malformed(e.to_string()))),
    };
    let user = first.user.clone();
    // RFC 5802 §6: the binding flag must fit the mechanism and what the
    // server offers; a mismatch is a downgrade, and fails the login.
    let binding_ok = match (&first.binding, plus) {
        (Binding::Bound(name), true) => ctx.binding.and_then(|b| b.get(name)).is_some(),
        (Binding::Bound(_), false) => {
            return Ok(Outcome::Refused(Refusal::Malformed(
                "channel binding requested with a mechanism without it".into(),
            )))
        }
        (_, true) => false,
        (Binding::ClientOnly, false) => !offered(ctx.svc, ctx.cleartext_ok, ctx.binding)
            .iter()
            .any(|m| m.needs_tls()),
        (Binding::None, false) => true,
    };
    let id = match identity(ctx.svc, &user, first.authzid.as_deref()) {
        Ok(id) => id,
        Err(r) => return Ok(Outcome::Refused(r)),
    };
    let attempted = match &id.target {
        Some(t) => format!("{t} (master {})", id.authcid),
        None => id.authcid.clone(),
    };
    let entry = match entry_of(ctx, &id).await {
        Ok(e) => e,
        Err(r) => return Ok(Outcome::Checked(r, attempted, None)),
    };
    let keys = scram_keys(ctx, hash, entry.as_ref(), &id.authcid).await;
    let exchange = tern_auth::scram::Exchange::new(first, &keys, &tern_auth::scram::server_nonce());
    let last = step!(io, exchange.server_first().as_bytes());
    let cb = match &exchange.client_first().binding {
        Binding::Bound(name) => ctx.binding.and_then(|b| b.get(name)),
        _ => None,
    };
    let server_final = match exchange.finish(&last, &keys, cb) {
        Ok(Some(v)) if binding_ok && entry.is_some() => v,
        Ok(_) => return Ok(Outcome::Checked(LoginResult::Failed, attempted, None)),
        Err(SaslError::ChannelBinding) => {
            tracing::warn!(user = %attempted, "SCRAM channel binding does not match this connection");
            return Ok(Outcome::Checked(LoginResult::Failed, attempted, None));
        }
        Err(e) => return Ok(Outcome::Refused(Refusal::Malformed(e.to_string()))),
    };
    // The server's signature goes out as a last challenge; the client
    // answers it with an empty response (RFC 5802 §5, RFC 3501 §6.2.2).
    let done = step!(io, server_final.as_bytes());
    if !done.is_empty() {
        return Ok(Outcome::Refused(Refusal::Malformed(
            "SCRAM: the last response must be empty".into(),
        )));
    }
    let Some(entry) = entry else {
        return Ok(Outcome::Checked(LoginResult::Failed, attempted, None));
    };
    Ok(Outcome::Checked(
        proven(ctx, &id, &entry).await,
        attempted,
        None,
    ))
}
