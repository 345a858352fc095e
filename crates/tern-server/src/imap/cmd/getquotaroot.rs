//! GETQUOTAROOT (RFC 2087, RFC 9208).

use crate::imap::quota::{quota_line, quota_state, ROOT};
use crate::imap::session::{Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_imap_proto::wire;

impl Session {
    pub(crate) async fn getquotaroot(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let target = match self.svc.namespace.resolve_mailbox(&mailbox) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let Some(user) = self.user() else {
            return Reply::bad("Not logged in");
        };
        match crate::imap::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        let state = match quota_state(self.user().cloned()).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut line = b"QUOTAROOT ".to_vec();
        wire::mailbox(&mut line, &self.svc.namespace.wire_name(&target));
        if state.is_some() {
            line.extend_from_slice(format!(" \"{ROOT}\"").as_bytes());
        }
        self.untagged(&String::from_utf8_lossy(&line));
        if let Some((spec, usage)) = state {
            self.untagged(&quota_line(spec, usage));
        }
        Reply::ok("GETQUOTAROOT completed")
    }
}
