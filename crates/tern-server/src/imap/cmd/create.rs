//! CREATE (RFC 3501 §6.3.3): a new Maildir++ folder.

use crate::imap::acl::parent_of;
use crate::imap::namespace::Target;
use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

impl Session {
    pub(crate) async fn create(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let Target::Folder(name) = target else {
            return Reply::no(Some(Code::AlreadyExists), "INBOX always exists");
        };
        if let Err(r) = self.require(&parent_of(&name), b"k").await {
            return r;
        }
        match blocking(move || md.create_folder(&name)).await {
            Ok(()) => Reply::ok("CREATE completed"),
            Err(r) => r,
        }
    }
}
