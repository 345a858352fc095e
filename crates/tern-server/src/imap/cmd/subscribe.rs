//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7): Courier's `courierimapsubscribed`.

use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;

impl Session {
    pub(crate) async fn subscribe(&mut self, mailbox: Mailbox<'static>, on: bool) -> Reply {
        let (target, md) = match self.target_in_maildir(&mailbox) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let name = target.full_name();
        match blocking(move || md.set_subscribed(&name, on)).await {
            Ok(()) => Reply::ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(r) => r,
        }
    }
}
