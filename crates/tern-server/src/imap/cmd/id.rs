//! ID (RFC 2971), in any state.

use crate::imap::session::Reply;
use crate::imap::session::Session;

impl Session {
    /// ID (RFC 2971), in any state.
    pub(crate) fn id(&mut self) -> Reply {
        self.untagged(&format!(
            "ID (\"name\" \"tern\" \"version\" \"{}\")",
            env!("CARGO_PKG_VERSION")
        ));
        Reply::ok("ID completed")
    }
}
