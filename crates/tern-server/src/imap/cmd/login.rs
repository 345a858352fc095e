//! LOGIN (RFC 3501 §6.2.3).

use crate::imap::auth::{privacy_required, LoginAnswer};
use crate::imap::session::{End, Session};

impl Session {
    pub(crate) async fn login(&mut self, user: String, pass: Vec<u8>) -> Result<LoginAnswer, End> {
        if !self.cleartext_allowed() {
            return Ok(privacy_required().into());
        }
        self.check_credentials(user, pass).await
    }
}
