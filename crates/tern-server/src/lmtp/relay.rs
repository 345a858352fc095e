//! Relaying a delivery to the server that holds the account: a recipient
//! whose `mailhost` routes elsewhere is handed to that server's LMTP
//! listener (`proxy.lmtp_port`), so the MTA can give any host of a pool
//! any message, and each is written by the host that serves the user
//! (whose IDLE sessions then see it at once; inotify does not see another
//! host's writes over NFS).
//!
//! The backend takes part in the transaction as it is read, as Dovecot's
//! LMTP proxy does: at the first RCPT of a route the relay connects (the
//! route's backends in order), sends the envelope (MAIL, with the MTA's
//! SIZE), and each recipient's RCPT goes to the backend at once, so its
//! answer (a 550 of the backend's directory too) is the MTA's answer at
//! RCPT; after the data only DATA, the message and the answers are left,
//! one round trip more than a local delivery. One connection per route per
//! message carries all of its recipients. A backend that refuses, does not
//! greet, or does not answer within `proxy.connect_timeout_ms` before DATA
//! is marked down for `proxy.down_secs` (for LMTP only: its IMAP may still
//! be up) and the next is tried. Once the data has been sent nothing is
//! retried elsewhere: an answer the backend gave stands, a recipient whose
//! answer did not come gets `451`, and the MTA tries again, so a message
//! is never stored twice by this relay.
//!
//! A connection whose message went through whole is kept for the next
//! message to the same backend for `proxy.lmtp_keep_secs` ([`Kept`], at most
//! [`MAX_KEPT`] of them), as Postfix's connection cache does: the next
//! delivery then starts at MAIL, without the connect, greeting, LHLO and
//! XCLIENT round trips. A kept connection the backend has closed meanwhile
//! is simply replaced by a new one (the backend is not marked down for it).
//! It serves only messages with the same hops left and from the same MTA
//! address as the one XCLIENT told the backend (the MTA's port the backend
//! logs is then the first message's).
//!
//! Loops (two servers whose directories send a user to each other) end
//! after [`MAX_HOPS`]: each relay tells the next, by `XCLIENT TTL=` (as
//! Dovecot's LMTP proxy does, to servers that offer XCLIENT to it), how
//! many hops are left, and a server with none left answers `451 4.4.6`.
//!
//! LMTP carries mail in the clear: a backend outside
//! `proxy.cleartext_networks` is not relayed to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::imap::Services;

/// Hops a delivery may take between relays (Dovecot's `proxy_ttl` is 5).
pub const MAX_HOPS: u32 = 5;

/// How long the backend may take over the data and its answers (RFC 5321
/// §4.5.3.2.6 gives 10 minutes for the answer after the data).
const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest answer line taken from a backend.
const MAX_ANSWER: u64 = 4096;

/// Most relay connections kept at once (all backends together).
pub const MAX_KEPT: usize = 32;

/// A connection to a backend's LMTP past its greeting (and XCLIENT): what
/// XCLIENT told the backend, for the whole connection, and what LHLO
/// offered.
#[derive(Debug)]
struct Conn {
    host: String,
    /// The hops left and the MTA's address XCLIENT gave: a kept connection
    /// is reused only for a message with the same ones.
    ttl: u32,
    client: Option<std::net::IpAddr>,
    offers: Offers,
    r: BufReader<TcpStream>,
}

impl Conn {
    /// Whether it was set up for a message of `env` to `host`.
    fn serves(&self, host: &str, env: &Envelope) -> bool {
        self.host == host && self.ttl == env.ttl && self.client == env.client.map(|c| c.ip())
    }
}

/// The extensions of LHLO's answer the relay uses.
#[derive(Debug, Clone, Copy, Default)]
struct Offers {
    size: bool,
    eight_bit: bool,
}

/// Relay connections kept between messages (each with when it was kept),
/// newest last.
#[derive(Debug, Default)]
pub struct Kept {
    idle: std::sync::Mutex<Vec<(Instant, Conn)>>,
    /// Whether a task is closing the connections kept past their time.
    sweeping: std::sync::atomic::AtomicBool,
}

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Conn)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection to `host` for a message of `env`, if one is
    /// younger than `keep`.
    fn take(&self, host: &str, env: &Envelope, keep: Duration) -> Option<Conn> {
        let mut idle = self.lock();
        idle.retain(|(since, _)| since.elapsed() < keep);
        let at = idle.iter().rposition(|(_, c)| c.serves(host, env))?;
        Some(idle.remove(at).1)
    }

    /// Keeps `k` for the next message (the oldest is closed past
    /// [`MAX_KEPT`]), and starts the sweep that closes it after `keep` if
    /// none runs; with `keep` zero, `k` is closed.
    fn put(self: &Arc<Self>, c: Conn, keep: Duration) {
        if keep.is_zero() {
            return;
        }
        {
            let mut idle = self.lock();
            idle.retain(|(since, _)| since.elapsed() < keep);
            if idle.len() >= MAX_KEPT {
                idle.remove(0);
            }
            idle.push((Instant::now(), c));
        }
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let kept = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(keep).await;
                let mut idle = kept.lock();
                idle.retain(|(since, _)| since.elapsed() < keep);
                if idle.is_empty() {
                    // Cleared under the lock: a put after this starts
                    // another sweep.
                    kept.sweeping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
}

/// The envelope of the transaction a relay joins.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The reverse path (empty for a bounce).
    pub sender: String,
    /// The MTA's `SIZE=`, passed on.
    pub size: Option<u64>,
    /// Whose connection brought it (for the backend's logs).
    pub client: Option<SocketAddr>,
    /// Hops left after this one ([`MAX_HOPS`] at the first relay).
    pub ttl: u32,
}

/// A backend taking part in the transaction being read: its connection,
/// after MAIL was accepted.
#[derive(Debug)]
pub struct Open {
    /// The route it was chosen for (the recipients of one route share it).
    pub route: Vec<String>,
    conn: Conn,
}

/// Why a backend did not take the delivery before its data was sent.
enum Failed {
    /// Try the next backend (and mark this one down).
    Down(String),
    /// The backend answered MAIL with a failure: every recipient gets it.
    Refused(String),
}

/// The host part of `host[:port]` (a `mailhost` port is the IMAP one) at
/// `port`.
fn at_port(host: &str, port: u16) -> String {
    format!("{}:{port}", crate::proxy::split_port(host).0)
}

/// One LMTP reply of the backend: its code and its last line, whole.
async fn answer(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String)> {
    let (code, mut lines) = answer_lines(r).await?;
    let last = lines.pop().unwrap_or_default();
    Ok((code, format!("{code} {last}")))
}

/// The reply lines of one multi-line answer (for LHLO's extensions).
async fn answer_lines(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<String>)> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        let mut line = String::new();
        let n = (&mut *r).take(MAX_ANSWER).read_line(&mut line).await?;
        if n == 0 {
            return Err(std::io::Error::other("the backend closed the connection"));
        }
        let l = line.trim_end().to_owned();
        let Some(code) = l.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
            return Err(std::io::Error::other(format!("not an LMTP reply: {l:?}")));
        };
        let last = l.as_bytes().get(3) != Some(&b'-');
        lines.push(l.get(4..).unwrap_or("").to_owned());
        if last {
            return Ok((code, lines));
        }
    }
    Err(std::io::Error::other(
        "the backend sent too many reply lines",
    ))
}

/// The greeting (220), then LHLO: the extensions offered.
async fn greet(r: &mut BufReader<TcpStream>, name: &str) -> std::io::Result<Vec<String>> {
    let (code, text) = answer(r).await?;
    if code != 220 {
        return Err(std::io::Error::other(format!("greeting {text:?}")));
    }
    send(r, &format!("LHLO {name}")).await?;
    let (code, lines) = answer_lines(r).await?;
    if code != 250 {
        return Err(std::io::Error::other(format!("LHLO answered {code}")));
    }
    Ok(lines)
}

async fn send(r: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<()> {
    r.get_mut().write_all(line.as_bytes()).await?;
    r.get_mut().write_all(b"\r\n").await
}

/// `piece` of a stored message in its wire form, appended to `out`: LF as
/// CRLF, a dot that starts a line doubled (RFC 5321 §4.5.2); `at_start`
/// carries whether the next byte starts a line from piece to piece.
pub fn stuff(piece: &[u8], at_start: &mut bool, out: &mut Vec<u8>) {
    for &b in piece {
        if *at_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
        *at_start = b == b'\n';
    }
}

/// The end of the wire form: a last line end if the message lacks one,
/// then the `.` line.
pub fn stuff_end(at_start: bool, out: &mut Vec<u8>) {
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The message on the wire ([`stuff`]), written in 64 KiB pieces.
async fn send_data(w: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(128 * 1024 + 8);
    let mut at_start = true;
    for piece in data.chunks(64 * 1024) {
        stuff(piece, &mut at_start, &mut out);
        w.write_all(&out).await?;
        out.clear();
    }
    stuff_end(at_start, &mut out);
    w.write_all(&out).await?;
    w.flush().await
}

/// Connects to `host`'s LMTP and gives it the envelope up to MAIL; the
/// connection and the greeting within `alive_within` (a host that vanished
/// gives neither), the rest within the caller's time.
async fn connect(
    svc: &Services,
    host: &str,
    env: &Envelope,
    alive_within: Duration,
) -> Result<Conn, Failed> {
    let down = |e: std::io::Error| Failed::Down(e.to_string());
    let late = |_| Failed::Down("did not answer in time".to_owned());
    let alive_by = tokio::time::Instant::now() + alive_within;
    let addr = at_port(host, svc.proxy.lmtp_port);
    let tcp = tokio::time::timeout_at(alive_by, TcpStream::connect(&addr))
        .await
        .map_err(late)?
        .map_err(down)?;
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(down)?;
    if !svc.proxy.cleartext_allowed(peer.ip()) {
        return Err(Failed::Down(format!(
            "{peer} is not in proxy.cleartext_networks (LMTP is relayed in the clear)"
        )));
    }
    let mut r = BufReader::new(tcp);
    let mut extensions = tokio::time::timeout_at(alive_by, greet(&mut r, &svc.hostname))
        .await
        .map_err(late)?
        .map_err(down)?;
    let has = |ext: &[String], word: &str| {
        ext.iter().any(|l| {
            l.split(' ')
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(word))
        })
    };
    if has(&extensions, "XCLIENT") {
        // The hops left, and whose connection this is; the backend greets
        // again and wants LHLO again (as after Postfix's XCLIENT).
        let mut x = format!("XCLIENT TTL={}", env.ttl);
        if let Some(c) = env.client {
            x.push_str(&format!(" ADDR={} PORT={}", c.ip(), c.port()));
        }
        send(&mut r, &x).await.map_err(down)?;
        extensions = greet(&mut r, &svc.hostname).await.map_err(down)?;
    }
    let offers = Offers {
        size: has(&extensions, "SIZE"),
        eight_bit: has(&extensions, "8BITMIME"),
    };
    let mut conn = Conn {
        host: host.to_owned(),
        ttl: env.ttl,
        client: env.client.map(|c| c.ip()),
        offers,
        r,
    };
    mail(&mut conn, env).await?;
    Ok(conn)
}

/// MAIL for the envelope, on a connection ready for a transaction.
async fn mail(conn: &mut Conn, env: &Envelope) -> Result<(), Failed> {
    let (r, offers) = (&mut conn.r, conn.offers);
    let down = |e: std::io::Error| Failed::Down(e.to_string());
    let mut mail = format!("MAIL FROM:<{}>", env.sender);
    if let (Some(n), true) = (env.size, offers.size) {
        mail.push_str(&format!(" SIZE={n}"));
    }
    if offers.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    send(r, &mail).await.map_err(down)?;
    let (code, text) = answer(r).await.map_err(down)?;
    match code {
        250 => Ok(()),
        421 => Err(Failed::Down(text)),
        _ => Err(Failed::Refused(text)),
    }
}

/// Whether a kept connection has nothing waiting to be read: no byte in
/// its buffer, none on the socket, and no end of stream.
fn quiet(r: &BufReader<TcpStream>) -> bool {
    let mut probe = [0u8; 1];
    r.buffer().is_empty()
        && matches!(r.get_ref().try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A kept connection to `host` that takes the envelope, if there is one:
/// one the backend closed meanwhile (or that fails at MAIL in any way but
/// a refusal) is dropped, and the caller connects anew.
async fn reuse(
    svc: &Services,
    host: &str,
    env: &Envelope,
    within: Duration,
) -> Option<Result<Conn, Failed>> {
    while let Some(mut k) = svc.lmtp.kept.take(host, env, svc.proxy.lmtp_keep) {
        // A backend says nothing between transactions: anything it sent
        // since (a line no command asked for, its close) would be read as
        // the answer to the next command, and every answer after it would
        // be one off (a DATA refused would pass as delivered).
        if !quiet(&k.r) {
            tracing::debug!(backend = %host, "LMTP relay: a kept connection was not quiet; dropped");
            continue;
        }
        match tokio::time::timeout(within, mail(&mut k, env)).await {
            Ok(Ok(())) => return Some(Ok(k)),
            Ok(Err(Failed::Refused(text))) => return Some(Err(Failed::Refused(text))),
            Ok(Err(Failed::Down(why))) => {
                tracing::debug!(backend = %host, cause = %why, "LMTP relay: a kept connection was closed; dropped");
            }
            Err(_) => {
                tracing::debug!(backend = %host, "LMTP relay: a kept connection did not answer; dropped");
            }
        }
    }
    None
}

/// Joins the transaction at the first of `route`'s backends that takes
/// its envelope; the answer for the recipient `to` when none does.
pub async fn open(
    svc: &Services,
    route: &[String],
    env: &Envelope,
    to: &str,
) -> Result<Open, String> {
    let health = &svc.lmtp.health;
    let settings = &svc.proxy;
    let deadline = Instant::now() + settings.connect_timeout;
    for (i, host) in route.iter().enumerate() {
        if health.is_down(host, settings.down_for) {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = health.share(left, route[i + 1..].iter(), settings.down_for);
        let got = tokio::time::timeout(left, async {
            match reuse(svc, host, env, share).await {
                Some(got) => got,
                None => connect(svc, host, env, share).await,
            }
        })
        .await;
        match got {
            Ok(Ok(conn)) => {
                return Ok(Open {
                    route: route.to_vec(),
                    conn,
                })
            }
            Ok(Err(Failed::Refused(text))) => {
                tracing::warn!(backend = %host, answer = %text, "LMTP relay: MAIL refused");
                return Err(relayed_answer(to, &text));
            }
            Ok(Err(Failed::Down(why))) => {
                tracing::warn!(backend = %host, cause = %why, "LMTP relay: backend failed; marked down");
                health.mark_down(host);
            }
            Err(_) => {
                tracing::warn!(backend = %host, "LMTP relay: backend did not answer in time; marked down");
                health.mark_down(host);
            }
        }
    }
    Err(format!(
        "451 4.4.1 <{to}> The server holding this account is unavailable, try again later"
    ))
}

impl Open {
    /// Gives the backend the recipient `to`: its answer, passed on as the
    /// answer here, and whether it was accepted. A backend that fails here
    /// is lost to the transaction (`Err`: the answer for `to`).
    pub async fn rcpt(&mut self, svc: &Services, to: &str) -> Result<(String, bool), String> {
        let got = tokio::time::timeout(svc.proxy.connect_timeout, async {
            send(&mut self.conn.r, &format!("RCPT TO:<{to}>")).await?;
            answer(&mut self.conn.r).await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer to RCPT in time")));
        match got {
            Ok((code, text)) => Ok((relayed_answer(to, &text), code / 100 == 2)),
            Err(e) => {
                tracing::warn!(backend = %self.conn.host, cause = %e, "LMTP relay: lost at RCPT; marked down");
                svc.lmtp.health.mark_down(&self.conn.host);
                Err(lost(to))
            }
        }
    }

    /// Sends the message for the recipients the backend accepted
    /// (`recipients`, in RCPT order): one answer each, in that order.
    pub async fn data(mut self, svc: &Services, data: &[u8], recipients: &[String]) -> Vec<String> {
        let host = self.conn.host.clone();
        let r = &mut self.conn.r;
        // The backend's answers after the data, as far as they came: each
        // stands, whatever happens after it (a recipient the backend
        // answered 250 for is delivered; telling the MTA 451 would make it
        // deliver again).
        let mut got: Vec<String> = Vec::with_capacity(recipients.len());
        let after = tokio::time::timeout(DATA_TIMEOUT, async {
            send(r, "DATA").await?;
            let (code, text) = answer(r).await?;
            if code != 354 {
                return Ok(Err(text));
            }
            send_data(r.get_mut(), data).await?;
            for _ in recipients {
                got.push(answer(r).await?.1);
            }
            Ok::<_, std::io::Error>(Ok(()))
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer to the data in time")));
        let mut answers: Vec<String> = recipients
            .iter()
            .zip(&got)
            .map(|(to, text)| relayed_answer(to, text))
            .collect();
        match after {
            Ok(Ok(())) => {
                tracing::info!(backend = %host, recipients = recipients.len(), "LMTP relayed");
                // The transaction is over and the connection ready for
                // the next one.
                svc.lmtp.kept.put(self.conn, svc.proxy.lmtp_keep);
                return answers;
            }
            Ok(Err(text)) => {
                tracing::warn!(backend = %host, answer = %text, "LMTP relay: DATA refused");
                answers = recipients
                    .iter()
                    .map(|to| relayed_answer(to, &text))
                    .collect();
            }
            Err(e) => {
                // Not retried elsewhere: the backend may have stored it.
                tracing::warn!(backend = %host, cause = %e, answered = got.len(), "LMTP relay: lost during the data");
                for to in &recipients[answers.len()..] {
                    answers.push(lost(to));
                }
            }
        }
        answers
    }
}

/// The answer for `to` when its backend's connection was lost after it
/// took the recipient: temporary, so the MTA tries again.
pub fn lost(to: &str) -> String {
    format!("451 4.4.2 <{to}> Connection to the server holding this account lost, try again later")
}

/// A backend's answer for `to`, passed on as the answer here: its code
/// and text (a reply that is not a delivery status becomes `451`).
fn relayed_answer(to: &str, text: &str) -> String {
    let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..600).contains(&c) && text.is_char_boundary(3) => {
            let rest = text[3..].trim_start_matches(['-', ' ']);
            format!("{c} {rest}")
        }
        _ => format!("451 4.3.0 <{to}> The server holding this account answered oddly"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailhost_port_is_replaced_by_the_lmtp_port() {
        assert_eq!(at_port("mail2", 24), "mail2:24");
        assert_eq!(at_port("mail2:143", 24), "mail2:24");
        assert_eq!(at_port("10.0.0.2:1143", 2424), "10.0.0.2:2424");
        assert_eq!(at_port("[::1]:143", 24), "[::1]:24");
    }

    #[test]
    fn answers_pass_on_and_odd_ones_become_temporary() {
        assert_eq!(
            relayed_answer("a@b", "250 2.0.0 <a@b> Delivered"),
            "250 2.0.0 <a@b> Delivered"
        );
        assert_eq!(relayed_answer("a@b", "552-5.2.2 full"), "552 5.2.2 full");
        assert!(relayed_answer("a@b", "hello").starts_with("451 4.3.0"));
        assert!(relayed_answer("a@b", "999 x").starts_with("451 4.3.0"));
    }

    #[tokio::test]
    async fn the_data_is_stuffed_with_crlf_and_ends_with_the_dot_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut w = TcpStream::connect(at).await.unwrap();
        send_data(&mut w, b"Subject: x\n\n.dot\nc\rd\nlast")
            .await
            .unwrap();
        drop(w);
        let got = reader.await.unwrap();
        assert_eq!(got, b"Subject: x\r\n\r\n..dot\r\nc\rd\r\nlast\r\n.\r\n");
        // What the reader here makes of it is the message again.
        let mut r = super::super::DataReader::new();
        let mut out = Vec::new();
        assert_eq!(r.push(&got, &mut out, u64::MAX), Some(got.len()));
        assert_eq!(out, b"Subject: x\n\n.dot\nc\rd\nlast\n");
    }
}
