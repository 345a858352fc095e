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

/// A pipe's default capacity.
const PIPE_CHUNK: usize = 64 * 1024;

/// The capacity asked for a relay's pipe: four times the default, which
/// takes about a third of the proxy's CPU per relayed MB off (fewer,
/// larger splices; docs/BENCHMARKS.md, 2026-12-03).
const PIPE_SIZE: usize = 256 * 1024;

/// Most pipes enlarged to [`PIPE_SIZE`] at once (16 MiB of pipe pages at
/// most). Pipe pages count against a per-user limit
/// (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default) past which
/// the kernel gives new pipes a page or two: the pipes past this many keep
/// the default size.
const MAX_BIG_PIPES: usize = 64;

/// Pipes enlarged now.
static BIG_PIPES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A pipe between the two sockets of one direction.
struct Pipe {
    from: OwnedFd,
    into: OwnedFd,
    /// Its capacity: the most one splice moves.
    cap: usize,
    /// Whether it counts in [`BIG_PIPES`].
    big: bool,
}

impl Pipe {
    fn open() -> io::Result<Pipe> {
        use std::sync::atomic::Ordering;
        let (from, into) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let mut p = Pipe {
            from,
            into,
            cap: PIPE_CHUNK,
            big: false,
        };
        if BIG_PIPES.fetch_add(1, Ordering::AcqRel) < MAX_BIG_PIPES {
            if let Ok(cap) = rustix::pipe::fcntl_setpipe_size(&p.into, PIPE_SIZE) {
                (p.cap, p.big) = (cap, true);
            }
        }
        if !p.big {
            BIG_PIPES.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(p)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.big {
            BIG_PIPES.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// One direction of the relay: a copy buffer, or a pipe while data flows
/// in bulk.
pub(super) struct Direction {
    buf: Vec<u8>,
    pipe: Option<Pipe>,
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
    if let Some(pipe) = &d.pipe {
        let n = match drained_read(src, pipe.cap, || {
            splice(src, None, &pipe.into, None, pipe.cap, splice_flags()).map_err(io::Error::from)
        })? {
            Some(n) => n,
            None => return Ok(true),
        };
        if n == 0 {
            return Ok(false);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.from, None, dst, None, left, splice_flags()).map_err(io::Error::from)
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
    let len = d.buf.len();
    let buf = &mut d.buf;
    let n = match drained_read(src, len, || {
        rustix::io::read(src, &mut buf[..]).map_err(io::Error::from)
    })? {
        Some(n) => n,
        None => return Ok(true),
    };
    if n == 0 {
        return Ok(false);
    }
    write_all(dst, &d.buf[..n]).await?;
    if n == d.buf.len() && d.buf.len() >= LARGE {
        // Bulk: splice from now on.
        d.pipe = Some(Pipe::open()?);
        d.buf = Vec::new();
    } else {
        resize_for(&mut d.buf, n);
    }
    Ok(true)
}

/// One read of `src` by `read`, which moves at most `len` bytes:
/// `Ok(None)` when there was nothing to read after all (a stale
/// readiness, now cleared).
///
/// A read that moved less than `len` bytes (and more than none) emptied
/// the socket's receive queue, so its readiness is cleared at once, as
/// tokio's own `poll_read` does after a short read: otherwise the next
/// turn of the relay would find the socket "readable", read again and
/// get `EAGAIN`, one wasted system call and loop turn for every piece a
/// relayed session moves. Clearing is safe with edge-triggered epoll:
/// tokio clears only the readiness of the event this read was started
/// on, and data that arrives after the read raises a new one.
fn drained_read(
    src: &TcpStream,
    len: usize,
    read: impl FnOnce() -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    let mut moved = None;
    let r = src.try_io(Interest::READABLE, || {
        let n = read()?;
        moved = Some(n);
        if n > 0 && n < len {
            // Cleared by try_io; the bytes are in `moved`.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (r, moved) {
        (_, Some(n)) => Ok(Some(n)),
        (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        (Err(e), None) => Err(e),
        (Ok(n), None) => Ok(Some(n)),
    }
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

    /// The tests that open pipes, one at a time ([`BIG_PIPES`] is global).
    static PIPES: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn pipes_are_enlarged_within_their_budget_and_give_it_back() {
        let _one = PIPES.lock().unwrap_or_else(|p| p.into_inner());
        use std::sync::atomic::Ordering;
        assert_eq!(BIG_PIPES.load(Ordering::Acquire), 0);
        let pipes: Vec<Pipe> = (0..MAX_BIG_PIPES + 3)
            .map(|_| Pipe::open().unwrap())
            .collect();
        let big = pipes.iter().filter(|p| p.big).count();
        assert_eq!(big, MAX_BIG_PIPES, "as many enlarged as the budget allows");
        assert!(pipes.iter().filter(|p| p.big).all(|p| p.cap >= PIPE_SIZE));
        assert!(pipes.iter().filter(|p| !p.big).all(|p| p.cap == PIPE_CHUNK));
        assert_eq!(BIG_PIPES.load(Ordering::Acquire), MAX_BIG_PIPES);
        drop(pipes);
        assert_eq!(BIG_PIPES.load(Ordering::Acquire), 0);
        assert!(Pipe::open().unwrap().big, "the budget is free again");
    }

    #[tokio::test]
    // The lock only keeps the two pipe tests apart; each has its own
    // runtime, so holding it across awaits blocks no other task.
    #[allow(clippy::await_holding_lock)]
    async fn bulk_is_spliced_a_trickle_is_copied_and_every_byte_arrives_in_order() {
        let _one = PIPES.lock().unwrap_or_else(|p| p.into_inner());
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
