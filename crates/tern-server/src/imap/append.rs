//! APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7888 LITERAL+).
//!
//! The message literal is never held in memory: the driver streams it into
//! the Maildir's `tmp/` as it arrives, turning CRLF into LF as Maildir
//! programs expect, and the command is parsed with the literal replaced by
//! `{0}`. A literal above the size limit is refused before the client sends
//! it (sync literal) or skipped (non-sync), with `NO [TOOBIG]`.

use std::path::PathBuf;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag as ImapFlag;
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::framing::{Announcement, LiteralSync};
use tern_imap_proto::imap_codec;
use tern_maildir::folder::{AppendSource, MoveNew, NewMessage};
use tern_maildir::Flags;
use tokio::io::AsyncWriteExt;

use super::mailboxes::resolve_mailbox;
use super::session::{blocking, End, Incoming, Reply, Session};
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
    /// Removes the file.
    pub fn discard(mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The answer when the message cannot be written to `tmp/` (disk full,
/// permissions): the cause goes to the log, not to the client.
fn store_failed() -> Reply {
    Reply::no(
        Some("SERVERBUG"),
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

impl Session {
    /// A refused literal: a synchronising one is never sent (no `+` was
    /// given); a LITERAL+ one is on its way and is read and dropped, with the
    /// rest of its command.
    pub(crate) async fn skip_refused_literal(&mut self, ann: Announcement) -> Result<(), End> {
        if ann.sync == LiteralSync::NonSync {
            self.read_exact_to(ann.len, |_| Ok(())).await?;
            self.read_line(usize::MAX).await?;
        }
        Ok(())
    }

    /// Streams the message literal of an APPEND to `tmp/`.
    pub(crate) async fn read_append_literal(
        &mut self,
        cmd: Vec<u8>,
        ann: Announcement,
        tag: Option<String>,
    ) -> Result<Incoming, End> {
        let max = self.svc.limits.max_message_size;
        let refuse = |s: &mut Session, r: Reply| {
            if let Some(t) = &tag {
                s.tagged(t, &r);
            }
        };
        if ann.len > max {
            self.skip_refused_literal(ann).await?;
            refuse(
                self,
                Reply::no(
                    Some("TOOBIG"),
                    format!("Message is larger than the limit of {max} octets"),
                ),
            );
            return Ok(Incoming::Answered);
        }
        let Some(user) = self.user().cloned() else {
            return Ok(Incoming::Answered);
        };
        // Check the target before asking for the message (as Dovecot does):
        // parse the command with an empty literal in place of the message.
        let mut probe = cmd[..ann.brace_at].to_vec();
        probe.extend_from_slice(b"{0}\r\n\r\n");
        let early = match tern_imap_proto::command::parse(&probe) {
            Ok(c) => match c.body {
                imap_codec::imap_types::command::CommandBody::Append { mailbox, .. } => {
                    match resolve_mailbox(&mailbox) {
                        Ok(t) if user.maildir.folder_exists(t.folder()) => None,
                        Ok(_) => Some(Reply::no(Some("TRYCREATE"), "Mailbox does not exist")),
                        Err(r) => Some(r),
                    }
                }
                _ => None,
            },
            Err(_) => Some(Reply::bad_code(
                "CLIENTBUG",
                "Error in IMAP command APPEND: invalid arguments",
            )),
        };
        if let Some(r) = early {
            self.skip_refused_literal(ann).await?;
            refuse(self, r);
            return Ok(Incoming::Answered);
        }
        let path = user.maildir.new_tmp_path();
        let mut file = match tokio::fs::File::create(&path).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %path.display(), cause = %e, "cannot create file in tmp/");
                self.skip_refused_literal(ann).await?;
                refuse(self, store_failed());
                return Ok(Incoming::Answered);
            }
        };
        let mut streamed = Streamed {
            path: Some(path),
            size: 0,
            crlf_size: 0,
        };
        if ann.sync == LiteralSync::Sync {
            self.conn
                .out
                .extend_from_slice(b"+ Ready for literal data\r\n");
            self.flush().await?;
        }
        let mut conv = ToLf::default();
        let mut remaining = ann.len;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut write_failed = None;
        while remaining > 0 {
            if self.conn.inbuf.is_empty() {
                self.fill().await?;
            }
            let take = (self.conn.inbuf.len() as u64).min(remaining) as usize;
            buf.clear();
            conv.push(&self.conn.inbuf[..take], &mut buf);
            self.conn.inbuf.drain(..take);
            remaining -= take as u64;
            if write_failed.is_none() {
                if let Err(e) = file.write_all(&buf).await {
                    write_failed = Some(e);
                }
            }
        }
        buf.clear();
        conv.finish(&mut buf);
        if write_failed.is_none() {
            if let Err(e) = file.write_all(&buf).await {
                write_failed = Some(e);
            }
        }
        if write_failed.is_none() {
            if let Err(e) = file.sync_all().await {
                write_failed = Some(e);
            }
        }
        let Some(rest) = self.read_line(self.svc.limits.max_line_length).await? else {
            refuse(self, Reply::bad_code("LIMIT", "Command too long"));
            return Ok(Incoming::Answered);
        };
        if let Some(e) = write_failed {
            tracing::error!(cause = %e, "cannot write message to tmp/");
            refuse(self, store_failed());
            return Ok(Incoming::Answered);
        }
        if tern_imap_proto::framing::literal_announcement(&rest).is_some() {
            // MULTIAPPEND and CATENATE are not offered.
            refuse(self, Reply::bad("Only one message per APPEND is supported"));
            return Ok(Incoming::Answered);
        }
        streamed.size = conv.size;
        streamed.crlf_size = conv.crlf_size;
        let mut new_cmd = cmd[..ann.brace_at].to_vec();
        new_cmd.extend_from_slice(b"{0}\r\n");
        new_cmd.extend_from_slice(&rest);
        Ok(Incoming::Append(new_cmd, streamed))
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
        if !user.maildir.folder_exists(target.folder()) {
            return Reply::no(Some("TRYCREATE"), "Mailbox does not exist");
        }
        if streamed.size == 0 {
            return Reply::no(Some("CANNOT"), "Cannot save an empty message");
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
            return Reply::no(Some("SERVERBUG"), "Message lost");
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
                Reply::ok_code(format!("APPENDUID {uidvalidity} {uid}"), "APPEND completed")
            }
            Err(r) => {
                let _ = std::fs::remove_file(&path);
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
