//! CLOSE and UNSELECT (RFC 3501 §6.4.2, RFC 3691).

use crate::imap::selected::expunge_deleted;
use crate::imap::session::{Reply, Session, State};
use rustc_hash::FxHashSet as HashSet;

impl Session {
    pub(crate) async fn close(&mut self, expunge: bool) -> Reply {
        let State::Selected { mailbox, .. } = &self.state else {
            return Reply::bad("No mailbox selected");
        };
        // Without the expunge right CLOSE just closes (RFC 4314 §4).
        let may_expunge = mailbox.rights.contains(tern_maildir::acl::Rights::of(b'e'));
        if expunge && !mailbox.read_only && may_expunge {
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
