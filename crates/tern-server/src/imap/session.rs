//! The session: state, I/O, command dispatch.

use std::collections::BTreeSet;

use rustc_hash::FxHashSet as HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::imap_types::command::CommandBody;
use tern_imap_proto::engine::{self, Phase, Prepared, Reader, Ready, SavedResult, Step};
use tern_imap_proto::framing;
use tern_imap_proto::ids::Uid;
use tern_imap_proto::imap_codec;
pub(crate) use tern_imap_proto::response::{Code, Reply};
use tern_maildir::MaildirError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{Cleartext, Limits};
use crate::conn::{Conn, ConnEnd};
use crate::folders::{FolderRegistry, OpenFolder};
use crate::users::{User, UserDb};

/// Anything a session can run over: TCP, TLS, stdin/stdout.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// The stream as `Any`, to tell a plain TCP socket from a TLS one.
    fn as_any(&self) -> &dyn std::any::Any;
    /// The stream as `Any`, to take a plain TCP socket out of its box
    /// (the relay splices between two of them).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// What every session shares.
pub struct Services {
    /// Host name for the greeting.
    pub hostname: String,
    /// Limits.
    pub limits: Limits,
    /// Cleartext login policy.
    pub cleartext: Cleartext,
    /// Failed logins before the connection is closed.
    pub max_auth_failures: u32,
    /// First delay after a failed login.
    pub failure_delay: Duration,
    /// The user database (absent in `tern imapd`, which is pre-authenticated).
    pub users: Option<UserDb>,
    /// TLS for STARTTLS (absent: STARTTLS not offered).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Open folders.
    pub folders: FolderRegistry,
    /// Set to true when the server shuts down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// POP3, quota and trash policies.
    pub policy: crate::policy::Policy,
    /// The personal namespace: how wire names map to folders.
    pub namespace: super::namespace::Namespace,
    /// Failed logins by client address.
    pub login_failures: crate::login::FailureLedger,
    /// The SASL mechanisms offered, and the TLS certificate's binding.
    pub sasl: crate::sasl::SaslSettings,
    /// Logged-in sessions by account.
    pub user_connections: Arc<crate::listener::PerUser>,
    /// Who may send PROXY protocol headers.
    pub haproxy: crate::listener::HaproxySettings,
    /// Where accounts of other servers are relayed, and how.
    pub proxy: crate::proxy::ProxySettings,
    /// Backends that failed lately.
    pub proxy_health: std::sync::Arc<crate::proxy::Health>,
    /// Proxies whose ID `x-originating-ip` is believed
    /// (`auth.login_trusted_networks`).
    pub login_trusted: Vec<crate::haproxy::Network>,
    /// The sessions this server relays to backends.
    pub relayed: Arc<crate::proxy::Relayed>,
    /// What LMTP deliveries need ([`crate::lmtp`]).
    pub lmtp: crate::lmtp::LmtpSettings,
}

impl Services {
    /// The services of a server with no listeners of its own: `tern
    /// imapd` (one pre-authenticated session on stdin/stdout) and the
    /// whole-session fuzz target. Every setting is its default; `users`
    /// is the directory logins go to (none: only pre-authenticated
    /// sessions).
    pub fn standalone(
        hostname: &str,
        users: Option<UserDb>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Services {
        Services {
            hostname: hostname.to_owned(),
            limits: Default::default(),
            cleartext: Default::default(),
            max_auth_failures: 1,
            failure_delay: Duration::ZERO,
            users,
            tls: None,
            folders: FolderRegistry::default(),
            shutdown,
            policy: crate::policy::Policy::default(),
            namespace: super::namespace::Namespace::default(),
            login_failures: Default::default(),
            sasl: Default::default(),
            user_connections: Default::default(),
            haproxy: Default::default(),
            proxy: Default::default(),
            proxy_health: Default::default(),
            login_trusted: Vec::new(),
            relayed: Default::default(),
            lmtp: Default::default(),
        }
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("hostname", &self.hostname)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The `AUTH=` capability of a mechanism.
fn auth_capability(m: tern_auth::sasl::Mechanism) -> &'static str {
    use tern_auth::sasl::Mechanism as M;
    match m {
        M::Plain => "AUTH=PLAIN",
        M::Login => "AUTH=LOGIN",
        M::CramMd5 => "AUTH=CRAM-MD5",
        M::ScramSha1 => "AUTH=SCRAM-SHA-1",
        M::ScramSha1Plus => "AUTH=SCRAM-SHA-1-PLUS",
        M::ScramSha256 => "AUTH=SCRAM-SHA-256",
        M::ScramSha256Plus => "AUTH=SCRAM-SHA-256-PLUS",
        M::External => "AUTH=EXTERNAL",
        M::OAuthBearer => "AUTH=OAUTHBEARER",
        M::XOAuth2 => "AUTH=XOAUTH2",
    }
}

/// How a connection starts.
#[derive(Debug)]
pub enum SessionStart {
    /// Greeting `* OK`, client must log in.
    Login {
        /// The client's address.
        peer: Option<SocketAddr>,
        /// The address the connection itself comes from: `peer` but
        /// behind a PROXY protocol listener, where it is the balancer's.
        /// A proxy's word in ID is believed by this one.
        hop: Option<std::net::IpAddr>,
        /// True on an implicit-TLS port.
        tls: bool,
        /// The TLS channel's bindings there.
        binding: Option<crate::tls::ChannelBindings>,
        /// The connection's place in the limits, given back before the
        /// last answer goes out.
        slot: Option<crate::listener::ConnectionSlot>,
    },
    /// Greeting `* PREAUTH` as this user (`tern imapd`).
    Preauth(User),
}

/// A message as this session last told the client about it.
pub(crate) use tern_maildir::folder::MessageState as Known;

/// The selected mailbox.
#[derive(Debug)]
pub(crate) struct Selected {
    pub open: Arc<OpenFolder>,
    pub read_only: bool,
    /// The user's rights on the mailbox when it was selected (RFC 4314).
    pub rights: tern_maildir::acl::Rights,
    pub uidvalidity: u32,
    /// Messages in sequence order. Invariant: ascending UIDs. Shared with
    /// the SEARCH running on a blocking thread, so that it needs no copy.
    pub known: Arc<Vec<Known>>,
    /// UIDs that are \Recent for this session.
    pub recent: HashSet<u32>,
    /// Keywords announced in FLAGS.
    pub keywords: BTreeSet<Arc<str>>,
    /// The folder view `known` was last compared with: when the folder still
    /// publishes the same view, nothing changed and nothing is compared.
    pub synced: Arc<tern_maildir::FolderView>,
    /// `known` is `synced` (but for flags this session set itself, which
    /// the folder published too): no EXPUNGE is held back, so catching up
    /// may look at the changed messages only.
    pub in_step: bool,
    /// The result saved by `SEARCH RETURN (SAVE)`, as UIDs (RFC 5182).
    pub saved: Vec<u32>,
}

impl Selected {
    /// The 0-based position of the message with UID `uid` in the
    /// client's numbering.
    pub fn index_of(&self, uid: Uid) -> Option<usize> {
        self.known.binary_search_by_key(&uid.0, |k| k.uid).ok()
    }
    /// The sequence number of the message with UID `uid`.
    pub fn seq_of(&self, uid: Uid) -> Option<tern_imap_proto::ids::Seq> {
        self.index_of(uid)
            .and_then(tern_imap_proto::ids::Seq::from_index)
    }
}

/// `$` of this session's mailbox (RFC 5182).
impl SavedResult for Selected {
    fn saved_uids(&self) -> Vec<u32> {
        self.saved
            .iter()
            .copied()
            .filter(|u| self.index_of(Uid(*u)).is_some())
            .collect()
    }
    fn seq_of(&self, uid: Uid) -> Option<tern_imap_proto::ids::Seq> {
        Selected::seq_of(self, uid)
    }
}

/// One line of a command the grammar refused, for the debug log.
pub(crate) fn log_unparsable(bytes: &[u8]) {
    let line = String::from_utf8_lossy(framing::strip_eol(
        bytes.split(|b| *b == b'\n').next().unwrap_or(b""),
    ));
    tracing::debug!(line = %line.chars().take(200).collect::<String>(), "unparsable command");
}

/// Session state (RFC 3501 §3).
#[derive(Debug)]
pub(crate) enum State {
    NotAuthenticated { failures: u32 },
    Authenticated { user: User },
    Selected { user: User, mailbox: Box<Selected> },
    Logout,
}

/// Maps a storage error to the client's answer (and logs the unexpected).
pub(crate) fn storage_reply(e: &MaildirError) -> Reply {
    match e {
        MaildirError::NoSuchFolder => Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
        MaildirError::FolderExists => {
            Reply::no(Some(Code::AlreadyExists), "Mailbox already exists")
        }
        MaildirError::InvalidName(why) => {
            Reply::no(Some(Code::Cannot), format!("Invalid mailbox name: {why}"))
        }
        MaildirError::NotAllowed(why) => Reply::no(Some(Code::Cannot), why.to_string()),
        MaildirError::LockTimeout(_) => Reply::no(Some(Code::InUse), "Mailbox is busy, try again"),
        MaildirError::MessageGone => Reply::no(Some(Code::ExpungeIssued), "Message was expunged"),
        MaildirError::OverQuota => Reply::no(Some(Code::OverQuota), "Quota exceeded"),
        MaildirError::TooManyKeywords(n) => Reply::no(
            Some(Code::Limit),
            format!("Too many keywords in this mailbox (at most {n})"),
        ),
        other => {
            tracing::error!(cause = %other, "storage error");
            match other {
                MaildirError::Io { source, .. } => io_reply(source),
                _ => None,
            }
            .unwrap_or_else(|| {
                Reply::no(Some(Code::ServerBug), "Internal error, see the server log")
            })
        }
    }
}

/// The answer to a write that failed because the disk or the user's
/// filesystem quota is full, or because the storage did not answer in time
/// (RFC 5530): the client is told why, not "internal error". `None` for
/// other errors.
pub(crate) fn io_reply(e: &std::io::Error) -> Option<Reply> {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return Some(Reply::no(
            Some(Code::Unavailable),
            "The mail storage is not answering; try again later",
        ));
    }
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Some(Reply::no(
            Some(Code::Limit),
            "Disk full: the message was not stored, try again later",
        )),
        Some(libc::EDQUOT) => Some(Reply::no(
            Some(Code::OverQuota),
            "Disk quota exceeded: the message was not stored",
        )),
        _ => None,
    }
}

/// Runs CPU or disk work that cannot fail on the blocking pool.
pub(crate) async fn compute<T, F>(f: F) -> Result<T, Reply>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    crate::creds::spawn_blocking(f)
        .await
        .map_err(|e| blocking_failure(&e))
}

/// The answer when a storage call gave none: too slow, or a failure of
/// tern's own.
pub(crate) fn blocking_failure(e: &crate::storage_gate::BlockingError) -> Reply {
    if e.timed_out() {
        return Reply::no(
            Some(Code::Unavailable),
            "The mail storage is not answering; try again later",
        );
    }
    tracing::error!(cause = %e, "blocking task failed");
    Reply::no(Some(Code::ServerBug), "Internal error, see the server log")
}

/// Whether a folder exists, asked on the blocking pool: a stat that a slow
/// disk or an NFS server may take its time over never holds up the
/// runtime's workers (and every other session on them). A failure to ask is
/// an answer of its own.
pub(crate) async fn folder_exists(
    maildir: &tern_maildir::Maildir,
    folder: Option<&tern_maildir::FolderName>,
) -> Result<bool, Reply> {
    let (md, folder) = (maildir.clone(), folder.cloned());
    compute(move || md.folder_exists(folder.as_ref())).await
}

/// Runs storage work on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, Reply>
where
    F: FnOnce() -> Result<T, MaildirError> + Send + 'static,
    T: Send + 'static,
{
    match crate::creds::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(storage_reply(&e)),
        Err(e) => Err(blocking_failure(&e)),
    }
}

/// Why the session ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The client logged out or the server closed the session on purpose.
    Closed,
    /// The socket failed or the client went away.
    Io(std::io::Error),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

/// A session of one connection.
pub(crate) struct Session {
    pub svc: Arc<Services>,
    pub conn: Conn,
    /// Cuts the client's bytes into commands; it holds what was read and
    /// not yet used (the connection's own buffer only passes bytes on).
    pub reader: Reader,
    pub state: State,
    pub peer: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The tag and RETURN options of the extended SEARCH being run.
    pub esearch: Option<(String, tern_imap_proto::esearch::ReturnOptions)>,
    /// The criteria of the SEARCH, SORT or THREAD being run, parsed by
    /// [`tern_imap_proto::criteria`] (which allows any depth) rather than
    /// by the grammar crate.
    pub criteria: Option<tern_imap_proto::criteria::Criteria>,
    /// The BODY sections of the FETCH being run that stand for BINARY
    /// items with a text specifier (see tern_imap_proto::binary_sections).
    pub binary_aliases: Vec<tern_imap_proto::binary_sections::BinaryAlias>,
    /// The connection's place in the limits (see
    /// [`crate::listener::ConnectionSlot`]).
    pub(crate) slot: Option<crate::listener::ConnectionSlot>,
    /// The password of the login in progress, when its mechanism revealed
    /// one: what the proxy logs in to a backend with.
    pub(crate) login_secret: Option<tern_auth::Secret<Vec<u8>>>,
    /// The route the last accepted login took (`Some(None)`: served
    /// here), taken once for the login step and the relay.
    pub(crate) login_route: Option<Option<Vec<String>>>,
    /// A proxy of `auth.login_trusted_networks` named the client (ID).
    pub(crate) trusted_proxy: bool,
    /// Where the connection itself comes from (see [`SessionStart`]).
    pub(crate) hop: Option<std::net::IpAddr>,
    /// A trusted proxy relayed this session here (ID `x-tern-route`):
    /// the login is served here, whatever this server's own route says.
    pub(crate) routed_here: bool,
    /// The account a relayed session is for.
    pub(crate) proxied_user: Option<String>,
    /// When the connection began: the login must be over
    /// `limits.preauth_timeout_secs` later.
    started: std::time::Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("tls", &self.conn.tls_active)
            .finish()
    }
}

/// One complete command as read from the wire.
pub(crate) enum Incoming {
    /// A command and its bytes, ready for the parser.
    Command(Vec<u8>),
    /// APPEND whose message was streamed to a file: the command with the
    /// literal replaced by `{0}`, and the file.
    Append(Vec<u8>, super::append::Streamed),
    /// Already answered (too long, too big...): nothing more to do.
    Answered,
}

/// Serves one connection until it ends.
///
/// Not an `async fn`: the session is built here, and only it and its
/// running future are kept for the connection's life. An `async fn` would
/// also keep room for its arguments, and `creds::scope`'s for the future
/// it wraps, for as long as it runs (see "memory per idle logged-in
/// connection" in docs/BENCHMARKS.md).
pub fn serve_connection(
    svc: Arc<Services>,
    stream: Box<dyn AsyncStream>,
    start: SessionStart,
) -> impl std::future::Future<Output = ()> + Send {
    let (state, peer, hop, tls, binding, slot) = match start {
        SessionStart::Login {
            peer,
            hop,
            tls,
            binding,
            slot,
        } => (
            State::NotAuthenticated { failures: 0 },
            peer,
            hop,
            tls,
            binding,
            slot,
        ),
        SessionStart::Preauth(user) => {
            // Outside the scope below: `tern imapd` runs as its account.
            (State::Authenticated { user }, None, None, false, None, None)
        }
    };
    let shutdown = svc.shutdown.clone();
    let svc_limits = svc.limits.framer();
    let mut s = Session {
        svc,
        conn: Conn::new(stream, tls),
        reader: Reader::new(svc_limits),
        state,
        peer,
        shutdown,
        esearch: None,
        criteria: None,
        binary_aliases: Vec::new(),
        slot,
        login_secret: None,
        login_route: None,
        trusted_proxy: false,
        hop,
        routed_here: false,
        proxied_user: None,
        started: std::time::Instant::now(),
    };
    s.conn.binding = binding.map(Box::new);
    async move {
        match crate::creds::scope(s.run()).await {
            Ok(()) | Err(End::Closed) => {}
            Err(End::Io(e)) => tracing::debug!(cause = %e, "connection ended"),
        }
    }
}

impl Session {
    /// Writes out everything buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush().await
    }

    /// Flushes when the buffer has grown large (long FETCH responses).
    pub async fn flush_if_large(&mut self) -> std::io::Result<()> {
        if self.conn.out.len() >= 64 * 1024 {
            self.flush().await?;
        }
        Ok(())
    }

    pub fn untagged(&mut self, line: &str) {
        self.conn.out.extend_from_slice(b"* ");
        self.conn.out.extend_from_slice(line.as_bytes());
        self.conn.out.extend_from_slice(b"\r\n");
    }

    pub fn tagged(&mut self, tag: &str, r: &Reply) {
        r.write_tagged(tag, &mut self.conn.out);
    }

    fn timeout(&self) -> Duration {
        match self.state {
            State::NotAuthenticated { .. } => crate::login::time_left(&self.svc, self.started),
            _ => self.svc.limits.auth_timeout(),
        }
    }

    /// Turns the end of reading into the session's end: a timeout says
    /// BYE first (RFC 3501 §5.4).
    async fn ended(&mut self, e: ConnEnd) -> End {
        match e {
            ConnEnd::TimedOut => {
                self.untagged("BYE Autologout; idle for too long");
                let _ = self.flush().await;
                End::Closed
            }
            ConnEnd::Closed => End::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "client closed",
            )),
            ConnEnd::Io(e) => End::Io(e),
        }
    }

    /// Reads more bytes and hands them to the framer; EOF is an error.
    pub async fn fill(&mut self) -> Result<(), End> {
        let timeout = self.timeout();
        match self.conn.fill(timeout).await {
            Ok(()) => {
                self.reader.framer().feed(&self.conn.inbuf);
                self.conn.inbuf.clear();
                Ok(())
            }
            Err(e) => Err(self.ended(e).await),
        }
    }

    /// Reads one line outside any command (a SASL response, IDLE's
    /// `DONE`), with CRLF. A line longer than the limit is read to its end
    /// and reported as `None`.
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, End> {
        loop {
            match self.reader.framer().next_line() {
                Ok(Some(line)) => return Ok(Some(line)),
                Ok(None) => self.fill().await?,
                Err(_) => return Ok(None),
            }
        }
    }

    /// Whether a password may be sent: over TLS, from a trusted proxy
    /// (which applied the policy to its own client, as Dovecot takes
    /// `login_trusted_networks` as secured), or as `auth.cleartext` says.
    pub fn cleartext_allowed(&self) -> bool {
        crate::login::cleartext_allowed(
            &self.svc,
            self.conn.tls_active || self.trusted_proxy,
            self.peer,
        )
    }

    pub fn capabilities(&self) -> String {
        self.capabilities_when(!matches!(self.state, State::NotAuthenticated { .. }))
    }

    /// The capabilities before (`false`) or after login.
    pub fn capabilities_when(&self, logged_in: bool) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
        ];
        match logged_in {
            false => {
                if self.svc.tls.is_some() && !self.conn.tls_active {
                    caps.push("STARTTLS");
                }
                let cleartext = self.cleartext_allowed();
                if !cleartext {
                    caps.push("LOGINDISABLED");
                }
                for m in crate::sasl::offered(&self.svc, cleartext, self.conn.binding.as_deref()) {
                    caps.push(auth_capability(m));
                }
            }
            true => {
                caps.extend([
                    "CHILDREN",
                    "UIDPLUS",
                    "UNSELECT",
                    "MOVE",
                    "QUOTA",
                    "QUOTA=RES-STORAGE",
                    "QUOTA=RES-MESSAGE",
                    "SORT",
                    "SORT=DISPLAY",
                    "THREAD=ORDEREDSUBJECT",
                    "THREAD=REFERENCES",
                    "ESEARCH",
                    "SEARCHRES",
                    "BINARY",
                ]);
                if self.svc.policy.acl {
                    caps.extend(["ACL", "RIGHTS=texk"]);
                }
                // RFC 9208 §3.1.1: SETQUOTA is offered only where it works.
                if self.svc.policy.allow_setquota {
                    caps.push("QUOTASET");
                }
            }
        }
        let mut s = caps.join(" ");
        if logged_in {
            s.push_str(&format!(
                " APPENDLIMIT={}",
                self.svc.limits.max_message_size
            ));
        }
        s
    }

    async fn run(&mut self) -> Result<(), End> {
        let greeting = match &self.state {
            State::Authenticated { user } => {
                if let Err(e) = user.maildir.ensure() {
                    tracing::error!(cause = %e, "cannot create the Maildir");
                    self.untagged("BYE Cannot open the mailbox store");
                    self.flush().await?;
                    return Err(End::Closed);
                }
                format!(
                    "PREAUTH [CAPABILITY {}] tern ready, logged in as {}",
                    self.capabilities(),
                    user.name
                )
            }
            _ => format!(
                "OK [CAPABILITY {}] {} tern IMAP ready",
                self.capabilities(),
                self.svc.hostname
            ),
        };
        self.untagged(&greeting);
        self.flush().await?;
        if matches!(self.state, State::NotAuthenticated { .. }) {
            // Boxed: the login phase's state (a directory lookup's, a SASL
            // exchange's) is freed once it ends, instead of sizing every
            // session's task for the rest of its life.
            match Box::pin(self.pre_login()).await? {
                super::prelogin::LoginEnd::LoggedIn(user) => {
                    crate::creds::set(user.creds);
                    crate::creds::set_account(&user.name);
                    self.state = State::Authenticated { user };
                }
                super::prelogin::LoginEnd::Closed => return Err(End::Closed),
                super::prelogin::LoginEnd::Proxied(backend) => {
                    // The session is the backend's now: relay until either
                    // side closes.
                    let pipelined = self.reader.framer().take_buffered();
                    self.give_back_buffers();
                    let idle = self.svc.limits.auth_timeout();
                    if let Some(stream) = self.conn.take_stream() {
                        let svc = self.svc.clone();
                        let user = self.proxied_user.take().unwrap_or_default();
                        let ctx = crate::proxy::RelayContext {
                            relayed: &svc.relayed,
                            user: &user,
                            client: self.peer,
                            leg: crate::proxy::Leg::Imap,
                        };
                        Box::pin(crate::proxy::relay(stream, *backend, pipelined, idle, ctx)).await;
                    }
                    return Err(End::Closed);
                }
            }
        }
        loop {
            // Each command's future is boxed: its state (a FETCH's, an
            // APPEND's, IDLE's) is as large as the largest command's and
            // lives only while the command runs, so an idle session's task
            // is the size of its reader, not of its biggest command.
            match self.next_incoming().await? {
                None => continue,
                Some(Incoming::Answered) => {}
                Some(Incoming::Command(bytes)) => Box::pin(self.execute(&bytes, None)).await?,
                Some(Incoming::Append(bytes, streamed)) => {
                    Box::pin(self.execute(&bytes, Some(streamed))).await?
                }
            }
            self.after_command().await?;
        }
    }

    /// The next command, or `None` when the server's shutdown signal
    /// changed without ending it (look again); BYE and the end when the
    /// server shuts down.
    pub(crate) async fn next_incoming(&mut self) -> Result<Option<Incoming>, End> {
        if *self.shutdown.borrow() {
            self.untagged("BYE Server shutting down");
            self.flush().await?;
            return Err(End::Closed);
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            r = self.read_command() => r.map(Some),
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The server is gone without a word: end quietly.
                    return Err(End::Closed);
                }
                Ok(None)
            }
        }
    }

    /// Gives back what reading and answering a command took, so that an
    /// idle session stays small (about 5 KiB; see docs/BENCHMARKS.md).
    pub(crate) fn give_back_buffers(&mut self) {
        self.conn.shrink();
        self.reader.framer().shrink();
    }

    /// After each command: its answer out, buffers given back, the end
    /// after LOGOUT (or a BYE the command decided on).
    pub(crate) async fn after_command(&mut self) -> Result<(), End> {
        if matches!(self.state, State::Logout) {
            // The place is free before the client reads the last answer.
            self.slot.take();
        }
        self.flush().await?;
        self.give_back_buffers();
        if matches!(self.state, State::Logout) {
            return Err(End::Closed);
        }
        Ok(())
    }

    /// Reads a whole command through the engine's reader: its lines and
    /// literals, the message of an APPEND streamed to `tmp/` (see
    /// [`super::append`]).
    async fn read_command(&mut self) -> Result<Incoming, End> {
        let phase = self.phase();
        // Boxed while it lasts: an idle session's wait is in this future,
        // which would otherwise hold room for it all the time.
        let mut streaming: Option<Box<super::append::Streaming>> = None;
        // What only an APPEND's literal awaits (its file's creation,
        // writes, sync) is boxed: an idle session waits in this function,
        // so its task is as large as this future's largest state.
        loop {
            match self.reader.next(phase, &mut self.conn.out) {
                Step::NeedInput => self.fill().await?,
                Step::Flush => {
                    if !self.conn.out.is_empty() {
                        self.flush().await?;
                    }
                }
                Step::Close => {
                    self.flush().await?;
                    return Err(End::Closed);
                }
                Step::Answered => {
                    if let Some(s) = streaming.take() {
                        Box::pin(s.abandon()).await;
                    }
                    return Ok(Incoming::Answered);
                }
                Step::Command(bytes) => {
                    return Ok(match streaming.take() {
                        None => Incoming::Command(bytes),
                        Some(s) => match Box::pin(s.finish()).await {
                            Ok(streamed) => Incoming::Append(bytes, streamed),
                            Err(r) => {
                                let tag = framing::tag_of(&bytes).unwrap_or("*").to_owned();
                                self.tagged(&tag, &r);
                                Incoming::Answered
                            }
                        },
                    });
                }
                Step::Chunk(bytes) => {
                    if let Some(s) = streaming.as_mut() {
                        s.push(&bytes);
                        Box::pin(s.write_out()).await;
                    }
                }
                Step::AppendMessage { tag, info, mailbox } => {
                    match Box::pin(self.start_append(mailbox, info)).await {
                        Ok(s) => {
                            streaming = Some(Box::new(s));
                            self.reader.stream(&mut self.conn.out);
                            if !self.conn.out.is_empty() {
                                self.flush().await?;
                            }
                        }
                        Err(r) => {
                            self.reader.refuse(tag.as_deref(), &r, &mut self.conn.out);
                            return Ok(Incoming::Answered);
                        }
                    }
                }
            }
        }
    }

    /// The state as the protocol engine knows it.
    pub(crate) fn phase(&self) -> Phase {
        match self.state {
            State::NotAuthenticated { .. } => Phase::NotAuthenticated,
            State::Authenticated { .. } => Phase::Authenticated,
            State::Selected { .. } => Phase::Selected,
            State::Logout => Phase::Logout,
        }
    }

    /// Parses and runs one command.
    async fn execute(
        &mut self,
        bytes: &[u8],
        streamed: Option<super::append::Streamed>,
    ) -> Result<(), End> {
        // One parse into the typed command and the parts imap-codec lacks,
        // checked against the state, `$` resolved (tern_imap_proto::engine).
        self.esearch = None;
        self.criteria = None;
        self.binary_aliases.clear();
        let phase = self.phase();
        let saved = match &self.state {
            State::Selected { mailbox, .. } => Some(mailbox.as_ref() as &dyn SavedResult),
            _ => None,
        };
        let keys = self.svc.limits.max_search_keys;
        let ready = match engine::prepare(bytes, phase, keys, saved, &mut self.conn.out) {
            Prepared::Run(ready) => ready,
            Prepared::Acl { tag, command } => {
                if let Some(s) = streamed {
                    s.discard();
                }
                let reply = Box::pin(self.acl_command(command)).await;
                self.tagged(&tag, &reply);
                if matches!(self.state, State::Selected { .. }) {
                    Box::pin(self.announce(true)).await;
                }
                return Ok(());
            }
            Prepared::Answered { unparsable } => {
                if let Some(s) = streamed {
                    s.discard();
                }
                if unparsable {
                    log_unparsable(bytes);
                }
                return Ok(());
            }
        };
        let Ready {
            tag,
            body,
            esearch,
            criteria,
            binary_aliases,
        } = *ready;
        self.esearch = esearch.map(|o| (tag.clone(), o));
        self.criteria = criteria;
        self.binary_aliases = binary_aliases;
        if let Some(reply) = self.dispatch(body, streamed).await? {
            self.tagged(&tag, &reply);
        }
        Ok(())
    }

    /// Runs a command; `None` when the handler sent the tagged reply itself.
    ///
    /// Each handler's future is boxed: this one's is then only as large as
    /// the arguments, not as its largest handler's state, so a session
    /// waiting in a small command (IDLE, which a client may hold for
    /// hours) pays only for that command's state.
    async fn dispatch(
        &mut self,
        body: CommandBody<'static>,
        streamed: Option<super::append::Streamed>,
    ) -> Result<Option<Reply>, End> {
        use CommandBody as C;
        // Commands that may not be followed by EXPUNGE responses (§7.4.1).
        let expunge_ok = !matches!(
            &body,
            C::Fetch { uid: false, .. }
                | C::Store { uid: false, .. }
                | C::Search { uid: false, .. }
                | C::Copy { uid: false, .. }
        );
        let reply = match body {
            C::Capability => self.capability(),
            C::Noop => Reply::ok("NOOP completed"),
            C::Check => Reply::ok("CHECK completed"),
            C::Logout => return Ok(Some(self.logout())),
            C::Id { .. } => self.id(),
            C::Enable { .. } => {
                self.untagged("ENABLED");
                Reply::ok("ENABLE completed")
            }
            C::Namespace => {
                let data = self.svc.namespace.response();
                self.untagged(&data);
                Reply::ok("NAMESPACE completed")
            }
            C::Select { mailbox, .. } => Box::pin(self.select(mailbox, false)).await,
            C::Examine { mailbox, .. } => Box::pin(self.select(mailbox, true)).await,
            C::Create { mailbox } => Box::pin(self.create(mailbox)).await,
            C::Delete { mailbox } => Box::pin(self.delete(mailbox)).await,
            C::Rename { from, to } => Box::pin(self.rename(from, to)).await,
            C::Subscribe { mailbox } => Box::pin(self.subscribe(mailbox, true)).await,
            C::Unsubscribe { mailbox } => Box::pin(self.subscribe(mailbox, false)).await,
            C::List {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(reference, mailbox_wildcard, false)).await,
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(reference, mailbox_wildcard, true)).await,
            C::Status {
                mailbox,
                item_names,
            } => Box::pin(self.status(mailbox, &item_names)).await,
            C::Append {
                mailbox,
                flags,
                date,
                ..
            } => match streamed {
                Some(s) => Box::pin(self.append(mailbox, flags, date, s)).await,
                None => Reply::bad("APPEND needs a message literal"),
            },
            C::Close => Box::pin(self.close(true)).await,
            C::Unselect => Box::pin(self.close(false)).await,
            C::Expunge => Box::pin(self.expunge(None)).await?,
            C::ExpungeUid { sequence_set } => Box::pin(self.expunge(Some(sequence_set))).await?,
            C::Search { charset, uid, .. } => match self.criteria.take() {
                Some(criteria) => Box::pin(self.search(charset, criteria, uid)).await,
                None => Reply::bad("Missing search criteria"),
            },
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => Box::pin(self.fetch(sequence_set, macro_or_item_names, uid)).await?,
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => Box::pin(self.store(sequence_set, kind, response, flags, uid)).await,
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(sequence_set, mailbox, uid, false)).await?,
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(sequence_set, mailbox, uid, true)).await?,
            C::Idle => return Box::pin(self.idle()).await,
            C::Sort {
                sort_criteria,
                charset,
                uid,
                ..
            } => match self.criteria.take() {
                Some(search) => Box::pin(self.sort(sort_criteria, charset, search, uid)).await,
                None => Reply::bad("Missing search criteria"),
            },
            C::Thread {
                algorithm,
                charset,
                uid,
                ..
            } => match self.criteria.take() {
                Some(search) => Box::pin(self.thread(algorithm, charset, search, uid)).await,
                None => Reply::bad("Missing search criteria"),
            },
            C::GetQuotaRoot { mailbox } => Box::pin(self.getquotaroot(mailbox)).await,
            C::GetQuota { root } => Box::pin(self.getquota(root)).await,
            C::SetQuota { root, quotas } => Box::pin(self.setquota(root, quotas)).await,
            _ => Reply::bad("Command not supported"),
        };
        if matches!(self.state, State::Selected { .. }) {
            Box::pin(self.announce(expunge_ok)).await;
        }
        Ok(Some(reply))
    }
}
