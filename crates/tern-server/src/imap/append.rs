//! APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7888 LITERAL+).
//!
//! The message literal is never held in memory: the driver streams it into
//! the Maildir's `tmp/` as it arrives, turning CRLF into LF as Maildir
//! programs expect, and the command is parsed with the literal replaced by
//! `{0}`. A literal above the size limit is refused before the client sends
//! it (sync literal) or skipped (non-sync), with `NO [TOOBIG]`.

use std::path::PathBuf;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag as ImapFlag;
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::framer::LiteralInfo;
use tern_imap_proto::response::Code;
use tern_imap_proto::{framing, imap_codec};
use tern_maildir::folder::{AppendSource, MoveNew, NewMessage};
use tern_maildir::Flags;
use tokio::io::AsyncWriteExt;

use super::mailboxes::resolve_mailbox;
use super::session::{blocking, LiteralUse, Reply, Session};
use super::store::convert_flags;

/// A message literal streamed to a file in `tmp/`. Dropping it removes the
/// file unless it was delivered.
#[derive(Debug)]
pub(crate) struct Streamed {
    path: Option<PathBuf>,
    /// Size as stored (LF line ends).
    size: u64,
    /// Size with CRLF line ends.
    crlf_size: u64,
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
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(move || std::fs::remove_file(p))),
                Err(_) => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// The answer when the message cannot be written to `tmp/` (disk full,
/// permissions): the cause goes to the log, not to the client.
fn store_failed() -> Reply {
    Reply::no(
        Some(Code::ServerBug),
        "Cannot store the message, see the server log",
    )
}

/// CRLF → LF conversion across chunk boundaries, counting both sizes.
#[derive(Debug, Default)]
struct ToLf {
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

    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
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
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.emit(out, b'\r');
        }
    }
}

/// Longest mailbox-name literal of an APPEND whose arguments do not parse:
/// a longer literal there is taken for a message and refused at once rather
/// than read into memory.
const MAX_APPEND_ARG_LITERAL: u64 = 1024;

/// An APPEND's message literal is its first or second literal (after a
/// mailbox name sent as a literal; flags and date are never literals).
pub(crate) const MESSAGE_LITERAL_AT_MOST: usize = 2;

/// Whether a literal announced in an APPEND is its message: it is when the
/// command so far parses as an APPEND with this literal as its message.
pub(crate) fn literal_use(prefix: &[u8], info: LiteralInfo) -> LiteralUse {
    if framing::command_name(prefix).as_deref() != Some("APPEND") {
        return LiteralUse::Inline;
    }
    if let Some(mailbox) = append_probe(prefix) {
        return LiteralUse::Stream(Some(mailbox));
    }
    if info.len > MAX_APPEND_ARG_LITERAL {
        return LiteralUse::Refuse(Reply::bad_code(
            Code::ClientBug,
            "Error in IMAP command APPEND: invalid arguments",
        ));
    }
    LiteralUse::Inline
}

/// The mailbox of an APPEND whose message literal is announced after
/// `prefix`, found by parsing the command with an empty message.
fn append_probe(prefix: &[u8]) -> Option<Mailbox<'static>> {
    let mut probe = prefix.to_vec();
    probe.extend_from_slice(b"{0}\r\n\r\n");
    match tern_imap_proto::command::parse(&probe).map(|c| c.body) {
        Ok(CommandBody::Append { mailbox, .. }) => Some(mailbox),
        _ => None,
    }
}

/// An APPEND message being streamed to `tmp/` as the framer hands it out.
#[derive(Debug)]
pub(crate) struct Streaming {
    file: tokio::fs::File,
    streamed: Streamed,
    conv: ToLf,
    /// Converted bytes not yet written. Invariant: at most one framer
    /// chunk (one socket read) long.
    buf: Vec<u8>,
    /// The first write error; the literal is still read to its end.
    failed: Option<std::io::Error>,
}

impl Streaming {
    /// Takes a chunk of the literal.
    pub fn push(&mut self, bytes: &[u8]) {
        self.conv.push(bytes, &mut self.buf);
    }

    /// Writes what was pushed.
    pub async fn write_out(&mut self) {
        if self.failed.is_none() && !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf).await {
                self.failed = Some(e);
            }
        }
        self.buf.clear();
    }

    /// The literal is complete: the file is made durable and handed over.
    ///
    /// # Errors
    /// The answer to give when the message could not be written.
    pub async fn finish(mut self) -> Result<Streamed, Reply> {
        self.conv.finish(&mut self.buf);
        self.write_out().await;
        if self.failed.is_none() {
            if let Err(e) = self.file.sync_all().await {
                self.failed = Some(e);
            }
        }
        if let Some(e) = self.failed.take() {
            tracing::error!(cause = %e, "cannot write message to tmp/");
            self.abandon().await;
            return Err(store_failed());
        }
        self.streamed.size = self.conv.size;
        self.streamed.crlf_size = self.conv.crlf_size;
        Ok(self.streamed)
    }

    /// Removes the file: the command was refused.
    pub async fn abandon(mut self) {
        if let Some(p) = self.streamed.path.take() {
            let _ = tokio::fs::remove_file(p).await;
        }
    }
}

impl Session {
    /// Checks an APPEND before its message is read (as Dovecot does: size,
    /// target folder) and opens its file in `tmp/`.
    ///
    /// # Errors
    /// The answer refusing the command.
    pub(crate) async fn start_append(
        &mut self,
        mailbox: Option<Mailbox<'static>>,
        info: LiteralInfo,
    ) -> Result<Streaming, Reply> {
        let max = self.svc.limits.max_message_size;
        if info.len > max {
            return Err(Reply::no(
                Some(Code::TooBig),
                format!("Message is larger than the limit of {max} octets"),
            ));
        }
        let Some(user) = self.user().cloned() else {
            return Err(Reply::bad("Not logged in"));
        };
        let Some(mailbox) = mailbox else {
            return Err(Reply::bad_code(
                Code::ClientBug,
                "Error in IMAP command APPEND: invalid arguments",
            ));
        };
        let target = resolve_mailbox(&mailbox)?;
        if !super::session::folder_exists(&user.maildir, target.folder()).await? {
            return Err(Reply::no(Some(Code::TryCreate), "Mailbox does not exist"));
        }
        let path = user.maildir.new_tmp_path();
        let file = match tokio::fs::File::create(&path).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %path.display(), cause = %e, "cannot create file in tmp/");
                return Err(store_failed());
            }
        };
        Ok(Streaming {
            file,
            streamed: Streamed {
                path: Some(path),
                size: 0,
                crlf_size: 0,
            },
            conv: ToLf::default(),
            buf: Vec::with_capacity(16 * 1024),
            failed: None,
        })
    }

    pub(crate) async fn append(
        &mut self,
        mailbox: Mailbox<'static>,
        flags: Vec<ImapFlag<'static>>,
        date: Option<DateTime>,
        mut streamed: Streamed,
    ) -> Reply {
        let target = match resolve_mailbox(&mailbox) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let Some(user) = self.user().cloned() else {
            return Reply::bad("Not logged in");
        };
        if streamed.size == 0 {
            return Reply::no(Some(Code::Cannot), "Cannot save an empty message");
        }
        let set = match convert_flags(&flags) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut f = Flags::empty();
        for fl in &set.system {
            f.set(*fl, true);
        }
        let internal_date = date.map(|d| {
            let ts = d.as_ref().timestamp();
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.max(0) as u64)
        });
        let Some(path) = streamed.path.take() else {
            return Reply::no(Some(Code::ServerBug), "Message lost");
        };
        let dest = self
            .svc
            .folders
            .get(&user.maildir.folder_dir(target.folder()));
        let msg = NewMessage {
            source: AppendSource::TmpFile(path.clone()),
            size: streamed.size,
            crlf_size: streamed.crlf_size,
            flags: f,
            keywords: set.keywords.into_iter().collect::<Vec<_>>().into(),
            internal_date,
        };
        let d = dest.clone();
        let folder = target.folder().cloned();
        let res = blocking(move || {
            // Checked before the message was read (`start_append`); again
            // here, in the same trip to the blocking pool, for a folder
            // deleted while it arrived.
            if !user.maildir.folder_exists(folder.as_ref()) {
                return Err(tern_maildir::MaildirError::NoSuchFolder);
            }
            tern_maildir::quota::ensure_room(
                user.maildir.root(),
                user.quota,
                folder.as_ref(),
                msg.size,
                1,
            )?;
            let uids = d.folder.append(vec![msg])?;
            let view = d.folder.refresh(MoveNew::No)?;
            Ok((uids, view.uidvalidity))
        })
        .await;
        match res {
            Ok((uids, uidvalidity)) => {
                dest.changed.notify_waiters();
                let uid = uids.first().copied().unwrap_or(0);
                Reply::ok_code(Code::AppendUid { uidvalidity, uid }, "APPEND completed")
            }
            Err(r) => {
                let _ = tokio::fs::remove_file(&path).await;
                if r.code == Some(Code::Nonexistent) {
                    // RFC 3501 §6.3.11: the client may CREATE and retry.
                    return Reply::no(Some(Code::TryCreate), "Mailbox does not exist");
                }
                r
            }
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
        c.push(b"a\r", &mut out);
        c.push(b"\nb\r", &mut out);
        c.push(b"c\n", &mut out);
        c.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\n");
        assert_eq!(c.size, 6);
        // As IMAP shows it: a CRLF b CR c CRLF.
        assert_eq!(c.crlf_size, 8);
    }
}
