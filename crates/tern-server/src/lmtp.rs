//! LMTP (RFC 2033): the MTA (Postfix `lmtp:`, Exim's `lmtp` transport)
//! hands each message to tern, which writes it into the recipients'
//! INBOXes as `tern deliver` does (through `tmp/`, synced, the Maildir++
//! quota honoured) and answers for each recipient once it is stored.
//!
//! Answers, as `tern deliver`'s exit codes map to them: an unknown
//! recipient `550 5.1.1` at RCPT (the MTA bounces); over quota `552 5.2.2`
//! after DATA (bounced, as deliverquota's 77); a storage or directory
//! failure `451 4.3.0` (the MTA keeps the message and retries). A
//! recipient whose account another server holds (`mailhost`) is relayed
//! to that server's LMTP ([`relay`]), and its answer passed on.
//!
//! LMTP has no authentication: listen on loopback or a private network
//! only. What a client can make the server hold is bounded: a command line
//! ([`MAX_LINE`]), recipients per message ([`MAX_RECIPIENTS`]), the message
//! (`limits.max_message_size`), and the connection limits of every
//! listener.

pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use crate::imap::{AsyncStream, Services};
use crate::users::User;

/// Longest command line taken (RFC 5321 §4.5.3.1.4 asks for 512).
pub const MAX_LINE: usize = 4096;

/// Most recipients of one message (RFC 5321 §4.5.3.1.8 asks for 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// How long the client may stay silent.
const IDLE: Duration = Duration::from_secs(300);

/// `[lmtp]` settings the sessions need.
#[derive(Debug, Clone, Default)]
pub struct LmtpSettings {
    /// Look accounts up by the local part of the address alone
    /// (`alice@example.org` is the account `alice`).
    pub local_part_only: bool,
    /// Backends whose LMTP failed lately (apart from the IMAP and POP3
    /// logins' record: a backend may serve those and not LMTP).
    pub health: Arc<crate::proxy::Health>,
    /// Relay connections kept open between messages ([`relay::Kept`]).
    pub kept: Arc<relay::Kept>,
}

/// A command line of LMTP, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// LHLO host.
    Lhlo,
    /// MAIL FROM:<path> [params]: the reverse path and the SIZE given.
    Mail {
        /// The sender (empty for a bounce).
        from: String,
        /// `SIZE=n` (RFC 1870).
        size: Option<u64>,
    },
    /// RCPT TO:<path>.
    Rcpt(String),
    /// DATA.
    Data,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY (answered 252, as RFC 5321 allows).
    Vrfy,
    /// XCLIENT (Postfix's, as Dovecot's LMTP takes it from a trusted
    /// relay): the hops left and whose connection brought the mail.
    Xclient {
        /// `TTL=`.
        ttl: Option<u32>,
        /// `ADDR=` and `PORT=`.
        client: Option<SocketAddr>,
    },
    /// HELO/EHLO, which LMTP does not take (RFC 2033 §4.1).
    Helo,
    /// A known command with bad arguments.
    Syntax(&'static str),
    /// Anything else.
    Unknown,
}

/// The path between `<` and `>` after `prefix` (case-insensitive), and
/// what follows it.
fn path_after<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = line.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = line[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

impl Command {
    /// `XCLIENT name=value...`: TTL, ADDR and PORT are used, other names
    /// (LOGIN, HELO, PROTO...) are ignored, `[UNAVAILABLE]` values too.
    fn parse_xclient(line: &str) -> Command {
        let (mut ttl, mut ip, mut port) = (None, None, None);
        for p in line.split(' ').skip(1).filter(|p| !p.is_empty()) {
            let Some((k, v)) = p.split_once('=') else {
                return Command::Syntax("501 5.5.4 Syntax: XCLIENT name=value ...");
            };
            let bad = || Command::Syntax("501 5.5.4 Bad XCLIENT value");
            match k.to_ascii_uppercase().as_str() {
                "TTL" => match v.parse::<u32>() {
                    Ok(n) => ttl = Some(n),
                    Err(_) => return bad(),
                },
                "ADDR" => {
                    let v = v.strip_prefix("IPV6:").unwrap_or(v);
                    match v.parse::<std::net::IpAddr>() {
                        Ok(a) => ip = Some(a),
                        Err(_) if v.eq_ignore_ascii_case("[UNAVAILABLE]") => {}
                        Err(_) => return bad(),
                    }
                }
                "PORT" => match v.parse::<u16>() {
                    Ok(n) => port = Some(n),
                    Err(_) if v.eq_ignore_ascii_case("[UNAVAILABLE]") => {}
                    Err(_) => return bad(),
                },
                _ => {}
            }
        }
        Command::Xclient {
            ttl,
            client: ip.map(|ip| SocketAddr::new(ip, port.unwrap_or(0))),
        }
    }

    /// Parses one command line (without its CRLF).
    pub fn parse(line: &str) -> Command {
        let word = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match word.as_str() {
            "LHLO" => {
                if line.len() > 5 && !line[5..].trim().is_empty() {
                    Command::Lhlo
                } else {
                    Command::Syntax("501 5.5.4 LHLO needs a host name")
                }
            }
            "HELO" | "EHLO" => Command::Helo,
            "MAIL" => match path_after(line, "MAIL FROM:") {
                Some((from, params)) => {
                    let mut size = None;
                    for p in params.split(' ').filter(|p| !p.is_empty()) {
                        if p.get(..5).is_some_and(|k| k.eq_ignore_ascii_case("SIZE=")) {
                            match p[5..].parse::<u64>() {
                                Ok(n) => size = Some(n),
                                Err(_) => return Command::Syntax("501 5.5.4 Bad SIZE"),
                            }
                        }
                    }
                    Command::Mail {
                        from: from.to_owned(),
                        size,
                    }
                }
                None => Command::Syntax("501 5.5.4 Syntax: MAIL FROM:<address>"),
            },
            "RCPT" => match path_after(line, "RCPT TO:") {
                Some((to, _)) if !to.is_empty() => Command::Rcpt(to.to_owned()),
                _ => Command::Syntax("501 5.5.4 Syntax: RCPT TO:<address>"),
            },
            "DATA" => Command::Data,
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            "VRFY" => Command::Vrfy,
            "XCLIENT" => Command::parse_xclient(line),
            _ => Command::Unknown,
        }
    }
}

/// The message data after DATA, read in pieces: the terminating `.` line
/// found, a leading dot of each line removed, CRLF turned into LF as
/// Maildir programs store mail (RFC 5321 §4.5.2).
#[derive(Debug, Default)]
pub struct DataReader {
    /// At the start of a line.
    at_start: bool,
    /// What of a possible end (`.`, `.\r`) or of a line end (`\r`) is held.
    held: Vec<u8>,
    /// Bytes taken (after unstuffing), for the size limit.
    pub size: u64,
}

impl DataReader {
    /// A reader at the start of the data.
    pub fn new() -> DataReader {
        DataReader {
            at_start: true,
            ..DataReader::default()
        }
    }

    /// Takes `input`, appending the message bytes to `out` (beyond `max`
    /// total they are counted but not kept); the number of bytes of
    /// `input` used when the end line was reached (the rest is the next
    /// command), else `None`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>, max: u64) -> Option<usize> {
        for (i, &b) in input.iter().enumerate() {
            match (self.held.as_slice(), b) {
                // The end: CRLF . CRLF (the data's first line counts as
                // coming after a CRLF).
                (b".\r", b'\n') => {
                    self.held.clear();
                    return Some(i + 1);
                }
                // `.` CR and something else: the dot was stuffing, the CR
                // is data.
                (b".\r", _) => {
                    self.held.clear();
                    self.at_start = false;
                    self.emit(b"\r", out, max);
                    self.take(b, out, max);
                }
                (b".", b'\r') => self.held.push(b'\r'),
                // A dot that starts a line is stuffing: dropped.
                (b".", _) => {
                    self.held.clear();
                    self.at_start = false;
                    self.take(b, out, max);
                }
                (b"\r", b'\n') => {
                    self.held.clear();
                    self.emit(b"\n", out, max);
                    self.at_start = true;
                }
                (b"\r", _) => {
                    self.held.clear();
                    self.emit(b"\r", out, max);
                    self.take(b, out, max);
                }
                _ => self.take(b, out, max),
            }
        }
        None
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>, max: u64) {
        self.size += bytes.len() as u64;
        if self.size <= max {
            out.extend_from_slice(bytes);
        }
    }

    /// A byte with nothing held.
    fn take(&mut self, b: u8, out: &mut Vec<u8>, max: u64) {
        if self.at_start && b == b'.' {
            self.held.push(b'.');
            return;
        }
        self.at_start = false;
        match b {
            b'\r' => self.held.push(b'\r'),
            b'\n' => {
                self.emit(b"\n", out, max);
                self.at_start = true;
            }
            _ => self.emit(&[b], out, max),
        }
    }
}

/// One accepted recipient.
struct Recipient {
    address: String,
    target: Target,
}

/// Where a recipient's copy goes.
enum Target {
    /// Into this account's INBOX here.
    Local(User),
    /// To the backend at this place in the transaction's relays (`None`
    /// there: its connection was lost after it took the recipient).
    Relay(usize),
}

/// Serves one LMTP connection to its end.
pub async fn serve_lmtp(
    svc: Arc<Services>,
    mut stream: Box<dyn AsyncStream>,
    peer: Option<SocketAddr>,
    slot: Option<crate::listener::ConnectionSlot>,
) {
    let _slot = slot;
    let res = session(&svc, &mut stream, peer).await;
    if let Err(e) = res {
        tracing::debug!(cause = %e, "LMTP connection ended");
    }
}

/// Serves LMTP on the Unix socket `path` (Postfix `lmtp:unix:...`),
/// made with `mode` and at most `limits.max_connections` at once. A stale
/// socket at the path is replaced; any other file there is left alone and
/// the listener not started.
///
/// # Errors
/// The socket cannot be made.
pub async fn serve_unix(
    svc: Arc<Services>,
    path: std::path::PathBuf,
    mode: u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if !m.file_type().is_socket() {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    let running = Arc::new(tokio::sync::Semaphore::new(
        svc.limits.max_connections.max(1),
    ));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = running.clone().try_acquire_owned() else {
                let _ = stream
                    .write_all(b"421 4.3.2 Too many connections\r\n")
                    .await;
                continue;
            };
            let svc = svc.clone();
            tokio::spawn(
                async move {
                    let _permit = permit;
                    serve_lmtp(svc, Box::new(stream), None, None).await;
                }
                .instrument(tracing::info_span!(
                    "session",
                    proto = "lmtp",
                    peer = "unix"
                )),
            );
        }
    });
    Ok(())
}

async fn reply(stream: &mut Box<dyn AsyncStream>, text: &str) -> std::io::Result<()> {
    stream.write_all(text.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// Reads one line (without CRLF) from `buf`, filling it from `stream`;
/// `None` at the end of the stream, an error for a line over [`MAX_LINE`].
async fn read_line(
    stream: &mut Box<dyn AsyncStream>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    loop {
        if let Some(p) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(Some(String::from_utf8_lossy(line).into_owned()));
        }
        if buf.len() > MAX_LINE {
            return Err(std::io::Error::other("command line too long"));
        }
        let mut piece = [0u8; 4096];
        let n = tokio::time::timeout(IDLE, stream.read(&mut piece))
            .await
            .map_err(|_| std::io::Error::other("idle too long"))??;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&piece[..n]);
    }
}

async fn session(
    svc: &Arc<Services>,
    stream: &mut Box<dyn AsyncStream>,
    peer: Option<SocketAddr>,
) -> std::io::Result<()> {
    let host = svc.hostname.clone();
    let greeting = format!("220 {host} tern LMTP ready");
    reply(stream, &greeting).await?;
    // A relay of `auth.login_trusted_networks` may say, by XCLIENT, how
    // many hops the mail has left and whose connection brought it.
    let trusted = peer.is_some_and(|p| svc.login_trusted.iter().any(|n| n.contains(p.ip())));
    let (mut ttl, mut client) = (relay::MAX_HOPS, peer);
    let mut buf = Vec::new();
    let (mut greeted, mut from): (bool, Option<String>) = (false, None);
    let mut mail_size: Option<u64> = None;
    let mut rcpts: Vec<Recipient> = Vec::new();
    // The backends taking part in the transaction ([`relay::Open`]).
    let mut relays: Vec<Option<relay::Open>> = Vec::new();
    let max = svc.limits.max_message_size;
    loop {
        let Some(line) = read_line(stream, &mut buf).await? else {
            return Ok(());
        };
        match Command::parse(&line) {
            Command::Lhlo => {
                greeted = true;
                (from, rcpts) = (None, Vec::new());
                relays.clear();
                let xclient = if trusted {
                    "250-XCLIENT ADDR PORT TTL\r\n"
                } else {
                    ""
                };
                reply(
                    stream,
                    &format!(
                        "250-{host}\r\n{xclient}250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE {max}"
                    ),
                )
                .await?;
            }
            Command::Helo => reply(stream, "500 5.5.1 This is LMTP: say LHLO").await?,
            Command::Xclient { .. } if !trusted => {
                reply(stream, "550 5.7.0 XCLIENT is for trusted relays only").await?;
            }
            Command::Xclient { .. } if from.is_some() => {
                reply(stream, "503 5.5.1 XCLIENT not inside a transaction").await?;
            }
            Command::Xclient { ttl: t, client: c } => {
                // As after Postfix's XCLIENT: a new greeting, LHLO again.
                if let Some(t) = t {
                    ttl = t.min(relay::MAX_HOPS);
                }
                if c.is_some() {
                    client = c;
                }
                (greeted, rcpts) = (false, Vec::new());
                relays.clear();
                reply(stream, &greeting).await?;
            }
            Command::Mail { .. } if !greeted => {
                reply(stream, "503 5.5.1 LHLO first").await?;
            }
            Command::Mail { .. } if from.is_some() => {
                reply(stream, "503 5.5.1 MAIL already given").await?;
            }
            Command::Mail { size: Some(n), .. } if n > max => {
                reply(
                    stream,
                    &format!("552 5.3.4 Message larger than {max} octets"),
                )
                .await?;
            }
            Command::Mail { from: f, size } => {
                (from, mail_size) = (Some(f), size);
                reply(stream, "250 2.1.0 OK").await?;
            }
            Command::Rcpt(_) if from.is_none() => reply(stream, "503 5.5.1 MAIL first").await?,
            Command::Rcpt(_) if rcpts.len() >= MAX_RECIPIENTS => {
                reply(stream, "452 4.5.3 Too many recipients").await?;
            }
            Command::Rcpt(address) => {
                match look_up(svc, &address).await {
                    Lookup::Found(u) => {
                        rcpts.push(Recipient {
                            address,
                            target: Target::Local(u),
                        });
                        reply(stream, "250 2.1.5 OK").await?;
                    }
                    Lookup::Elsewhere(_) if ttl <= 1 => {
                        // Temporary: two directories that disagree (a move
                        // half done) must not bounce the mail.
                        tracing::warn!(%address, "LMTP: relay loop (no hops left)");
                        reply(
                        stream,
                        &format!("451 4.4.6 <{address}> Too many hops between relays (a routing loop?)"),
                    )
                    .await?;
                    }
                    Lookup::Elsewhere(route) => {
                        // The backend's own answer, at RCPT.
                        let env = relay::Envelope {
                            sender: from.clone().unwrap_or_default(),
                            size: mail_size,
                            client,
                            ttl: ttl.saturating_sub(1),
                        };
                        let answer = relay_rcpt(svc, &mut relays, route, &env, &address).await;
                        match answer {
                            Ok((answer, Some(at))) => {
                                rcpts.push(Recipient {
                                    address,
                                    target: Target::Relay(at),
                                });
                                reply(stream, &answer).await?;
                            }
                            Ok((answer, None)) | Err(answer) => reply(stream, &answer).await?,
                        }
                    }
                    Lookup::Unknown => {
                        reply(stream, &format!("550 5.1.1 <{address}> User unknown")).await?;
                    }
                    Lookup::TempFail => {
                        reply(
                            stream,
                            "451 4.3.0 User database unavailable, try again later",
                        )
                        .await?;
                    }
                }
            }
            Command::Data if rcpts.is_empty() => {
                reply(stream, "503 5.5.1 No valid recipients").await?;
            }
            Command::Data => {
                reply(stream, "354 Start mail input; end with <CRLF>.<CRLF>").await?;
                let mut data = Vec::new();
                let mut reader = DataReader::new();
                let rest = read_data(stream, &mut buf, &mut reader, &mut data, max).await?;
                buf = rest;
                let sender = from.take().unwrap_or_default();
                if reader.size > max {
                    relays.clear();
                    for _ in &rcpts {
                        reply(
                            stream,
                            &format!("552 5.3.4 Message larger than {max} octets"),
                        )
                        .await?;
                    }
                } else {
                    // One copy of the message for all its recipients.
                    let data = Arc::new(data);
                    let message = Message {
                        sender: &sender,
                        data: &data,
                        client,
                    };
                    let answers = deliver_all(
                        svc,
                        std::mem::take(&mut rcpts),
                        &message,
                        std::mem::take(&mut relays),
                    )
                    .await;
                    for answer in answers {
                        reply(stream, &answer).await?;
                    }
                }
                rcpts.clear();
            }
            Command::Rset => {
                (from, rcpts) = (None, Vec::new());
                relays.clear();
                reply(stream, "250 2.0.0 OK").await?;
            }
            Command::Noop => reply(stream, "250 2.0.0 OK").await?,
            Command::Vrfy => reply(stream, "252 2.5.2 Cannot VRFY; try RCPT").await?,
            Command::Quit => {
                reply(stream, &format!("221 2.0.0 {host} closing")).await?;
                return Ok(());
            }
            Command::Syntax(text) => reply(stream, text).await?,
            Command::Unknown => reply(stream, "500 5.5.2 Unknown command").await?,
        }
    }
}

/// A message read, for the local recipients.
struct Message<'a> {
    /// The reverse path (empty for a bounce).
    sender: &'a str,
    /// As stored here (LF line ends, unstuffed).
    data: &'a Arc<Vec<u8>>,
    /// Whose connection brought it.
    client: Option<SocketAddr>,
}

/// A relayed recipient given to its route's backend in this transaction
/// (joined at the route's first recipient): the answer, and the place of
/// the backend in `relays` when it accepted the recipient.
async fn relay_rcpt(
    svc: &Arc<Services>,
    relays: &mut Vec<Option<relay::Open>>,
    route: Vec<String>,
    env: &relay::Envelope,
    to: &str,
) -> Result<(String, Option<usize>), String> {
    let at = match relays
        .iter()
        .position(|o| o.as_ref().is_some_and(|o| o.route == route))
    {
        Some(at) => at,
        // Each route's backend holds a connection for the transaction: as
        // many as the recipients at most, whatever the backends refuse.
        None if relays.len() >= MAX_RECIPIENTS => {
            return Err("452 4.5.3 Too many servers for one message".to_owned());
        }
        None => {
            relays.push(Some(relay::open(svc, &route, env, to).await?));
            relays.len() - 1
        }
    };
    let Some(open) = relays.get_mut(at).and_then(Option::as_mut) else {
        return Err(format!(
            "451 4.3.0 <{to}> Temporary failure, try again later"
        ));
    };
    match open.rcpt(svc, to).await {
        Ok((answer, accepted)) => Ok((answer, accepted.then_some(at))),
        Err(answer) => {
            // Lost: recipients it took already get 451 after the data.
            relays[at] = None;
            Err(answer)
        }
    }
}

/// Every recipient's answer, in their order: local ones stored here, the
/// others sent to the backends that took them at RCPT.
async fn deliver_all(
    svc: &Arc<Services>,
    rcpts: Vec<Recipient>,
    message: &Message<'_>,
    relays: Vec<Option<relay::Open>>,
) -> Vec<String> {
    let mut answers = vec![String::new(); rcpts.len()];
    let mut routed: Vec<Vec<usize>> = vec![Vec::new(); relays.len()];
    for (i, r) in rcpts.iter().enumerate() {
        match &r.target {
            Target::Local(u) => {
                answers[i] = deliver_one(svc, u, &r.address, message).await;
            }
            Target::Relay(at) => {
                if let Some(ids) = routed.get_mut(*at) {
                    ids.push(i);
                }
            }
        }
    }
    for (open, ids) in relays.into_iter().zip(routed) {
        let to: Vec<String> = ids.iter().map(|&i| rcpts[i].address.clone()).collect();
        let got = match open {
            Some(open) if !to.is_empty() => open.data(svc, message.data, &to).await,
            _ => to.iter().map(|to| relay::lost(to)).collect(),
        };
        for (i, a) in ids.into_iter().zip(got) {
            answers[i] = a;
        }
    }
    answers
}

/// Reads the data to its end line; what followed it in the buffer.
async fn read_data(
    stream: &mut Box<dyn AsyncStream>,
    buf: &mut Vec<u8>,
    reader: &mut DataReader,
    data: &mut Vec<u8>,
    max: u64,
) -> std::io::Result<Vec<u8>> {
    let mut pending = std::mem::take(buf);
    loop {
        if let Some(used) = reader.push(&pending, data, max) {
            return Ok(pending.split_off(used));
        }
        // Past the limit the rest is only counted, to answer 552 at its
        // end; a client that never ends it is cut off at twice the limit.
        if reader.size > max.saturating_mul(2).max(1 << 20) {
            return Err(std::io::Error::other(
                "message data far beyond the size limit",
            ));
        }
        pending.clear();
        pending.resize(64 * 1024, 0);
        let n = tokio::time::timeout(IDLE, stream.read(&mut pending))
            .await
            .map_err(|_| std::io::Error::other("idle too long"))??;
        if n == 0 {
            return Err(std::io::Error::other("connection ended inside DATA"));
        }
        pending.truncate(n);
    }
}

enum Lookup {
    Found(User),
    Elsewhere(Vec<String>),
    Unknown,
    TempFail,
}

async fn look_up(svc: &Arc<Services>, address: &str) -> Lookup {
    let Some(db) = &svc.users else {
        return Lookup::TempFail;
    };
    let name = match address.rsplit_once('@') {
        Some((local, _)) if svc.lmtp.local_part_only => local,
        _ => address,
    };
    match db.find(name).await {
        Ok(Some(u)) => {
            let elsewhere = crate::proxy::route_of(
                &u.name,
                u.mailhost.as_deref(),
                &svc.hostname,
                &svc.proxy,
                &svc.relayed,
            );
            match elsewhere {
                Some(hosts) if !hosts.is_empty() => Lookup::Elsewhere(hosts),
                _ => Lookup::Found(u),
            }
        }
        Ok(None) => Lookup::Unknown,
        Err(e) => {
            tracing::error!(cause = %e, "LMTP: user database unavailable");
            Lookup::TempFail
        }
    }
}

/// Stores the message for one recipient: `Return-Path` and `Delivered-To`
/// first, as Dovecot's LMTP writes them; the answer line.
async fn deliver_one(
    svc: &Arc<Services>,
    user: &User,
    address: &str,
    message: &Message<'_>,
) -> String {
    let user = user.clone();
    let (sender, peer) = (message.sender, message.client);
    // The added lines, then the message, read as one without a copy.
    let head = format!("Return-Path: <{sender}>\nDelivered-To: {address}\n").into_bytes();
    let data = message.data.clone();
    let name = user.name.clone();
    let root = user.maildir.root().to_owned();
    let res = crate::creds::spawn_blocking_as(user.creds, move || {
        user.maildir.ensure()?;
        let mut message = std::io::Read::chain(&head[..], &data[..]);
        tern_maildir::deliver::deliver(&user.maildir, None, user.quota, &mut message)
    })
    .await;
    match res {
        Ok(Ok(path)) => {
            // Sessions of this process see it at once, not at their next
            // look at the disk.
            svc.folders.get(&root).changed.notify_waiters();
            tracing::info!(user = %name, ?peer, file = %path.display(), "LMTP delivered");
            format!("250 2.0.0 <{address}> Delivered")
        }
        Ok(Err(tern_maildir::MaildirError::OverQuota)) => {
            tracing::info!(user = %name, "LMTP: over quota");
            format!("552 5.2.2 <{address}> Mailbox is full")
        }
        Ok(Err(e)) => {
            tracing::error!(user = %name, cause = %e, "LMTP delivery failed");
            format!("451 4.3.0 <{address}> Temporary failure, try again later")
        }
        Err(e) => {
            tracing::error!(user = %name, cause = %e, "LMTP delivery task failed");
            format!("451 4.3.0 <{address}> Temporary failure, try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(pieces: &[&[u8]]) -> (Vec<u8>, Option<usize>) {
        let mut r = DataReader::new();
        let mut out = Vec::new();
        for p in pieces {
            if let Some(n) = r.push(p, &mut out, u64::MAX) {
                return (out, Some(n));
            }
        }
        (out, None)
    }

    #[test]
    fn data_is_unstuffed_turned_to_lf_and_ends_at_the_dot_line() {
        let (out, end) = read_all(&[b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"]);
        assert_eq!(out, b"Subject: x\n\n.dot\n");
        assert_eq!(end, Some(24));
        // Cut anywhere, the same.
        let whole = b"a\r\n.b\r\n\r\nc\rd\r\n.\r\n";
        for cut in 1..whole.len() {
            let (a, b) = whole.split_at(cut);
            let (out, end) = read_all(&[a, b]);
            assert_eq!(out, b"a\nb\n\nc\rd\n", "cut at {cut}");
            assert!(end.is_some(), "cut at {cut}");
        }
        // An empty message.
        assert_eq!(read_all(&[b".\r\n"]), (Vec::new(), Some(3)));
        // `.x` and `.\rx` at a line start are data, not the end.
        let (out, end) = read_all(&[b".\rx\r\n.\r\n"]);
        assert_eq!((out, end.is_some()), (b"\rx\n".to_vec(), true));
    }

    #[test]
    fn beyond_the_limit_bytes_are_counted_not_kept() {
        let mut r = DataReader::new();
        let mut out = Vec::new();
        assert!(r.push(b"0123456789\r\n.\r\n", &mut out, 4).is_some());
        assert_eq!(r.size, 11);
        assert!(out.len() <= 4);
    }

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse("LHLO mx.example.org"), Command::Lhlo);
        assert!(matches!(Command::parse("LHLO"), Command::Syntax(_)));
        assert_eq!(
            Command::parse("MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME"),
            Command::Mail {
                from: "a@b".into(),
                size: Some(100)
            }
        );
        assert_eq!(
            Command::parse("mail from:<>"),
            Command::Mail {
                from: String::new(),
                size: None
            }
        );
        assert_eq!(
            Command::parse("RCPT TO:<alice@example.org>"),
            Command::Rcpt("alice@example.org".into())
        );
        assert!(matches!(Command::parse("RCPT TO:<>"), Command::Syntax(_)));
        assert!(matches!(
            Command::parse("MAIL FROM:<a> SIZE=x"),
            Command::Syntax(_)
        ));
        assert_eq!(Command::parse("EHLO x"), Command::Helo);
        assert_eq!(Command::parse("BDAT 10"), Command::Unknown);
    }
}
