//! RENAME (RFC 3501 §6.3.5): a folder and its children; INBOX's messages move.

use crate::imap::acl::parent_of;
use crate::imap::namespace::Target;
use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

impl Session {
    pub(crate) async fn rename(&mut self, from: Mailbox<'static>, to: Mailbox<'static>) -> Reply {
        let ns = &self.svc.namespace;
        let (from, to) = match (ns.resolve_mailbox(&from), ns.resolve_mailbox(&to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let Target::Folder(to) = to else {
            return Reply::no(Some(Code::AlreadyExists), "INBOX already exists");
        };
        // RFC 4314 §4: `x` on the old name, `k` where the new one goes.
        if let Err(r) = self.require(&from, b"x").await {
            return r;
        }
        if let Err(r) = self.require(&parent_of(&to), b"k").await {
            return r;
        }
        let md = match self.maildir() {
            Ok(m) => m,
            Err(r) => return r,
        };
        let res = match from {
            Target::Inbox => blocking(move || md.rename_inbox(&to)).await,
            Target::Folder(from) => blocking(move || md.rename_folder(&from, &to)).await,
        };
        match res {
            Ok(()) => Reply::ok("RENAME completed"),
            Err(r) => r,
        }
    }
}
