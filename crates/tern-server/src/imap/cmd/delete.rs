//! DELETE (RFC 3501 §6.3.4): a folder and its messages; its children stay.

use crate::imap::namespace::Target;
use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

impl Session {
    pub(crate) async fn delete(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let Target::Folder(name) = target else {
            return Reply::no(Some(Code::Cannot), "INBOX cannot be deleted");
        };
        if let Err(r) = self.require(&Target::Folder(name.clone()), b"x").await {
            return r;
        }
        let dir = md.folder_dir(Some(&name));
        match blocking(move || md.delete_folder(&name)).await {
            Ok(()) => {
                self.svc.folders.notify(&dir);
                Reply::ok("DELETE completed")
            }
            Err(r) => r,
        }
    }
}
