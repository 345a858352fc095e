//! A client connection as line-based protocols see it: buffered input read
//! with a timeout, buffered output, and the switch to TLS in the middle of a
//! session (STLS).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::imap::AsyncStream;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    /// The client closed the connection.
    Closed,
    /// Nothing arrived within the timeout.
    TimedOut,
    /// A socket or TLS error.
    Io(std::io::Error),
}

impl From<std::io::Error> for ConnEnd {
    fn from(e: std::io::Error) -> Self {
        ConnEnd::Io(e)
    }
}

/// A connection with its buffers.
pub(crate) struct Conn {
    stream: Option<Box<dyn AsyncStream>>,
    /// Bytes read and not yet consumed.
    pub inbuf: Vec<u8>,
    /// Bytes waiting to be written by [`Conn::flush`].
    pub out: Vec<u8>,
    /// The connection is protected by TLS.
    pub tls_active: bool,
    /// Its channel bindings, once it is (SCRAM-...-PLUS, EXTERNAL); boxed,
    /// so that a cleartext connection pays one pointer for them.
    pub binding: Option<Box<crate::tls::ChannelBindings>>,
    /// The last read filled the input buffer: the client sends more than
    /// it holds, so the next read gets a larger one.
    filled: bool,
}

impl Conn {
    pub fn new(stream: Box<dyn AsyncStream>, tls_active: bool) -> Conn {
        Conn {
            stream: Some(stream),
            inbuf: Vec::new(),
            out: Vec::new(),
            tls_active,
            binding: None,
            filled: false,
        }
    }

    fn stream(&mut self) -> std::io::Result<&mut Box<dyn AsyncStream>> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotConnected, "no stream"))
    }

    /// Writes out everything buffered.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let s = self.stream()?;
        s.write_all(&out).await?;
        s.flush().await?;
        self.out = out;
        self.out.clear();
        Ok(())
    }

    /// Whether a whole line is already buffered (the client pipelines).
    pub fn has_line(&self) -> bool {
        self.inbuf.contains(&b'\n')
    }

    /// Reads more bytes into the input buffer.
    pub async fn fill(&mut self, timeout: Duration) -> Result<(), ConnEnd> {
        // Read straight into the input buffer: an idle connection holds no
        // read buffer beyond what is pending (see the idle-memory figure in
        // docs/BENCHMARKS.md); busy ones grow it.
        // It grows to 16 KiB only once a read has filled it (a client
        // sending a large literal), not because little is left: a session
        // waiting in IDLE after a small command keeps its 512 bytes.
        let spare = self.inbuf.capacity() - self.inbuf.len();
        if self.inbuf.capacity() == 0 {
            self.inbuf.reserve(512);
        } else if spare < 256 || (self.filled && self.inbuf.capacity() < 16 * 1024) {
            self.inbuf.reserve(16 * 1024);
        }
        let spare = self.inbuf.capacity() - self.inbuf.len();
        let stream = self.stream.as_mut().ok_or(ConnEnd::Closed)?;
        match tokio::time::timeout(timeout, stream.read_buf(&mut self.inbuf)).await {
            Ok(Ok(0)) => Err(ConnEnd::Closed),
            Ok(Ok(n)) => {
                self.filled = n == spare;
                Ok(())
            }
            Ok(Err(e)) => Err(ConnEnd::Io(e)),
            Err(_) => Err(ConnEnd::TimedOut),
        }
    }

    /// Reads one line with its line end. A line longer than `max` is
    /// consumed to its end and reported as `None`. `timeout` is for the
    /// whole line: a client that sends it a byte at a time does not get it
    /// again with each byte.
    pub async fn read_line(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, ConnEnd> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut scanned = 0;
        let mut overlong = false;
        loop {
            if let Some(p) = self.inbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + p + 1;
                let line: Vec<u8> = self.inbuf.drain(..end).collect();
                return Ok(if overlong || line.len() > max {
                    None
                } else {
                    Some(line)
                });
            }
            if self.inbuf.len() > max {
                overlong = true;
                self.inbuf.clear();
                scanned = 0;
            } else {
                scanned = self.inbuf.len();
            }
            self.fill(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await?;
        }
    }

    /// The stream itself, taken out for a relay (after a flush).
    pub fn take_stream(&mut self) -> Option<Box<dyn AsyncStream>> {
        self.stream.take()
    }

    /// Gives back buffer memory after a large command, so that an idle
    /// connection stays small.
    pub fn shrink(&mut self) {
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new();
        }
        // Even a small answer's buffer goes (a LOGIN's, with its
        // capability list, is 400 bytes): it is most of what an idle
        // session would keep, and the next answer's allocation costs less
        // than the write that sends it.
        if self.out.is_empty() {
            self.out = Vec::new();
        }
    }

    /// Switches to TLS. Whatever the client sent after the command that
    /// started it is discarded: it came in the clear and must not be taken
    /// as protected (RFC 2595 §4, RFC 3501 §6.2.1).
    /// `sasl` has the certificate's `tls-server-end-point` hash and how a
    /// client certificate names its account.
    pub async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        sasl: &crate::sasl::SaslSettings,
    ) -> Result<(), ConnEnd> {
        self.flush().await?;
        self.inbuf = Vec::new();
        let plain = self.stream.take().ok_or(ConnEnd::Closed)?;
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.binding = Some(Box::new(crate::tls::ChannelBindings::of(
                    tls.get_ref().1,
                    sasl.end_point.as_deref(),
                    sasl.cert_field,
                )));
                self.stream = Some(Box::new(tls));
                self.tls_active = true;
                Ok(())
            }
            Ok(Err(e)) => Err(ConnEnd::Io(e)),
            Err(_) => Err(ConnEnd::TimedOut),
        }
    }
}
