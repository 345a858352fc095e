//! CAPABILITY (RFC 3501 §6.1.1), in any state.

use crate::imap::session::Reply;
use crate::imap::session::Session;

impl Session {
    /// CAPABILITY, in any state.
    pub(crate) fn capability(&mut self) -> Reply {
        let caps = self.capabilities();
        self.untagged(&format!("CAPABILITY {caps}"));
        Reply::ok("Capability completed")
    }
}
