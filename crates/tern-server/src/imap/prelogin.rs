//! The pre-login phase (RFC 3501 §6.1, §6.2, RFC 9051 §3.1): from the
//! greeting to a successful LOGIN or AUTHENTICATE.
//!
//! It serves CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN and AUTHENTICATE
//! and nothing else, with its own dispatch; every command is parsed and
//! checked against the state by the engine (`engine::prepare` in
//! `NotAuthenticated`, with no mailbox, so `$` means nothing here), and no
//! Maildir is opened. What it gives back is the authenticated account
//! ([`LoginEnd::LoggedIn`]); the caller decides what becomes of the
//! connection, today serving the account locally, and for the proxy
//! handing the socket (with any bytes the client already pipelined) to a
//! relay to the account's server.

use imap_codec::imap_types::command::CommandBody;
use tern_imap_proto::engine::{self, Phase, Prepared, Ready};
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

use super::auth::LoginAnswer;
use super::session::{End, Incoming, Reply, Session};
use crate::users::User;

/// How the pre-login phase ended.
#[derive(Debug)]
pub(crate) enum LoginEnd {
    /// A login succeeded as this account.
    LoggedIn(User),
    /// The client logged out, or was closed for too many failures.
    Closed,
    /// The account is another server's: logged in there, and the client
    /// told so; the connection is to be relayed.
    Proxied(Box<crate::proxy::Backend>),
}

impl Session {
    /// Runs the pre-login phase; the greeting is already sent.
    pub(crate) async fn pre_login(&mut self) -> Result<LoginEnd, End> {
        loop {
            let answer = match self.next_incoming().await? {
                None => continue,
                Some(Incoming::Answered) => None,
                Some(Incoming::Command(bytes)) => self.pre_login_command(&bytes).await?,
                // The framer streams APPEND messages only after login.
                Some(Incoming::Append(bytes, streamed)) => {
                    streamed.discard();
                    self.pre_login_command(&bytes).await?
                }
            };
            if let Some((tag, user)) = answer {
                let secret = self.login_secret.take();
                // `Some(None)` for a login a trusted proxy relayed here
                // (see `conclude`): served here.
                let known = self.login_route.take();
                if let Some(hosts) = crate::proxy::login_route(
                    &self.svc,
                    &user.name,
                    user.mailhost.as_deref(),
                    known,
                )
                .await
                {
                    match self.log_in_at_backend(&tag, &user, &hosts, secret).await? {
                        Some(backend) => {
                            self.proxied_user = Some(user.name.clone());
                            return Ok(LoginEnd::Proxied(Box::new(backend)));
                        }
                        None => {
                            self.after_command().await?;
                            continue;
                        }
                    }
                }
                let caps = self.capabilities_when(true);
                self.tagged(&tag, &Reply::ok_code(Code::Capability(caps), "Logged in"));
                self.flush().await?;
                // As after every command: an idle logged-in session holds
                // no buffer of its login.
                self.give_back_buffers();
                return Ok(LoginEnd::LoggedIn(user));
            }
            match self.after_command().await {
                Ok(()) => {}
                Err(End::Closed) => return Ok(LoginEnd::Closed),
                Err(e) => return Err(e),
            }
        }
    }

    /// A proxy in `auth.login_trusted_networks` says whose connection this
    /// is (Dovecot's `x-originating-ip` and `x-originating-port` in ID,
    /// before the login): from then on the client's address is that one,
    /// for the failed-login ledger, the per-account limits and the logs
    /// (`client=`). A tern proxy also says `x-tern-route "here"`: it chose
    /// this server for the login, which is then served here whatever this
    /// server's own route for the account says (its directory may say
    /// otherwise during a move, its view of a pool's health may differ),
    /// so that a relayed login is never relayed again. Trust is decided
    /// by the address the connection comes from (the proxy's, also behind
    /// a PROXY protocol listener); from anyone else both are ignored.
    fn take_forwarded_client(
        &mut self,
        parameters: Option<
            &[(
                imap_codec::imap_types::core::IString<'_>,
                imap_codec::imap_types::core::NString<'_>,
            )],
        >,
    ) {
        let Some(params) = parameters else {
            return;
        };
        let from = self.hop.or(self.peer.map(|p| p.ip()));
        let trusted = from.is_some_and(|ip| self.svc.login_trusted.iter().any(|n| n.contains(ip)));
        let value = |key: &str| {
            params.iter().find_map(|(k, v)| {
                (String::from_utf8_lossy(k.as_ref()).eq_ignore_ascii_case(key))
                    .then(|| {
                        v.0.as_ref()
                            .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned())
                    })
                    .flatten()
            })
        };
        let routed = value("x-tern-route").is_some_and(|v| v.eq_ignore_ascii_case("here"));
        let ip = value("x-originating-ip").and_then(|v| v.parse::<std::net::IpAddr>().ok());
        if !trusted {
            if ip.is_some() || routed {
                tracing::info!(claimed = ?ip, routed, "ID x-originating-ip / x-tern-route from an untrusted address, ignored");
            }
            return;
        }
        self.routed_here |= routed;
        let Some(ip) = ip else {
            return;
        };
        let port = value("x-originating-port")
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        let client = std::net::SocketAddr::new(ip, port);
        tracing::Span::current().record("client", tracing::field::display(client));
        self.peer = Some(client);
        self.trusted_proxy = true;
    }

    /// Logs in at the account's backend; the client is answered either
    /// way (the backend's capabilities on success, `NO [UNAVAILABLE]` when
    /// no backend takes the session).
    async fn log_in_at_backend(
        &mut self,
        tag: &str,
        user: &User,
        hosts: &[String],
        secret: Option<tern_auth::Secret<Vec<u8>>>,
    ) -> Result<Option<crate::proxy::Backend>, End> {
        use crate::proxy::ProxyError;
        let svc = self.svc.clone();
        match crate::proxy::connect_for(
            &svc,
            &user.name,
            hosts,
            secret,
            self.peer,
            self.conn.tls_active,
            crate::proxy::Leg::Imap,
        )
        .await
        {
            Ok(b) => {
                tracing::info!(backend = %b.host, "login proxied");
                let reply = Reply::ok_code(Code::Capability(b.capabilities.clone()), "Logged in");
                self.tagged(tag, &reply);
                self.flush().await?;
                Ok(Some(b))
            }
            Err(e) => {
                tracing::warn!(cause = ?e, "login not proxied");
                // The account's place in the limits is not held here.
                if let Some(slot) = self.slot.as_mut() {
                    slot.log_out();
                }
                let r = match e {
                    ProxyError::Unavailable(_) | ProxyError::Local(_) => Reply::no(
                        Some(Code::Unavailable),
                        "The server of this account is unavailable, try again later",
                    ),
                    ProxyError::Refused(_) | ProxyError::Referral(_) => Reply::no(
                        Some(Code::Unavailable),
                        "The server of this account refused the login, try again later",
                    ),
                };
                self.tagged(tag, &r);
                Ok(None)
            }
        }
    }

    /// Parses and runs one pre-login command; `Some` with its tag when it
    /// logged in (the tagged OK is the caller's to send).
    async fn pre_login_command(&mut self, bytes: &[u8]) -> Result<Option<(String, User)>, End> {
        // The one parse and state check of every command (the engine's):
        // what may not run before a login is answered there.
        let keys = self.svc.limits.max_search_keys;
        let phase = Phase::NotAuthenticated;
        let Ready { tag, body, .. } =
            match engine::prepare(bytes, phase, keys, None, &mut self.conn.out) {
                Prepared::Run(ready) => *ready,
                // Not reached: the engine answers ACL commands before a
                // login (Phase::NotAuthenticated) itself.
                Prepared::Acl { tag, .. } => {
                    self.tagged(&tag, &Reply::bad("Command not allowed before login"));
                    return Ok(None);
                }
                Prepared::Answered { unparsable } => {
                    if unparsable {
                        super::session::log_unparsable(bytes);
                    }
                    return Ok(None);
                }
            };
        use CommandBody as C;
        let answer = match body {
            C::Capability => self.capability().into(),
            C::Noop => Reply::ok("NOOP completed").into(),
            C::Logout => self.logout().into(),
            C::Id { parameters } => {
                self.take_forwarded_client(parameters.as_deref());
                self.id().into()
            }
            C::StartTLS => match self.starttls(&tag).await? {
                Some(r) => r.into(),
                None => return Ok(None),
            },
            C::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = password.declassify().as_ref().to_vec();
                self.login(user, pass).await?
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                let ir = initial_response.map(|r| r.declassify().to_vec());
                self.authenticate(mechanism, ir).await?
            }
            // Phase::allows lets nothing else through before a login.
            _ => Reply::bad("Command not supported").into(),
        };
        match answer {
            LoginAnswer::Accepted(user) => Ok(Some((tag, user))),
            LoginAnswer::Refused(r) => {
                self.tagged(&tag, &r);
                Ok(None)
            }
        }
    }
}
