//! APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7888 LITERAL+).
//!
//! The message literal is never held in memory: the driver streams it into
//! the Maildir's `tmp/` as it arrives, turning CRLF into LF as Maildir
//! programs expect, and the command is parsed with the literal replaced by
//! `{0}`. A literal above the size limit is refused before the client sends
//! it (sync literal) or skipped (non-sync), with `NO [TOOBIG]`.

use tern_imap_proto::response::Code;
use tern_maildir::tmp::TmpFile;
use tokio::io::AsyncWriteExt;

use super::session::Reply;

/// A message literal streamed to a file in `tmp/`. Dropping it removes the
/// file unless it was delivered.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// The file in the root's `tmp/`, reached through the directory as
    /// opened (never a link swapped in later).
    pub(super) path: Option<TmpFile>,
    /// Size as stored (LF line ends).
    pub(super) size: u64,
    /// Size with CRLF line ends.
    pub(super) crlf_size: u64,
}

impl Streamed {
    /// Removes the file (see the Drop impl: off the runtime's workers).
    pub fn discard(self) {
        drop(self);
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            // An unlink can wait on a slow disk or NFS server: on the
            // blocking pool when there is a runtime, never on its workers.
            let creds = crate::creds::current();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(move || crate::creds::run_as(creds, || p.remove()))),
                Err(_) => {
                    let _ = crate::creds::run_as(creds, || p.remove());
                }
            }
        }
    }
}

/// Removes a file on the blocking pool with the session's account's
/// credentials.
pub(super) async fn remove_file(p: &TmpFile) -> std::io::Result<()> {
    let p = p.clone();
    crate::creds::spawn_blocking(move || p.remove())
        .await
        .unwrap_or_else(|e| Err(e.into()))
}

/// The answer when the message cannot be written to `tmp/` (disk full,
/// permissions): the cause goes to the log, not to the client.
pub(super) fn store_failed() -> Reply {
    Reply::no(
        Some(Code::ServerBug),
        "Cannot store the message, see the server log",
    )
}

/// CRLF → LF conversion across chunk boundaries, counting both sizes.
#[derive(Debug, Default)]
pub(super) struct ToLf {
    /// Whether the first line end was CRLF (unknown before it).
    crlf_style: Option<bool>,
    pending_cr: bool,
    prev: u8,
    size: u64,
    crlf_size: u64,
}

impl ToLf {
    fn emit(&mut self, out: &mut Vec<u8>, b: u8) {
        self.size += 1;
        self.crlf_size += 1;
        if b == b'\n' && self.prev != b'\r' {
            self.crlf_size += 1;
        }
        self.prev = b;
        out.push(b);
    }

    /// Converts `input` into `out`, up to the first byte LF storage could
    /// not give back in a message written with CRLF: a bare LF (it would
    /// come back as CRLF), or the LF of CR CR LF (it would come back as
    /// CR LF). Returns where it stopped; everything before is converted and
    /// reads back exactly.
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' {
                // The first line end says how the client writes them: a
                // message of bare LFs (a script's) is stored as it always
                // was, and sent with CRLF; one of CRLFs must come back
                // byte for byte.
                let crlf_style = *self.crlf_style.get_or_insert(self.pending_cr);
                if crlf_style && (!self.pending_cr || self.prev == b'\r') {
                    return Some(i);
                }
            }
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.emit(out, b'\n');
                    continue;
                }
                self.emit(out, b'\r');
            }
            if b == b'\r' {
                self.pending_cr = true;
                continue;
            }
            self.emit(out, b);
        }
        None
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.emit(out, b'\r');
        }
    }
}

/// An APPEND message being streamed to `tmp/` as the framer hands it out.
#[derive(Debug)]
pub(crate) struct Streaming {
    pub(super) file: tokio::fs::File,
    pub(super) streamed: Streamed,
    pub(super) conv: ToLf,
    /// Converted bytes not yet written. Invariant: at most one framer
    /// chunk (one socket read) long.
    pub(super) buf: Vec<u8>,
    /// The first write error; the literal is still read to its end.
    pub(super) failed: Option<std::io::Error>,
    /// Set once the message cannot be stored with LF line ends: it is
    /// then kept byte for byte as sent; the bytes so far.
    pub(super) as_sent: Option<u64>,
    /// The bytes from the first that LF storage would lose, to write after
    /// the file is turned back into its CRLF form.
    pub(super) switch: Option<Vec<u8>>,
}

impl Streaming {
    /// Takes a chunk of the literal.
    pub fn push(&mut self, bytes: &[u8]) {
        match &mut self.as_sent {
            Some(total) => {
                *total += bytes.len() as u64;
                self.buf.extend_from_slice(bytes);
            }
            None => {
                if let Some(at) = self.conv.push(bytes, &mut self.buf) {
                    // From here the message is kept as sent: what is in
                    // the file goes back to its CRLF form in `write_out`.
                    let so_far = self.conv.crlf_size + u64::from(self.conv.pending_cr);
                    let mut rest = Vec::with_capacity(bytes.len() - at + 1);
                    if self.conv.pending_cr {
                        rest.push(b'\r');
                    }
                    rest.extend_from_slice(&bytes[at..]);
                    self.as_sent = Some(so_far + (bytes.len() - at) as u64);
                    self.switch = Some(rest);
                }
            }
        }
    }

    /// Writes what was pushed.
    pub async fn write_out(&mut self) {
        if self.failed.is_none() && !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf).await {
                self.failed = Some(e);
            }
        }
        self.buf.clear();
        if let Some(rest) = self.switch.take() {
            if self.failed.is_none() {
                if let Err(e) = self.keep_as_sent(rest).await {
                    self.failed = Some(e);
                }
            }
        }
    }

    /// The message turned out not to survive LF storage: the file written
    /// so far (LF, lossless up to here) is written again in its CRLF form
    /// to a new file in `tmp/`, which then takes the rest as sent.
    async fn keep_as_sent(&mut self, rest: Vec<u8>) -> std::io::Result<()> {
        self.file.flush().await?;
        let Some(old) = self.streamed.path.clone() else {
            return Ok(());
        };
        let from = old.clone();
        // The new file is written from its start and stays open at its end
        // for the rest of the literal.
        let copied = crate::creds::spawn_blocking(move || {
            use std::io::{Read, Write};
            let (mut dst, to) = from.dir().create(&format!("{}.sent", from.name()))?;
            let res = (|| -> std::io::Result<()> {
                let mut src = from.open_read()?;
                let (mut conv, mut piece) =
                    (tern_message::crlf::ToCrlf::default(), vec![0u8; 64 * 1024]);
                let mut out = Vec::with_capacity(80 * 1024);
                loop {
                    let n = match src.read(&mut piece) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    out.clear();
                    conv.push(&piece[..n], &mut out);
                    dst.write_all(&out)?;
                }
                dst.write_all(&rest)
            })();
            match res {
                Ok(()) => Ok((dst, to)),
                Err(e) => {
                    let _ = to.remove();
                    Err(e)
                }
            }
        })
        .await
        .unwrap_or_else(|e| Err(e.into()));
        let (file, new) = copied?;
        self.file = tokio::fs::File::from_std(file);
        self.streamed.path = Some(new);
        let _ = remove_file(&old).await;
        Ok(())
    }

    /// The literal is complete: the file is made durable and handed over.
    ///
    /// # Errors
    /// The answer to give when the message could not be written.
    pub async fn finish(mut self) -> Result<Streamed, Reply> {
        if self.as_sent.is_none() {
            self.conv.finish(&mut self.buf);
        }
        self.write_out().await;
        if self.failed.is_none() {
            if let Err(e) = self.file.sync_all().await {
                self.failed = Some(e);
            }
        }
        if let Some(e) = self.failed.take() {
            tracing::error!(cause = %e, "cannot write message to tmp/");
            self.abandon().await;
            return Err(super::session::io_reply(&e).unwrap_or_else(store_failed));
        }
        // Kept as sent: both sizes are the size, which is how readers know
        // to send the file as it is (tern_maildir::flags::stored_as_sent).
        (self.streamed.size, self.streamed.crlf_size) = match self.as_sent {
            Some(total) => (total, total),
            None => (self.conv.size, self.conv.crlf_size),
        };
        Ok(self.streamed)
    }

    /// Removes the file: the command was refused.
    pub async fn abandon(mut self) {
        if let Some(p) = self.streamed.path.take() {
            let _ = remove_file(&p).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_to_lf_across_chunks() {
        let mut c = ToLf::default();
        let mut out = Vec::new();
        assert_eq!(c.push(b"a\r", &mut out), None);
        assert_eq!(c.push(b"\nb\r", &mut out), None);
        assert_eq!(c.push(b"c\r\n", &mut out), None);
        c.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\n");
        assert_eq!(c.size, 6);
        // As IMAP shows it: a CRLF b CR c CRLF.
        assert_eq!(c.crlf_size, 8);
    }

    #[test]
    fn what_lf_storage_would_lose_is_found_where_it_starts() {
        // A bare LF in a message of CRLFs.
        let mut c = ToLf::default();
        let mut out = Vec::new();
        assert_eq!(c.push(b"a\r\nb\nc", &mut out), Some(4));
        assert_eq!(out, b"a\nb");
        // CR CR LF, across two pieces: the second CR is still pending.
        let (mut c, mut out) = (ToLf::default(), Vec::new());
        assert_eq!(c.push(b"a\r\n\r", &mut out), None);
        assert_eq!(c.push(b"\r\nz", &mut out), Some(1));
        assert!(c.pending_cr);
        assert_eq!(out, b"a\n\r");
        // A message of bare LFs is stored as it always was.
        let (mut c, mut out) = (ToLf::default(), Vec::new());
        assert_eq!(c.push(b"a\nb\r\nc\n", &mut out), None);
        assert_eq!(out, b"a\nb\nc\n");
    }
}
