//! Mailbox names as the mailbox commands (LIST, LSUB, CREATE, DELETE,
//! RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS: their handlers in
//! [`super::cmd`]) resolve them.
//!
//! Names map to folders through the personal namespace ([`super::namespace`]):
//! by default Courier-IMAP's, where `INBOX.Work.2024` is the Maildir++
//! folder `.Work.2024`.

use imap_codec::imap_types::mailbox::Mailbox;

pub(crate) use super::namespace::Target;
use tern_imap_proto::imap_codec;
use tern_maildir::Maildir;

use super::session::{Reply, Session, State};
use crate::users::User;

impl Session {
    pub(crate) fn user(&self) -> Option<&User> {
        match &self.state {
            State::Authenticated { user } | State::Selected { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The folder a mailbox name names, and the user's Maildir.
    pub(super) fn target_in_maildir(
        &self,
        mailbox: &Mailbox<'_>,
    ) -> Result<(Target, Maildir), Reply> {
        Ok((
            self.svc.namespace.resolve_mailbox(mailbox)?,
            self.maildir()?,
        ))
    }

    pub(super) fn maildir(&self) -> Result<Maildir, Reply> {
        self.user()
            .map(|u| u.maildir.clone())
            .ok_or_else(|| Reply::bad("Not logged in"))
    }
}
