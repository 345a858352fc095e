//! The relay between two cleartext TCP legs: bytes move from one socket
//! to the other through a pipe with `splice(2)`, so bulk data (a large
//! FETCH, an APPEND) never crosses into this process's memory.
//!
//! A pipe costs two descriptors and, while it holds data, its pages; an
//! idle session needs neither. So a direction starts by copying through a
//! small buffer, as the TLS relay does, and takes a pipe only when a read
//! fills the largest buffer (bulk flow); when the flow falls back to a
//! trickle the pipe is closed again. Ten thousand idle relayed sessions
//! hold no pipe.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{resize_for, LARGE, SMALL};

/// At most this much is moved by one splice: a pipe's default capacity.
const PIPE_CHUNK: usize = 64 * 1024;

/// One direction of the relay: a copy buffer, or a pipe while data flows
/// in bulk.
pub(super) struct Direction {
    buf: Vec<u8>,
    pipe: Option<(OwnedFd, OwnedFd)>,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            buf: vec![0; SMALL],
            pipe: None,
        }
    }

    /// Whether a pipe is open (for the tests).
    #[cfg(test)]
    pub(super) fn spliced(&self) -> bool {
        self.pipe.is_some()
    }
}

fn splice_flags() -> SpliceFlags {
    SpliceFlags::NONBLOCK | SpliceFlags::MOVE
}

/// Moves what `src` has now to `dst`, once `src` was reported readable:
/// `Ok(false)` at the end of `src`'s stream. A readiness that was stale
/// moves nothing and answers `Ok(true)`.
pub(super) async fn pass(src: &TcpStream, dst: &TcpStream, d: &mut Direction) -> io::Result<bool> {
    if let Some((from_pipe, into_pipe)) = &d.pipe {
        let n = match src.try_io(Interest::READABLE, || {
            splice(src, None, into_pipe, None, PIPE_CHUNK, splice_flags()).map_err(io::Error::from)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(false);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(from_pipe, None, dst, None, left, splice_flags()).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if n < SMALL / 2 {
            // A trickle again: back to a small buffer, no pipe held.
            d.pipe = None;
            d.buf = vec![0; SMALL];
        }
        return Ok(true);
    }
    let n = match src.try_read(&mut d.buf) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
        Err(e) => return Err(e),
    };
    if n == 0 {
        return Ok(false);
    }
    write_all(dst, &d.buf[..n]).await?;
    if n == d.buf.len() && d.buf.len() >= LARGE {
        // Bulk: splice from now on.
        d.pipe = Some(pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?);
        d.buf = Vec::new();
    } else {
        resize_for(&mut d.buf, n);
    }
    Ok(true)
}

/// Writes all of `bytes` to `dst`.
pub(super) async fn write_all(dst: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair of sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn bulk_is_spliced_a_trickle_is_copied_and_every_byte_arrives_in_order() {
        // writer -> src ==relay==> dst -> reader
        let (mut writer, src) = pair().await;
        let (dst, mut reader) = pair().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let feeder = tokio::spawn(async move {
            writer.write_all(&sent).await.unwrap();
            // Then a trickle, and the end.
            writer.write_all(b"tail").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            writer.write_all(b"!").await.unwrap();
            writer.shutdown().await.unwrap();
        });
        let drain = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut d = Direction::new();
        let mut was_spliced = false;
        loop {
            src.readable().await.unwrap();
            if !pass(&src, &dst, &mut d).await.unwrap() {
                break;
            }
            was_spliced |= d.spliced();
        }
        assert!(was_spliced, "3 MB at once took no pipe");
        assert!(!d.spliced(), "the trickle at the end kept the pipe");
        drop(dst);
        feeder.await.unwrap();
        let got = drain.await.unwrap();
        let mut want = data;
        want.extend_from_slice(b"tail!");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes reordered or changed");
    }
}
