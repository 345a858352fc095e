//! AUTHENTICATE (RFC 3501 §6.2.2, RFC 4959 SASL-IR).

use crate::imap::auth::{privacy_required, LoginAnswer};
use crate::imap::session::{End, Reply, Session};
use crate::sasl::{Outcome, Refusal};
use imap_codec::imap_types::auth::AuthMechanism;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;

impl Session {
    pub(crate) async fn authenticate(
        &mut self,
        mechanism: AuthMechanism<'static>,
        ir: Option<Vec<u8>>,
    ) -> Result<LoginAnswer, End> {
        let svc = self.svc.clone();
        // The exchange borrows the connection to talk; the context has a
        // copy of what it needs of it.
        let binding = self.conn.binding.clone();
        let ctx = crate::sasl::Context::of(
            &svc,
            "imap",
            self.peer,
            self.conn.tls_active,
            binding.as_deref(),
        );
        let name = mechanism.to_string();
        // Boxed: the exchange's state lives on the heap while it runs, not
        // in every session's future for its whole life.
        match Box::pin(crate::sasl::run(ctx, &name, ir, self)).await? {
            Outcome::Checked(result, attempted, secret) => {
                self.login_secret = secret;
                self.conclude(result, attempted).await
            }
            Outcome::Refused(r) => Ok(match r {
                Refusal::Unsupported => Reply::no(
                    Some(Code::Cannot),
                    format!("Unsupported authentication mechanism {name}"),
                ),
                Refusal::PrivacyRequired => privacy_required(),
                Refusal::Cancelled => Reply::bad("Authentication cancelled"),
                Refusal::TooLong => Reply::bad_code(Code::Limit, "SASL response too long"),
                Refusal::BadBase64 => Reply::bad("Invalid base64 in SASL response"),
                Refusal::Malformed(e) => Reply::bad(format!("Invalid SASL message: {e}")),
                Refusal::ActAsOther => Reply::no(
                    Some(Code::AuthorizationFailed),
                    "Acting as another user is not allowed",
                ),
            }
            .into()),
        }
    }
}
