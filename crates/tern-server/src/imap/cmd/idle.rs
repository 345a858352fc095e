//! IDLE (RFC 2177): changes announced as they happen until DONE.

use crate::imap::session::{End, Reply, Session, State};
use tern_imap_proto::framing;

impl Session {
    /// IDLE (RFC 2177): updates are pushed until the client sends DONE.
    pub(crate) async fn idle(&mut self) -> Result<Option<Reply>, End> {
        if let State::Selected { mailbox, .. } = &self.state {
            mailbox.open.watch();
        }
        self.conn.out.extend_from_slice(b"+ idling\r\n");
        let mut shutdown = self.svc.shutdown.clone();
        loop {
            let open = match &self.state {
                State::Selected { mailbox, .. } => Some(mailbox.open.clone()),
                _ => None,
            };
            enum Woke {
                Line(Option<Vec<u8>>),
                Change,
                Shutdown,
            }
            // The session has no timer of its own: the folder's change
            // signal carries in-process changes, inotify events and the
            // folder's safety-net rescan (see crate::folders).
            let notified = async {
                match &open {
                    Some(o) => o.changed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(notified);
            // Listening starts before the folder is looked at, so that a
            // change in between still wakes the session.
            let already = futures_util::FutureExt::now_or_never(notified.as_mut()).is_some();
            self.announce(true).await;
            self.flush().await?;
            if matches!(self.state, State::Logout) {
                return Err(End::Closed);
            }
            if already {
                continue;
            }
            let woke = tokio::select! {
                line = self.read_line() => Woke::Line(line?),
                _ = &mut notified => Woke::Change,
                _ = shutdown.changed() => Woke::Shutdown,
            };
            match woke {
                Woke::Shutdown => {
                    self.conn
                        .out
                        .extend_from_slice(b"* BYE Server shutting down\r\n");
                    self.flush().await?;
                    return Err(End::Closed);
                }
                Woke::Line(line) => {
                    let ok = line
                        .as_deref()
                        .map(framing::strip_eol)
                        .is_some_and(|l| l.eq_ignore_ascii_case(b"DONE"));
                    return Ok(Some(if ok {
                        Reply::ok("IDLE terminated")
                    } else {
                        Reply::bad("Expected DONE")
                    }));
                }
                Woke::Change => {}
            }
        }
    }
}
