//! The POP3 session: states, commands, the maildrop snapshot.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use tern_maildir::folder::{FlagChange, MoveNew};
use tern_maildir::pop3list::Pop3Message;
use tern_maildir::{Flag, MaildirError};

use crate::conn::{Conn, ConnEnd};
use crate::folders::OpenFolder;
use crate::imap::{AsyncStream, Services};
use crate::sasl::{Answer, Outcome, Refusal};
use crate::users::{Denied, LoginResult, User};

/// Longest command line. RFC 2449 allows 255 octets; SASL answers (RFC
/// 5034) may be longer, so some room is left.
const MAX_LINE: usize = 8 * 1024;

/// Output is written out whenever this much is buffered (RETR of a large
/// message), so a session's memory stays bounded.
const FLUSH_AT: usize = 64 * 1024;

/// How much of a message file RETR reads at a time.
const READ_PIECE: usize = 64 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The messages of a POP3 session, fixed at login (RFC 1939 §5), shared
/// with other sessions that logged in to the same state.
struct Messages(Arc<Vec<Pop3Message>>);

impl tern_pop3_proto::Listed for Messages {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn size(&self, i: usize) -> u64 {
        self.0[i].size
    }
    fn uidl(&self, i: usize) -> &str {
        &self.0[i].uidl
    }
}

/// A logged-in session's folder and its TRANSACTION state machine
/// ([`tern_pop3_proto::Maildrop`]).
struct Maildrop {
    user: User,
    open: Arc<OpenFolder>,
    engine: tern_pop3_proto::Maildrop<Messages>,
}

enum State {
    Authorization {
        /// The name given by USER, waiting for PASS.
        user: Option<String>,
        failures: u32,
    },
    Transaction(Box<Maildrop>),
}

struct Pop3 {
    svc: Arc<Services>,
    conn: Conn,
    peer: Option<SocketAddr>,
    state: State,
    /// The connection's place in the limits, given back before the last
    /// answer goes out.
    slot: Option<crate::listener::ConnectionSlot>,
    /// When the connection began (the login's deadline).
    started: std::time::Instant,
    /// The password of the login in progress, when the client sent one for
    /// the user itself (what the proxy logs in to a backend with).
    login_secret: Option<tern_auth::Secret<Vec<u8>>>,
    /// A proxy of `auth.login_trusted_networks` named the client (XCLIENT).
    trusted_proxy: bool,
    /// The address the connection itself comes from: `peer` but behind a
    /// PROXY protocol listener, where it is the balancer's. A proxy's
    /// XCLIENT is believed by this one.
    hop: Option<std::net::IpAddr>,
    /// A trusted proxy relayed this session here (XCLIENT
    /// `TERN-ROUTE=here`): the login is served here, whatever this
    /// server's own route for the account says.
    routed_here: bool,
}

/// What the command loop does next.
enum Flow {
    Continue,
    Close,
}

/// Serves one POP3 connection to its end.
pub async fn serve_pop3(
    svc: Arc<Services>,
    stream: Box<dyn AsyncStream>,
    peer: Option<SocketAddr>,
    hop: Option<std::net::IpAddr>,
    tls: bool,
    binding: Option<crate::tls::ChannelBindings>,
    slot: Option<crate::listener::ConnectionSlot>,
) {
    let mut conn = Conn::new(stream, tls);
    conn.binding = binding.map(Box::new);
    let mut s = Pop3 {
        svc,
        conn,
        peer,
        slot,
        started: std::time::Instant::now(),
        login_secret: None,
        trusted_proxy: false,
        hop,
        routed_here: false,
        state: State::Authorization {
            user: None,
            failures: 0,
        },
    };
    match crate::creds::scope(s.run()).await {
        Ok(()) | Err(ConnEnd::Closed) | Err(ConnEnd::TimedOut) => {}
        Err(ConnEnd::Io(e)) => tracing::debug!(cause = %e, "POP3 connection ended"),
    }
}

impl Pop3 {
    fn reply(&mut self, line: &str) {
        self.conn.out.extend_from_slice(line.as_bytes());
        self.conn.out.extend_from_slice(b"\r\n");
    }

    fn timeout(&self) -> std::time::Duration {
        match self.state {
            State::Authorization { .. } => crate::login::time_left(&self.svc, self.started),
            // RFC 1939 §3: at least 10 minutes.
            State::Transaction(_) => self
                .svc
                .limits
                .auth_timeout()
                .max(std::time::Duration::from_secs(600)),
        }
    }

    async fn run(&mut self) -> Result<(), ConnEnd> {
        self.reply("+OK tern POP3 server ready.");
        let mut shutdown = self.svc.shutdown.clone();
        loop {
            // Pipelined commands (RFC 2449) are answered in one write.
            if !self.conn.has_line() {
                self.conn.flush().await?;
            }
            let timeout = self.timeout();
            let line = tokio::select! {
                r = self.conn.read_line(MAX_LINE, timeout) => r,
                _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
                    self.reply("-ERR [SYS/TEMP] Server shutting down, nothing was deleted.");
                    self.conn.flush().await?;
                    return Ok(());
                }
            };
            let line = match line {
                Ok(Some(l)) => tern_imap_proto::framing::strip_eol(&l).to_vec(),
                Ok(None) => {
                    self.reply("-ERR Line too long.");
                    continue;
                }
                Err(ConnEnd::TimedOut) => {
                    // RFC 1939 §3: close without removing anything.
                    self.reply("-ERR Disconnected for inactivity.");
                    let _ = self.conn.flush().await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let flow = self.command(&line).await?;
            self.conn.shrink();
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    // The place is free before the client reads the answer.
                    self.slot.take();
                    self.conn.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, ConnEnd> {
        use tern_pop3_proto::{Allowed, Command as C, Phase};
        let cmd = tern_pop3_proto::parse(line);
        let phase = match self.state {
            State::Authorization { .. } => Phase::Authorization,
            State::Transaction(_) => Phase::Transaction,
        };
        match tern_pop3_proto::allowed(&cmd, phase) {
            Allowed::Yes => {}
            Allowed::LogInFirst => {
                self.reply("-ERR Log in first.");
                return Ok(Flow::Continue);
            }
            Allowed::AlreadyLoggedIn => {
                self.reply("-ERR Already logged in.");
                return Ok(Flow::Continue);
            }
            Allowed::Unknown => {
                self.reply("-ERR Unknown command.");
                return Ok(Flow::Continue);
            }
        }
        match cmd {
            C::Capa => self.capa(),
            C::Quit => return self.quit().await,
            C::Noop => self.reply("+OK"),
            C::User(name) => self.user(name.as_deref()),
            // Boxed, as AUTH: a login's state (a directory lookup's, a
            // proxy connection's) is freed once it ends, instead of sizing
            // the session's task for the rest of its life.
            C::Pass(pass) => return Box::pin(self.pass(pass)).await,
            C::Auth { mechanism, initial } => {
                return Box::pin(self.auth(mechanism.as_deref(), initial.as_deref())).await;
            }
            C::Stls => return self.stls().await,
            C::Xclient(pairs) => self.xclient(&pairs),
            // RFC 6856: mail is sent as stored, so there is nothing to switch.
            C::Utf8 => self.reply("+OK UTF8 enabled."),
            C::Stat | C::List(_) | C::Uidl(_) | C::Dele(_) | C::Rset | C::Retr(_) | C::Top(..) => {
                return self.transaction(&cmd).await
            }
            C::Unknown(_) => self.reply("-ERR Unknown command."),
        }
        Ok(Flow::Continue)
    }

    /// Whether cleartext logins are taken here: over TLS, from a trusted
    /// proxy that named the client (it holds the client leg, as Dovecot
    /// treats `login_trusted_networks`), or as `auth.cleartext` says.
    fn cleartext_allowed(&self) -> bool {
        crate::login::cleartext_allowed(
            &self.svc,
            self.conn.tls_active || self.trusted_proxy,
            self.peer,
        )
    }

    /// Whether the connection comes from a proxy of
    /// `auth.login_trusted_networks` that has not named its client yet.
    fn proxy_may_name_client(&self) -> bool {
        !self.trusted_proxy
            && self
                .hop
                .or(self.peer.map(|p| p.ip()))
                .is_some_and(|ip| self.svc.login_trusted.iter().any(|n| n.contains(ip)))
    }

    /// XCLIENT from a trusted proxy (Dovecot's): the client's address and
    /// port, for the failed-login ledger, the limits and the logs. From
    /// anyone else it is refused.
    fn xclient(&mut self, pairs: &[(String, String)]) {
        if !self.proxy_may_name_client() {
            tracing::info!("XCLIENT from an untrusted address, refused");
            self.reply("-ERR You are not from a trusted address.");
            return;
        }
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let Some(ip) = get("ADDR").and_then(|a| a.parse::<std::net::IpAddr>().ok()) else {
            self.reply("-ERR XCLIENT needs ADDR=address.");
            return;
        };
        let port = get("PORT").and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
        let client = SocketAddr::new(ip, port);
        tracing::Span::current().record("client", tracing::field::display(client));
        self.peer = Some(client);
        self.trusted_proxy = true;
        // A tern proxy chose this server for the login: served here.
        self.routed_here = get("TERN-ROUTE").is_some_and(|v| v.eq_ignore_ascii_case("here"));
        self.reply("+OK");
    }

    fn capa(&mut self) {
        let mut caps: Vec<String> = vec![
            "+OK Capability list follows".into(),
            "TOP".into(),
            "UIDL".into(),
            "RESP-CODES".into(),
            "AUTH-RESP-CODE".into(),
            "PIPELINING".into(),
        ];
        if let State::Authorization { .. } = self.state {
            let cleartext = self.cleartext_allowed();
            if cleartext {
                caps.push("USER".into());
            }
            let mechs = self.mechanisms();
            if !mechs.is_empty() {
                caps.push(format!("SASL {}", mechs.join(" ")));
            }
            if self.svc.tls.is_some() && !self.conn.tls_active {
                caps.push("STLS".into());
            }
            caps.push("UTF8".into());
            if self.proxy_may_name_client() {
                caps.push("XCLIENT".into());
            }
        }
        let delay = self.svc.policy.pop3_login_delay.as_secs();
        if delay > 0 {
            caps.push(format!("LOGIN-DELAY {delay}"));
        }
        if let Some(e) = &self.svc.policy.pop3_expire {
            caps.push(format!("EXPIRE {e}"));
        }
        caps.push("IMPLEMENTATION tern".into());
        caps.push(".".into());
        for c in caps {
            self.reply(&c);
        }
    }

    fn plaintext_refused(&mut self) {
        self.reply("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections: use STLS or the TLS port.");
    }

    fn user(&mut self, name: Option<&str>) {
        if !self.cleartext_allowed() {
            return self.plaintext_refused();
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self.reply("-ERR USER needs a name.");
        };
        if let State::Authorization { user, .. } = &mut self.state {
            *user = Some(name.to_owned());
        }
        self.reply("+OK");
    }

    async fn pass(&mut self, pass: Vec<u8>) -> Result<Flow, ConnEnd> {
        if !self.cleartext_allowed() {
            self.plaintext_refused();
            return Ok(Flow::Continue);
        }
        let user = match &mut self.state {
            State::Authorization { user, .. } => user.take(),
            State::Transaction(_) => None,
        };
        let Some(user) = user else {
            self.reply("-ERR Send USER first.");
            return Ok(Flow::Continue);
        };
        self.check_credentials(user, pass).await
    }

    /// The names of the SASL mechanisms offered on this connection.
    fn mechanisms(&self) -> Vec<&'static str> {
        crate::sasl::offered(
            &self.svc,
            self.cleartext_allowed(),
            self.conn.binding.as_deref(),
        )
        .into_iter()
        .map(tern_auth::sasl::Mechanism::name)
        .collect()
    }

    async fn auth(&mut self, mech: Option<&str>, ir: Option<&str>) -> Result<Flow, ConnEnd> {
        let Some(mech) = mech else {
            // The pre-RFC 5034 form some clients use to list mechanisms.
            self.reply("+OK");
            for m in self.mechanisms() {
                self.reply(m);
            }
            self.reply(".");
            return Ok(Flow::Continue);
        };
        let ir = match ir {
            Some("=") => Some(Vec::new()),
            Some(i) => match B64.decode(i) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.reply("-ERR Invalid base64 in SASL response.");
                    return Ok(Flow::Continue);
                }
            },
            None => None,
        };
        let svc = self.svc.clone();
        // The exchange borrows the connection to talk; the context has a
        // copy of what it needs of it.
        let binding = self.conn.binding.clone();
        let ctx = crate::sasl::Context::of(
            &svc,
            "pop3",
            self.peer,
            self.conn.tls_active,
            binding.as_deref(),
        );
        // Boxed: the exchange's state lives on the heap while it runs.
        match Box::pin(crate::sasl::run(ctx, mech, ir, self)).await? {
            Outcome::Checked(result, attempted, secret) => {
                self.login_secret = secret;
                self.conclude(result, attempted).await
            }
            Outcome::Refused(r) => {
                match r {
                    Refusal::Unsupported => {
                        self.reply("-ERR Unsupported authentication mechanism.")
                    }
                    Refusal::PrivacyRequired => self.plaintext_refused(),
                    Refusal::Cancelled => self.reply("-ERR Authentication cancelled."),
                    Refusal::TooLong => self.reply("-ERR SASL response too long."),
                    Refusal::BadBase64 => self.reply("-ERR Invalid base64 in SASL response."),
                    Refusal::Malformed(e) => {
                        self.reply(&format!("-ERR Invalid SASL message: {e}."))
                    }
                    Refusal::ActAsOther => {
                        self.reply("-ERR [AUTH] Acting as another user is not allowed.")
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    async fn stls(&mut self) -> Result<Flow, ConnEnd> {
        let Some(acceptor) = self.svc.tls.clone() else {
            self.reply("-ERR STLS is not available.");
            return Ok(Flow::Continue);
        };
        if self.conn.tls_active {
            self.reply("-ERR TLS is already active.");
            return Ok(Flow::Continue);
        }
        self.reply("+OK Begin TLS negotiation.");
        self.conn.start_tls(&acceptor, &self.svc.sasl).await?;
        tracing::Span::current().record("tls", true);
        // A USER given in the clear does not carry over.
        self.state = State::Authorization {
            user: None,
            failures: match self.state {
                State::Authorization { failures, .. } => failures,
                State::Transaction(_) => 0,
            },
        };
        Ok(Flow::Continue)
    }

    async fn check_credentials(&mut self, user: String, pass: Vec<u8>) -> Result<Flow, ConnEnd> {
        self.login_secret = crate::login::forwardable(&self.svc, &user, &pass);
        let result = crate::login::verify(
            &self.svc,
            user.clone(),
            pass,
            "pop3",
            self.peer,
            self.conn.tls_active,
        )
        .await;
        self.conclude(result, user).await
    }

    /// What a checked login comes to: the maildrop opened, or the answer
    /// to a refusal (a failure counted and paused for).
    async fn conclude(&mut self, result: LoginResult, user: String) -> Result<Flow, ConnEnd> {
        if !matches!(result, LoginResult::Ok(_)) {
            // A refused login's password is kept no longer.
            self.login_secret = None;
        }
        match result {
            LoginResult::Ok(u) => {
                if !self.svc.policy.pop3_login_allowed(&u.name) {
                    let secs = self.svc.policy.pop3_login_delay.as_secs();
                    self.reply(&format!(
                        "-ERR [LOGIN-DELAY] Logins are allowed once every {secs} seconds."
                    ));
                    return Ok(Flow::Continue);
                }
                let secret = self.login_secret.take();
                // A login a trusted proxy relayed here is served here.
                let known = self.routed_here.then_some(None);
                if let Some(hosts) =
                    crate::proxy::login_route(&self.svc, &u.name, u.mailhost.as_deref(), known)
                        .await
                {
                    return self.proxy(&u, &hosts, secret).await;
                }
                if let Some(slot) = self.slot.as_mut() {
                    if let Err(limit) =
                        slot.log_in(&self.svc, &u.name, crate::listener::Protocol::Pop3)
                    {
                        tracing::warn!(user = %u.name, limit, "POP3 login refused: too many sessions of this account");
                        self.reply(
                            "-ERR [IN-USE] Too many connections for this account; try again later.",
                        );
                        return Ok(Flow::Continue);
                    }
                }
                crate::creds::set(u.creds);
                crate::creds::set_account(&u.name);
                match open_maildrop(self.svc.clone(), u).await {
                    Ok(drop) => {
                        tracing::Span::current().record("user", drop.user.name.as_str());
                        tracing::info!(
                            tls = self.conn.tls_active,
                            messages = drop.engine.messages().0.len(),
                            "POP3 login"
                        );
                        self.state = State::Transaction(Box::new(drop));
                        self.reply("+OK Logged in.");
                    }
                    Err(e) => {
                        tracing::error!(user = %user, cause = %e, "POP3 maildrop unavailable");
                        if let Some(slot) = self.slot.as_mut() {
                            slot.log_out();
                        }
                        self.reply("-ERR [SYS/TEMP] Mailbox unavailable, try again later.");
                    }
                }
                Ok(Flow::Continue)
            }
            LoginResult::TempFail(why) => {
                tracing::error!(cause = %why, "user database unavailable");
                self.reply("-ERR [SYS/TEMP] Authentication service unavailable, try again later.");
                Ok(Flow::Continue)
            }
            LoginResult::Blocked => {
                self.reply(
                    "-ERR [AUTH] Too many failed logins from your address; try again later.",
                );
                Ok(Flow::Continue)
            }
            LoginResult::Denied(Denied::Service) => {
                self.reply("-ERR [AUTH] POP3 access is disabled for this account.");
                Ok(Flow::Continue)
            }
            LoginResult::Denied(Denied::NeedsTls) => {
                self.reply(
                    "-ERR [AUTH] This account may log in over TLS only (use STLS or port 995).",
                );
                Ok(Flow::Continue)
            }
            LoginResult::Failed => {
                let failures = match &mut self.state {
                    State::Authorization { failures, .. } => {
                        *failures += 1;
                        *failures
                    }
                    State::Transaction(_) => 1,
                };
                tracing::info!(attempted = %user, failures, "POP3 authentication failed");
                crate::login::failure_pause(&self.svc, failures, self.peer).await;
                self.reply("-ERR [AUTH] Authentication failed.");
                Ok(if failures >= self.svc.max_auth_failures {
                    Flow::Close
                } else {
                    Flow::Continue
                })
            }
        }
    }
}

impl Pop3 {
    /// Logs in at the account's backend and relays the session there, or
    /// answers `-ERR [SYS/TEMP]` when no backend takes it.
    async fn proxy(
        &mut self,
        user: &User,
        hosts: &[String],
        secret: Option<tern_auth::Secret<Vec<u8>>>,
    ) -> Result<Flow, ConnEnd> {
        let svc = self.svc.clone();
        match crate::proxy::connect_for(
            &svc,
            &user.name,
            hosts,
            secret,
            self.peer,
            self.conn.tls_active,
            crate::proxy::Leg::Pop3,
        )
        .await
        {
            Ok(backend) => {
                tracing::Span::current().record("user", user.name.as_str());
                tracing::info!(backend = %backend.host, "POP3 login proxied");
                self.reply("+OK Logged in.");
                self.conn.flush().await?;
                let pipelined = std::mem::take(&mut self.conn.inbuf);
                // RFC 1939 §3: at least 10 minutes idle.
                let idle = self
                    .svc
                    .limits
                    .auth_timeout()
                    .max(std::time::Duration::from_secs(600));
                if let Some(stream) = self.conn.take_stream() {
                    let svc = self.svc.clone();
                    let ctx = crate::proxy::RelayContext {
                        relayed: &svc.relayed,
                        user: &user.name,
                        client: self.peer,
                        leg: crate::proxy::Leg::Pop3,
                    };
                    crate::proxy::relay(stream, backend, pipelined, idle, ctx).await;
                }
                Ok(Flow::Close)
            }
            Err(e) => {
                tracing::warn!(cause = ?e, "POP3 login not proxied");
                self.reply(
                    "-ERR [SYS/TEMP] The server of this account is unavailable, try again later.",
                );
                Ok(Flow::Continue)
            }
        }
    }
}

impl crate::sasl::Challenger for Pop3 {
    type End = ConnEnd;

    /// `+ base64` and the client's base64 line (RFC 5034 §4).
    async fn challenge(&mut self, data: &[u8]) -> Result<Answer, ConnEnd> {
        self.reply(&format!("+ {}", B64.encode(data)));
        self.conn.flush().await?;
        let timeout = self.timeout();
        let Some(line) = self.conn.read_line(MAX_LINE, timeout).await? else {
            return Ok(Answer::TooLong);
        };
        let line = tern_imap_proto::framing::strip_eol(&line);
        Ok(crate::sasl::answer(line))
    }
}

/// Numbers the user's INBOX for a POP3 session.
async fn open_maildrop(svc: Arc<Services>, user: User) -> Result<Maildrop, String> {
    crate::login::prepare(&svc, &user).await?;
    let open = svc.folders.get(user.maildir.root());
    let o = open.clone();
    let root = user.maildir.root().to_owned();
    let svc2 = svc.clone();
    let messages = crate::creds::spawn_blocking(move || {
        let view = o.folder.refresh_exact(MoveNew::Yes)?;
        let format = svc2.policy.pop3_uidl_format.as_ref();
        o.pop3
            .assign(&root, &view, format, |e| match o.folder.crlf_size(e) {
                Ok(s) => Ok(Some(s)),
                Err(MaildirError::MessageGone) => Ok(None),
                Err(e) => Err(e),
            })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    // Moving new/ to cur/ is a change other sessions should see.
    open.changed.notify_waiters();
    Ok(Maildrop {
        user,
        open,
        engine: tern_pop3_proto::Maildrop::new(Messages(messages)),
    })
}

impl Pop3 {
    fn maildrop(&mut self) -> Option<&mut Maildrop> {
        match &mut self.state {
            State::Transaction(d) => Some(d),
            State::Authorization { .. } => None,
        }
    }

    /// A TRANSACTION command: the engine answers, or names the message
    /// to send.
    async fn transaction(&mut self, cmd: &tern_pop3_proto::Command) -> Result<Flow, ConnEnd> {
        let Some(d) = self.maildrop() else {
            return Ok(Flow::Continue);
        };
        match d.engine.handle(cmd) {
            tern_pop3_proto::Action::Reply(r) => self.reply(&r),
            tern_pop3_proto::Action::Send { index, top } => return self.send(index, top).await,
            tern_pop3_proto::Action::NotMine => self.reply("-ERR Unknown command."),
        }
        Ok(Flow::Continue)
    }

    /// RETR and TOP: the message read from its file in pieces and sent as
    /// it is read (memory does not grow with the message, however long
    /// its lines), dot-stuffed ([`tern_pop3_proto::stuff`]).
    async fn send(&mut self, index: usize, top: Option<u64>) -> Result<Flow, ConnEnd> {
        use tokio::io::AsyncReadExt;
        let Some(d) = self.maildrop() else {
            return Ok(Flow::Continue);
        };
        let msg = d.engine.messages().0[index].clone();
        let open = d.open.clone();
        let o = open.clone();
        let entry = msg.entry.clone();
        let file = match crate::creds::spawn_blocking(move || o.folder.open(&entry)).await {
            Ok(Ok(f)) => f,
            Ok(Err(MaildirError::MessageGone)) => {
                self.reply("-ERR Message was removed by another session.");
                return Ok(Flow::Continue);
            }
            Ok(Err(e)) => {
                tracing::error!(cause = %e, "RETR cannot read the message");
                self.reply("-ERR [SYS/TEMP] Cannot read the message, try again later.");
                return Ok(Flow::Continue);
            }
            Err(e) => {
                tracing::error!(cause = %e, "RETR task failed");
                self.reply("-ERR [SYS/TEMP] Internal error.");
                return Ok(Flow::Continue);
            }
        };
        if top.is_some() {
            self.reply("+OK");
        } else {
            self.reply(&format!("+OK {} octets", msg.size));
        }
        let mut file = tokio::fs::File::from_std(file);
        let mut st = tern_pop3_proto::stuff::Stuffer::new(top);
        let mut piece = vec![0u8; READ_PIECE];
        loop {
            let n = match file.read(&mut piece).await {
                Ok(0) => {
                    st.finish(&mut self.conn.out);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The +OK is out: the answer can only be cut short.
                    tracing::error!(cause = %e, "RETR read failed part-way");
                    return Err(ConnEnd::Io(e));
                }
            };
            if !st.push(&piece[..n], &mut self.conn.out) {
                break;
            }
            if self.conn.out.len() >= FLUSH_AT {
                self.conn.flush().await?;
            }
        }
        self.reply(".");
        if top.is_none() {
            mark_seen(&open, msg.entry.uid).await;
        }
        Ok(Flow::Continue)
    }

    async fn quit(&mut self) -> Result<Flow, ConnEnd> {
        let State::Transaction(d) = &self.state else {
            self.reply("+OK Bye.");
            return Ok(Flow::Close);
        };
        let all = &d.engine.messages().0;
        let doomed: Vec<u32> = d.engine.marked().map(|i| all[i].entry.uid).collect();
        if doomed.is_empty() {
            self.reply("+OK Logging out.");
            return Ok(Flow::Close);
        }
        let open = d.open.clone();
        let o = open.clone();
        let wanted = doomed.len();
        let result = crate::creds::spawn_blocking(move || o.folder.expunge(&doomed)).await;
        open.changed.notify_waiters();
        match result {
            Ok(Ok(removed)) => {
                tracing::info!(wanted, removed = removed.len(), "POP3 update");
                self.reply(&format!("+OK Logging out, {wanted} messages deleted."));
            }
            Ok(Err(e)) => {
                tracing::error!(cause = %e, "POP3 update failed");
                self.reply("-ERR [SYS/TEMP] Some deleted messages were not removed.");
            }
            Err(e) => {
                tracing::error!(cause = %e, "POP3 update task failed");
                self.reply("-ERR [SYS/TEMP] Some deleted messages were not removed.");
            }
        }
        Ok(Flow::Close)
    }
}

/// RETR marks the message \Seen (as Courier's pop3d and Dovecot do), from
/// its flags as they are now, not as they were at login.
async fn mark_seen(open: &Arc<OpenFolder>, uid: u32) {
    let o = open.clone();
    let changed = crate::creds::spawn_blocking(move || -> Result<bool, MaildirError> {
        let view = o.folder.view();
        let Some(cur) = view.find(uid) else {
            return Ok(false);
        };
        if cur.flags.contains(Flag::Seen) {
            return Ok(false);
        }
        let mut flags = cur.flags.clone();
        flags.set(Flag::Seen, true);
        o.folder
            .set_flags(&[FlagChange::of(cur, flags, cur.keywords.clone())])?;
        Ok(true)
    })
    .await;
    match changed {
        Ok(Ok(true)) => open.changed.notify_waiters(),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::warn!(cause = %e, "RETR could not mark the message seen"),
        Err(e) => tracing::warn!(cause = %e, "RETR flag task failed"),
    }
}
