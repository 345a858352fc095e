//! GETQUOTA (RFC 2087, RFC 9208).

use crate::imap::quota::{astring_text, quota_line, quota_state, ROOT};
use crate::imap::session::{Reply, Session};
use imap_codec::imap_types::core::AString;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

impl Session {
    pub(crate) async fn getquota(&mut self, root: AString<'static>) -> Reply {
        if astring_text(&root) != ROOT {
            return Reply::no(Some(Code::Nonexistent), "No such quota root");
        }
        match quota_state(self.user().cloned()).await {
            Ok(Some((spec, usage))) => {
                self.untagged(&quota_line(spec, usage));
                Reply::ok("GETQUOTA completed")
            }
            Ok(None) => Reply::no(Some(Code::Nonexistent), "No quota is set"),
            Err(r) => r,
        }
    }
}
