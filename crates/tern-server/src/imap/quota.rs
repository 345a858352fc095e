//! QUOTA (RFC 2087, RFC 9208): one quota root per user, `ROOT` as
//! Courier-IMAP names it, over the Maildir++ `maildirsize` with the
//! STORAGE (units of 1024 octets) and MESSAGE resources.

use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::extensions::quota::{QuotaSet, Resource};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_imap_proto::wire;
use tern_maildir::quota::{self, QuotaSpec, Usage};

use super::session::{blocking, Reply, Session};
use crate::users::User;

/// The name of the one quota root.
const ROOT: &str = "ROOT";

fn astring_text(a: &AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).into_owned()
}

/// `* QUOTA "ROOT" (STORAGE used limit MESSAGE used limit)`.
fn quota_line(spec: QuotaSpec, usage: Usage) -> String {
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
async fn quota_state(user: Option<User>) -> Result<Option<(QuotaSpec, Usage)>, Reply> {
    let Some(user) = user else {
        return Err(Reply::bad("Not logged in"));
    };
    blocking(move || quota::usage(user.maildir.root(), user.quota)).await
}

impl Session {
    pub(crate) async fn getquotaroot(&mut self, mailbox: Mailbox<'static>) -> Reply {
        let target = match self.svc.namespace.resolve_mailbox(&mailbox) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let Some(user) = self.user() else {
            return Reply::bad("Not logged in");
        };
        match super::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        let state = match quota_state(self.user().cloned()).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut line = b"QUOTAROOT ".to_vec();
        wire::mailbox(&mut line, &self.svc.namespace.wire_name(&target));
        if state.is_some() {
            line.extend_from_slice(format!(" \"{ROOT}\"").as_bytes());
        }
        self.untagged(&String::from_utf8_lossy(&line));
        if let Some((spec, usage)) = state {
            self.untagged(&quota_line(spec, usage));
        }
        Reply::ok("GETQUOTAROOT completed")
    }

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

    pub(crate) async fn setquota(
        &mut self,
        root: AString<'static>,
        quotas: Vec<QuotaSet<'static>>,
    ) -> Reply {
        if !self.svc.policy.allow_setquota {
            return Reply::no(Some(Code::NoPerm), "Quotas are set by the administrator");
        }
        if astring_text(&root) != ROOT {
            return Reply::no(Some(Code::Nonexistent), "No such quota root");
        }
        let mut spec = QuotaSpec::default();
        for q in &quotas {
            match &q.resource {
                Resource::Storage => spec.bytes = q.limit.saturating_mul(1024),
                Resource::Message => spec.messages = q.limit,
                other => {
                    return Reply::no(
                        Some(Code::Cannot),
                        format!("Resource {other} is not supported"),
                    )
                }
            }
        }
        let Some(user) = self.user().cloned() else {
            return Reply::bad("Not logged in");
        };
        let new = (spec.bytes > 0 || spec.messages > 0).then_some(spec);
        let res = blocking(move || {
            quota::set(user.maildir.root(), new)?;
            quota::usage(user.maildir.root(), None)
        })
        .await;
        match res {
            Ok(Some((spec, usage))) => {
                self.untagged(&quota_line(spec, usage));
                Reply::ok("SETQUOTA completed")
            }
            Ok(None) => Reply::ok("SETQUOTA completed, no quota"),
            Err(r) => r,
        }
    }
}
