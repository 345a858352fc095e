//! LOGOUT (RFC 3501 §6.1.3), in any state.

use crate::imap::session::Session;
use crate::imap::session::{Reply, State};

impl Session {
    /// LOGOUT, in any state.
    pub(crate) fn logout(&mut self) -> Reply {
        self.untagged("BYE Logging out");
        self.state = State::Logout;
        Reply::ok("Logout completed")
    }
}
