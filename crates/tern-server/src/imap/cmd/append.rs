//! APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID): checked before the message
//! is read, then stored once it has been streamed to `tmp/`.

use crate::imap::append::{remove_file, store_failed, Streamed, Streaming, ToLf};
use crate::imap::session::{blocking, Reply, Session};
use crate::imap::store::convert_flags;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag as ImapFlag;
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::framer::LiteralInfo;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_maildir::folder::{AppendSource, MoveNew, NewMessage};
use tern_maildir::Flags;

impl Session {
    /// Checks an APPEND before its message is read (as Dovecot does: size,
    /// target folder) and opens its file in `tmp/`.
    ///
    /// # Errors
    /// The answer refusing the command.
    pub(crate) async fn start_append(
        &mut self,
        mailbox: Mailbox<'static>,
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
        let target = self.svc.namespace.resolve_mailbox(&mailbox)?;
        if !crate::imap::session::folder_exists(&user.maildir, target.folder()).await? {
            return Err(Reply::no(Some(Code::TryCreate), "Mailbox does not exist"));
        }
        self.require(&target, b"i").await?;
        // Created (and, under root, given its directory's owner) on the
        // blocking pool with the account's credentials, as every storage
        // call, in tmp/ as opened without following links; then written
        // through tokio's file.
        let md = user.maildir.clone();
        let created = crate::creds::spawn_blocking(move || {
            let tmp = md.tmp_dir()?;
            tmp.create_unique()
                .map_err(|e| tern_maildir::MaildirError::io("create", tmp.path(), e))
        })
        .await
        // A call that got no thread in time (the account's other storage
        // calls stuck) is the storage's slowness, not a failure: the same
        // `NO [UNAVAILABLE]` as every storage call's.
        .map_err(|e| crate::imap::session::blocking_failure(&e))?;
        let (file, path) = match created {
            Ok((f, p)) => (tokio::fs::File::from_std(f), p),
            Err(e) => {
                tracing::error!(cause = %e, "cannot create file in tmp/");
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
            as_sent: None,
            switch: None,
        })
    }

    pub(crate) async fn append(
        &mut self,
        mailbox: Mailbox<'static>,
        flags: Vec<ImapFlag<'static>>,
        date: Option<DateTime>,
        mut streamed: Streamed,
    ) -> Reply {
        let target = match self.svc.namespace.resolve_mailbox(&mailbox) {
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
        let max_keywords = self.svc.limits.max_keywords;
        let res = blocking(move || {
            // The same cap on keywords per mailbox as STORE's.
            if !msg.keywords.is_empty() {
                let view = d.folder.refresh(MoveNew::No)?;
                let mut all: std::collections::BTreeSet<String> = view
                    .messages
                    .iter()
                    .flat_map(|m| m.keywords.iter().map(|k| k.to_ascii_lowercase()))
                    .collect();
                all.extend(msg.keywords.iter().map(|k| k.to_ascii_lowercase()));
                if all.len() > max_keywords {
                    return Err(tern_maildir::MaildirError::TooManyKeywords(max_keywords));
                }
            }
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
                let _ = remove_file(&path).await;
                if r.code == Some(Code::Nonexistent) {
                    // RFC 3501 §6.3.11: the client may CREATE and retry.
                    return Reply::no(Some(Code::TryCreate), "Mailbox does not exist");
                }
                r
            }
        }
    }
}
