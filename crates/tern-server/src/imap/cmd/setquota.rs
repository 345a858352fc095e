//! SETQUOTA (RFC 2087, RFC 9208): refused, the quota is the account's.

use crate::imap::quota::{astring_text, quota_line, ROOT};
use crate::imap::session::{blocking, Reply, Session};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::extensions::quota::{QuotaSet, Resource};
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_maildir::quota::{self, QuotaSpec};

impl Session {
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
