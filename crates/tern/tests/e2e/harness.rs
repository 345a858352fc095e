//! Test harness: starts the real `tern` binary on ephemeral ports in its own
//! temporary directory and speaks IMAP to it over TCP or TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const ALICE_PW: &str = "secret";

/// A running server and its directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    /// PROXY protocol listeners, by protocol (`imap`, `imaps`, ...).
    pub haproxy: std::collections::HashMap<String, SocketAddr>,
    /// How many PROXY protocol listeners the configuration has.
    expect_haproxy: usize,
    /// The LMTP listener, when the configuration has an `[lmtp]` table.
    pub lmtp: Option<SocketAddr>,
    expect_lmtp: bool,
    /// A program the binary runs under (strace), with its arguments.
    wrapper: Vec<String>,
    /// The log filter, when the log goes to `server.log` in the directory.
    log: Option<String>,
}

/// Builder for a server.
/// A step run on the server's directory before it starts.
type BeforeStart = Box<dyn FnOnce(&Path)>;

pub struct ServerBuilder {
    wrapper: Vec<String>,
    log: Option<String>,
    extra_config: String,
    auth_extra: String,
    imap_extra: String,
    pop3_extra: String,
    mail_extra: String,
    tls_extra: String,
    users_extra: String,
    before_start: Option<BeforeStart>,
}

pub fn server() -> ServerBuilder {
    ServerBuilder {
        wrapper: Vec::new(),
        log: None,
        extra_config: String::new(),
        auth_extra: String::new(),
        imap_extra: String::new(),
        pop3_extra: String::new(),
        mail_extra: String::new(),
        tls_extra: String::new(),
        users_extra: String::new(),
        before_start: None,
    }
}

impl ServerBuilder {
    /// Writes the server's log, at this filter, to `server.log` (read it
    /// with [`Server::log`]).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = Some(filter.to_owned());
        self
    }

    /// Runs the binary under another program (`strace -f -o FILE`).
    pub fn under(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds raw TOML at the end of the config (e.g. a `[limits]` table).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }

    /// Adds keys to the `[tls]` table.
    pub fn tls(mut self, toml: &str) -> Self {
        self.tls_extra.push_str(toml);
        self.tls_extra.push('\n');
        self
    }

    /// Adds keys to the `[auth]` table.
    pub fn auth(mut self, toml: &str) -> Self {
        self.auth_extra.push_str(toml);
        self.auth_extra.push('\n');
        self
    }

    /// Adds keys to the `[imap]` table.
    pub fn imap(mut self, toml: &str) -> Self {
        self.imap_extra.push_str(toml);
        self.imap_extra.push('\n');
        self
    }

    /// Adds keys to the `[pop3]` table.
    pub fn pop3(mut self, toml: &str) -> Self {
        self.pop3_extra.push_str(toml);
        self.pop3_extra.push('\n');
        self
    }

    /// Adds keys to the `[mail]` table.
    pub fn mail(mut self, toml: &str) -> Self {
        self.mail_extra.push_str(toml);
        self.mail_extra.push('\n');
        self
    }

    /// Runs `f` on the server's directory once its files are written, just
    /// before the server starts (to set owners and modes, say).
    pub fn before_start(mut self, f: impl FnOnce(&Path) + 'static) -> Self {
        self.before_start = Some(Box::new(f));
        self
    }

    /// Adds lines to the passwd-file.
    pub fn users(mut self, lines: &str) -> Self {
        self.users_extra.push_str(lines);
        self.users_extra.push('\n');
        self
    }

    pub fn start(self) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        if !p.join("cert.pem").exists() {
            tern_server::tls::generate_self_signed(
                &["localhost".into()],
                &p.join("cert.pem"),
                &p.join("key.pem"),
            )
            .unwrap();
        }
        std::fs::write(
            p.join("users"),
            format!("alice:{{PLAIN}}{ALICE_PW}::::::\nbob:{{PLAIN}}bobpw::::::\ncarol@example.org:{{PLAIN}}c::::::\n{}", self.users_extra),
        )
        .unwrap();
        let cfg = format!(
            "hostname = \"test.example\"\n[imap]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\n{}\
             [pop3]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\n{}\
             [tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{}[auth]\npasswd_file = \"users\"\nfailure_delay_ms = 1\n{}\
             [mail]\n{}allow_root = true\n{}{}",
            self.imap_extra,
            self.pop3_extra,
            self.tls_extra,
            // Tests fail logins on purpose, many from one address: no
            // address blocking unless the test is about it.
            if self.auth_extra.contains("block_after") {
                self.auth_extra.clone()
            } else {
                format!("block_after = 0\n{}", self.auth_extra)
            },
            // A test that sets its own Maildir template replaces this one.
            if self.mail_extra.contains("maildir =") {
                ""
            } else {
                "maildir = \"mail/{user}/Maildir\"\n"
            },
            self.mail_extra,
            self.extra_config
        );
        std::fs::write(p.join("tern.toml"), &cfg).unwrap();
        if let Some(f) = self.before_start {
            f(p);
        }
        let mut s = Server {
            dir,
            child: None,
            imap: "127.0.0.1:1".parse().unwrap(),
            imaps: "127.0.0.1:1".parse().unwrap(),
            pop3: "127.0.0.1:1".parse().unwrap(),
            pop3s: "127.0.0.1:1".parse().unwrap(),
            haproxy: Default::default(),
            expect_haproxy: cfg.matches("haproxy_listen = [\"").count()
                + cfg.matches("haproxy_tls_listen = [\"").count(),
            lmtp: None,
            expect_lmtp: cfg.contains("[lmtp]"),
            wrapper: self.wrapper,
            log: self.log,
        };
        s.spawn();
        s
    }
}

impl Server {
    fn spawn(&mut self) {
        let mut cmd = match self.wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(env!("CARGO_BIN_EXE_tern"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tern")),
        };
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(self.dir.path().join("tern.toml"))
            .env("RUST_LOG", self.log.as_deref().unwrap_or("warn"))
            .stdout(Stdio::piped())
            .stderr(match &self.log {
                Some(_) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.path().join("server.log"))
                        .unwrap(),
                ),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn tern");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut imap, mut imaps, mut pop3, mut pop3s) = (None, None, None, None);
        self.haproxy.clear();
        self.lmtp = None;
        while imap.is_none()
            || imaps.is_none()
            || pop3.is_none()
            || pop3s.is_none()
            || self.haproxy.len() < self.expect_haproxy
            || (self.expect_lmtp && self.lmtp.is_none())
        {
            let line = lines.next().expect("tern exited before listening").unwrap();
            let Some(rest) = line.strip_prefix("tern: listening ") else {
                continue;
            };
            let (proto, addr) = rest.split_once(' ').unwrap();
            if proto == "lmtp-unix" {
                continue;
            }
            let addr: SocketAddr = addr.parse().unwrap();
            if let Some(p) = proto.strip_suffix("+haproxy") {
                self.haproxy.insert(p.to_owned(), addr);
                continue;
            }
            match proto {
                "imap" => imap = Some(addr),
                "imaps" => imaps = Some(addr),
                "pop3" => pop3 = Some(addr),
                "pop3s" => pop3s = Some(addr),
                "lmtp" => self.lmtp = Some(addr),
                other => panic!("unknown listener {other}"),
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.imap = imap.unwrap();
        self.imaps = imaps.unwrap();
        self.pop3 = pop3.unwrap();
        self.pop3s = pop3s.unwrap();
        self.child = Some(child);
    }

    /// The server process's `/proc/PID/status`.
    pub fn status(&self) -> String {
        let pid = self.child.as_ref().unwrap().id();
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap()
    }

    /// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`...).
    fn status_kib(&self, field: &str) -> u64 {
        self.status()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// The server's resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// What the server logged so far (with [`ServerBuilder::log`]).
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(std::process::Child::id).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user).join("Maildir")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A cleartext connection, greeting read.
    pub fn connect(&self) -> Client {
        Client::plain(self.imap)
    }

    /// A logged-in cleartext connection.
    pub fn login(&self, user: &str, pw: &str) -> Client {
        let mut c = self.connect();
        let r = c.cmd(&format!("LOGIN {user} {pw}"));
        assert!(r.ok(), "login failed: {r:?}");
        c
    }

    pub fn alice(&self) -> Client {
        self.login("alice", ALICE_PW)
    }

    /// Implicit-TLS connection.
    pub fn connect_tls(&self) -> Client {
        Client::tls(self.imaps)
    }

    /// Sends SIGKILL and waits.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Under a wrapper the server is its child: kill it first, or
            // it outlives the test holding the test's output pipe.
            if !self.wrapper.is_empty() {
                let children = format!("/proc/{0}/task/{0}/children", c.id());
                for pid in std::fs::read_to_string(children)
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    if let Ok(pid) = pid.parse() {
                        unsafe_free_kill(pid, libc::SIGKILL);
                    }
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        unsafe_free_kill(c.id(), libc::SIGTERM);
        c.wait().unwrap()
    }

    /// Starts the server again on the same directory (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

/// `kill(2)` through the `kill` command, keeping the tests free of unsafe code.
fn unsafe_free_kill(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A simple blocking IMAP client.
pub struct Client {
    stream: BufReader<Box<dyn Stream>>,
    pub tag: u32,
    pub greeting: String,
}

/// The lines of a response, the last one tagged.
#[derive(Debug, Clone)]
pub struct Resp {
    pub lines: Vec<String>,
    /// Raw bytes of everything received (literals included).
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn tagged(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
    fn status(&self) -> &str {
        self.tagged().split(' ').nth(1).unwrap_or("")
    }
    pub fn ok(&self) -> bool {
        self.status() == "OK"
    }
    pub fn no(&self) -> bool {
        self.status() == "NO"
    }
    pub fn bad(&self) -> bool {
        self.status() == "BAD"
    }
    /// Untagged lines starting with `* <prefix>`.
    pub fn untagged(&self, prefix: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("* "))
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
    pub fn has(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_wrap(tcp: TcpStream) -> Box<dyn Stream> {
    tern_server::tls::install_provider();
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    Box::new(rustls::StreamOwned::new(conn, tcp))
}

impl Client {
    fn from_stream(s: Box<dyn Stream>) -> Client {
        let mut c = Client {
            stream: BufReader::new(s),
            tag: 0,
            greeting: String::new(),
        };
        c.greeting = c.read_line();
        c
    }

    pub fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::from_stream(Box::new(tcp))
    }

    /// Continues `tcp` (on which something was already sent) over TLS.
    pub fn tls_over(tcp: TcpStream) -> Client {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::from_stream(tls_wrap(tcp))
    }

    /// Continues `tcp` (on which something was already sent) in the clear.
    pub fn plain_over(tcp: TcpStream) -> Client {
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::from_stream(Box::new(tcp))
    }

    pub fn tls(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client::from_stream(tls_wrap(tcp))
    }

    /// Reads one line (without CRLF); literals are inlined as `{n}` markers
    /// followed by their text on the same logical line.
    pub fn read_line(&mut self) -> String {
        let mut raw = Vec::new();
        self.read_logical(&mut raw)
    }

    fn read_logical(&mut self, raw: &mut Vec<u8>) -> String {
        let mut line = Vec::new();
        loop {
            let mut part = Vec::new();
            match self.stream.read_until(b'\n', &mut part) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!(
                    "read failed (timeout?): {e}; partial line {:?}",
                    String::from_utf8_lossy(&line)
                ),
            }
            raw.extend_from_slice(&part);
            line.extend_from_slice(&part);
            // A literal announcement at the end: read it and continue.
            if let Some((ann, _)) = tern_imap_proto::framer::literal_at_end(&part) {
                let mut buf = vec![0u8; ann.len as usize];
                self.stream.read_exact(&mut buf).unwrap();
                raw.extend_from_slice(&buf);
                line.extend_from_slice(&buf);
                continue;
            }
            break;
        }
        let s = String::from_utf8_lossy(&line).into_owned();
        s.strip_suffix("\r\n").unwrap_or(&s).to_owned()
    }

    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.stream.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Reads until the line tagged `tag`.
    pub fn read_until_tag(&mut self, tag: &str) -> Resp {
        match self.try_read_until_tag(tag) {
            Some(r) => r,
            None => panic!("connection closed while waiting for {tag}"),
        }
    }

    /// Reads until the line tagged `tag`, or None when the server closes
    /// the connection first.
    fn try_read_until_tag(&mut self, tag: &str) -> Option<Resp> {
        let mut lines = Vec::new();
        let mut raw = Vec::new();
        loop {
            let before = raw.len();
            let l = self.read_logical(&mut raw);
            if raw.len() == before {
                return None;
            }
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return Some(Resp { lines, raw });
            }
            assert!(lines.len() <= 1_000_000, "no tagged response");
        }
    }

    /// Sends a command and reads the response.
    pub fn cmd(&mut self, text: &str) -> Resp {
        let tag = self.next_tag();
        self.send(format!("{tag} {text}\r\n").as_bytes());
        self.read_until_tag(&tag)
    }

    /// Sends a command and reads the response, or None when the server
    /// closes the connection before the tagged line (an oracle that
    /// disconnects on bad input).
    pub fn try_cmd(&mut self, text: &str) -> Option<Resp> {
        let tag = self.next_tag();
        let s = self.stream.get_mut();
        if s.write_all(format!("{tag} {text}\r\n").as_bytes()).is_err() || s.flush().is_err() {
            return None;
        }
        self.try_read_until_tag(&tag)
    }

    /// APPENDs a message with a synchronising literal.
    pub fn append(&mut self, mailbox: &str, flags: &str, msg: &[u8]) -> Resp {
        let tag = self.next_tag();
        self.send(format!("{tag} APPEND {mailbox} {flags} {{{}}}\r\n", msg.len()).as_bytes());
        let cont = self.read_line();
        assert!(cont.starts_with('+'), "expected continuation, got {cont}");
        self.send(msg);
        self.send(b"\r\n");
        self.read_until_tag(&tag)
    }

    /// True if the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = Vec::new();
        matches!(self.stream.read_until(b'\n', &mut buf), Ok(0) | Err(_)) && buf.is_empty()
    }

    /// Reads everything until the server closes the connection (or the
    /// read times out): the raw bytes, and whether it was closed.
    pub fn read_to_close(&mut self) -> (Vec<u8>, bool) {
        let mut all = Vec::new();
        let closed = self.stream.read_to_end(&mut all).is_ok();
        (all, closed)
    }
}

impl Client {
    /// Connects with TLS and completes the handshake first: the client and
    /// the connection's `tls-exporter` channel binding (RFC 9266), computed
    /// on the client's side.
    pub fn tls_with_exporter(addr: SocketAddr) -> (Client, Vec<u8>) {
        tern_server::tls::install_provider();
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let cfg = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let exporter = conn
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(b""))
            .unwrap()
            .to_vec();
        let c = Client::from_stream(Box::new(rustls::StreamOwned::new(conn, tcp)));
        (c, exporter)
    }

    /// Connects in the clear, runs STARTTLS, and continues over TLS.
    pub fn starttls_from_addr(addr: SocketAddr) -> (String, Client) {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = BufReader::new(tcp.try_clone().unwrap());
        let mut greeting = String::new();
        reader.read_line(&mut greeting).unwrap();
        let mut w = tcp.try_clone().unwrap();
        w.write_all(b"s1 CAPABILITY\r\n").unwrap();
        let mut caps = String::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            caps.push_str(&l);
            if l.starts_with("s1 ") {
                break;
            }
        }
        w.write_all(b"s2 STARTTLS\r\n").unwrap();
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        assert!(l.starts_with("s2 OK"), "{l}");
        let c = Client {
            stream: BufReader::new(tls_wrap(tcp)),
            tag: 10,
            greeting,
        };
        (caps, c)
    }
}

/// A message with CRLF line ends.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\nDate: Wed, 17 Jul 1996 02:23:25 -0700\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n")
        .into_bytes()
}

/// Extracts the number after `key` in a line (`UIDNEXT 5` → 5).
pub fn number_after(line: &str, key: &str) -> Option<u64> {
    let i = line.find(key)? + key.len();
    line[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A simple blocking POP3 client.
pub struct Pop {
    stream: BufReader<Box<dyn Stream>>,
    pub greeting: String,
}

impl Pop {
    fn from_stream(s: Box<dyn Stream>) -> Pop {
        let mut p = Pop {
            stream: BufReader::new(s),
            greeting: String::new(),
        };
        p.greeting = p.line();
        p
    }

    pub fn plain(addr: SocketAddr) -> Pop {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Pop::from_stream(Box::new(tcp))
    }

    pub fn tls(addr: SocketAddr) -> Pop {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Pop::from_stream(tls_wrap(tcp))
    }

    /// Connects in the clear and runs STLS; returns the CAPA before it.
    pub fn stls(addr: SocketAddr) -> (Vec<String>, Pop) {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut p = Pop::from_stream(Box::new(tcp.try_clone().unwrap()));
        let (status, caps) = p.multi("CAPA");
        assert!(status.starts_with("+OK"), "{status}");
        let caps: Vec<String> = String::from_utf8(caps)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let r = p.cmd("STLS");
        assert!(r.starts_with("+OK"), "{r}");
        let p = Pop {
            stream: BufReader::new(tls_wrap(tcp)),
            greeting: p.greeting,
        };
        (caps, p)
    }

    /// Reads one line without CRLF; empty at end of stream.
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.stream.read_until(b'\n', &mut buf).unwrap();
        let s = String::from_utf8_lossy(&buf).into_owned();
        s.strip_suffix("\r\n").unwrap_or(&s).to_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.stream.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// A command with a one-line answer.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Reads a multi-line body up to the "." line: the raw bytes between,
    /// dot-stuffing undone, CRLF kept.
    pub fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = self.stream.read_until(b'\n', &mut buf).unwrap();
            assert!(n > 0, "closed inside a multi-line answer");
            assert!(buf.ends_with(b"\r\n"), "line without CRLF: {buf:?}");
            if buf == b".\r\n" {
                return out;
            }
            out.extend_from_slice(buf.strip_prefix(b".").unwrap_or(&buf));
        }
    }

    /// A command with a multi-line answer (when it starts with +OK).
    pub fn multi(&mut self, line: &str) -> (String, Vec<u8>) {
        let status = self.cmd(line);
        if status.starts_with("+OK") {
            (status, self.body())
        } else {
            (status, Vec::new())
        }
    }

    /// USER and PASS.
    pub fn login(&mut self, user: &str, pass: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.cmd(&format!("PASS {pass}"))
    }

    /// True if the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = Vec::new();
        matches!(self.stream.read_until(b'\n', &mut buf), Ok(0) | Err(_)) && buf.is_empty()
    }
}

impl Server {
    /// A cleartext POP3 connection, greeting read.
    pub fn pop(&self) -> Pop {
        Pop::plain(self.pop3)
    }

    /// A POP3 session of alice.
    pub fn pop_alice(&self) -> Pop {
        let mut p = self.pop();
        let r = p.login("alice", ALICE_PW);
        assert!(r.starts_with("+OK"), "{r}");
        p
    }

    /// Delivers a message into a user's new/ as an MTA would (tmp, rename).
    pub fn deliver_raw(&self, user: &str, name: &str, data: &[u8]) {
        let md = self.maildir(user);
        for d in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(d)).unwrap();
        }
        std::fs::write(md.join("tmp").join(name), data).unwrap();
        std::fs::rename(md.join("tmp").join(name), md.join("new").join(name)).unwrap();
    }
}
