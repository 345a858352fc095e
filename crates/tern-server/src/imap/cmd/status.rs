//! STATUS (RFC 3501 §6.3.10, RFC 8438 SIZE).

use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, wire};
use tern_maildir::folder::MoveNew;

impl Session {
    pub(crate) async fn status(
        &mut self,
        mailbox: Mailbox<'static>,
        items: &[StatusDataItemName],
    ) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let dir = md.folder_dir(target.folder());
        match crate::imap::session::folder_exists(&md, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        if let Err(r) = self.require(&target, b"r").await {
            return r;
        }
        let open = self.svc.folders.get(&dir);
        let want_size = items.iter().any(|i| matches!(i, StatusDataItemName::Size));
        let o = open.clone();
        let res = blocking(move || {
            let view = o.folder.refresh(MoveNew::No)?;
            let mut size = 0u64;
            if want_size {
                for m in &view.messages {
                    size += o.folder.crlf_size(m).unwrap_or(0);
                }
            }
            let recent = view.messages.iter().filter(|m| m.in_new).count()
                + o.folder.unclaimed_recent_count();
            Ok((view, size, recent))
        })
        .await;
        let (view, size, recent) = match res {
            Ok(v) => v,
            Err(r) => return r,
        };
        use tern_maildir::Flag;
        let mut parts = Vec::new();
        for item in items {
            let v = match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", view.messages.len()),
                StatusDataItemName::Recent => format!("RECENT {}", recent.min(view.messages.len())),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", view.next_uid),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", view.uidvalidity),
                StatusDataItemName::Unseen => format!(
                    "UNSEEN {}",
                    view.messages
                        .iter()
                        .filter(|m| !m.flags.contains(Flag::Seen))
                        .count()
                ),
                StatusDataItemName::Deleted => format!(
                    "DELETED {}",
                    view.messages
                        .iter()
                        .filter(|m| m.flags.contains(Flag::Deleted))
                        .count()
                ),
                StatusDataItemName::Size => format!("SIZE {size}"),
                _ => continue,
            };
            parts.push(v);
        }
        let mut line = b"STATUS ".to_vec();
        wire::mailbox(&mut line, &self.svc.namespace.wire_name(&target));
        line.extend_from_slice(format!(" ({})", parts.join(" ")).as_bytes());
        self.conn.out.extend_from_slice(b"* ");
        self.conn.out.extend_from_slice(&line);
        self.conn.out.extend_from_slice(b"\r\n");
        Reply::ok("STATUS completed")
    }
}
