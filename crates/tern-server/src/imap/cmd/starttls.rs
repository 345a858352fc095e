//! STARTTLS (RFC 3501 §6.2.1): buffered input is dropped before the
//! handshake, so nothing sent in the clear is read as if protected.

use crate::conn::ConnEnd;
use crate::imap::session::Session;
use crate::imap::session::{End, Reply};

impl Session {
    pub(crate) async fn starttls(&mut self, tag: &str) -> Result<Option<Reply>, End> {
        let Some(acceptor) = self.svc.tls.clone() else {
            return Ok(Some(Reply::bad("STARTTLS not available")));
        };
        if self.conn.tls_active {
            return Ok(Some(Reply::bad("TLS is already active")));
        }
        self.tagged(tag, &Reply::ok("Begin TLS negotiation now"));
        self.reader.framer().discard_buffered();
        match self.conn.start_tls(&acceptor, &self.svc.sasl).await {
            Ok(()) => {
                tracing::Span::current().record("tls", true);
                Ok(None)
            }
            Err(ConnEnd::Io(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Closed),
        }
    }
}
