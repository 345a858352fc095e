//! What the QUOTA commands (RFC 2087, RFC 9208; handlers in
//! [`super::cmd`]) share: one quota root per user, `ROOT` as
//! Courier-IMAP names it, over the Maildir++ `maildirsize` with the
//! STORAGE (units of 1024 octets) and MESSAGE resources.

use imap_codec::imap_types::core::AString;
use tern_imap_proto::imap_codec;
use tern_maildir::quota::{self, QuotaSpec, Usage};

use super::session::{blocking, Reply};
use crate::users::User;

/// The name of the one quota root.
pub(super) const ROOT: &str = "ROOT";

pub(super) fn astring_text(a: &AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).into_owned()
}

/// `* QUOTA "ROOT" (STORAGE used limit MESSAGE used limit)`.
pub(super) fn quota_line(spec: QuotaSpec, usage: Usage) -> String {
    let mut res = Vec::new();
    if spec.bytes > 0 {
        let used = u64::try_from(usage.bytes.max(0)).unwrap_or(0) / 1024;
        res.push(format!("STORAGE {used} {}", spec.bytes / 1024));
    }
    if spec.messages > 0 {
        let used = u64::try_from(usage.messages.max(0)).unwrap_or(0);
        res.push(format!("MESSAGE {used} {}", spec.messages));
    }
    format!("QUOTA \"{ROOT}\" ({})", res.join(" "))
}

/// The user's quota and usage, `None` when there is no quota.
pub(super) async fn quota_state(user: Option<User>) -> Result<Option<(QuotaSpec, Usage)>, Reply> {
    let Some(user) = user else {
        return Err(Reply::bad("Not logged in"));
    };
    blocking(move || quota::usage(user.maildir.root(), user.quota)).await
}
