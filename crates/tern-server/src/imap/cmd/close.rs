//! CLOSE and UNSELECT (RFC 3501 §6.4.2, RFC 3691).

use crate::imap::selected::expunge_deleted;
use crate::imap::session::{Reply, Session, State};
use rustc_hash::FxHashSet as HashSet;

impl Session {
    pub(crate) async fn close(&mut self, expunge: bool) -> Reply {
        let State::Selected { mailbox, .. } = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        if expunge && !mailbox.read_only {
            let open = mailbox.open.clone();
            let known: HashSet<u32> = mailbox.known.iter().map(|k| k.uid).collect();
            if let Err(r) = expunge_deleted(open, known).await {
                return r;
            }
        }
        if let Some(user) = self.take_user() {
            self.state = State::Authenticated { user };
        }
        Reply::ok(if expunge {
            "CLOSE completed"
        } else {
            "UNSELECT completed"
        })
    }
}
