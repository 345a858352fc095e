//! Access control lists (RFC 4314) as the session uses them: the rights
//! of the logged-in user on a mailbox, read from Courier's
//! `courierimapacl` files ([`tern_maildir::acl`]), and the spelling of
//! identifiers on the wire.
//!
//! Identifiers on the wire are Dovecot's (RFC 4314 leaves their form to
//! the server): a user by name (`bob`), a group as `$staff`, and
//! `anyone`, `authenticated`, `owner`, `administrators`; a `-` first
//! names a negative entry. On disk they are Courier's: `user=bob`,
//! `group=staff`, `authuser`. Courier's own `user=`/`group=` spellings are
//! accepted on the wire too, so its `maildiracl` vocabulary works.

use tern_imap_proto::response::Code;
use tern_maildir::acl::{self, Identity, Rights};

use super::namespace::Target;
use super::session::{blocking, Reply, Session};

/// The stored form of a wire identifier, or why it cannot be one.
pub(crate) fn stored_identifier(wire: &str) -> Result<String, Reply> {
    let (neg, id) = match wire.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", wire),
    };
    let bad = || {
        Reply::bad(
            "Invalid ACL identifier: a user name, $group, anyone, authenticated or owner \
             (at most 255 characters, no spaces)",
        )
    };
    if id.is_empty() || id.len() > 255 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let stored = match id {
        "anyone" | "anonymous" | "owner" | "administrators" => id.to_owned(),
        "authenticated" | "authuser" => "authuser".to_owned(),
        _ => {
            if let Some(g) = id.strip_prefix('$') {
                if g.is_empty() {
                    return Err(bad());
                }
                format!("group={g}")
            } else if id.strip_prefix("group=").is_some_and(|g| !g.is_empty())
                || id.strip_prefix("user=").is_some_and(|u| !u.is_empty())
            {
                id.to_owned()
            } else {
                format!("user={id}")
            }
        }
    };
    Ok(format!("{neg}{stored}"))
}

/// The wire form of a stored identifier.
pub(crate) fn wire_identifier(stored: &str) -> String {
    let (neg, id) = match stored.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", stored),
    };
    let shown = match id {
        "authuser" => "authenticated".to_owned(),
        _ => match (id.strip_prefix("group="), id.strip_prefix("user=")) {
            (Some(g), _) => format!("${g}"),
            // A user name that reads back as something else keeps its
            // stored spelling.
            (_, Some(u))
                if !u.starts_with('$')
                    && !u.starts_with('-')
                    && !u.contains('=')
                    && !matches!(
                        u,
                        "anyone"
                            | "anonymous"
                            | "owner"
                            | "administrators"
                            | "authenticated"
                            | "authuser"
                    ) =>
            {
                u.to_owned()
            }
            _ => id.to_owned(),
        },
    };
    format!("{neg}{shown}")
}

/// The mailbox under which `folder` is made: its parent folder, or INBOX
/// for a folder at the top (Courier's lists: creating `INBOX.A` needs the
/// create right on INBOX).
pub(crate) fn parent_of(folder: &tern_maildir::FolderName) -> Target {
    match folder.parent() {
        Some(p) => Target::Folder(p),
        None => Target::Inbox,
    }
}

impl Session {
    /// The logged-in user as the lists name them (their own mailbox: the
    /// owner).
    fn with_identity<T>(&self, f: impl FnOnce(&Identity<'_>) -> T) -> Option<T> {
        let user = self.user()?;
        Some(f(&Identity {
            user: &user.name,
            groups: &user.groups,
            owner: true,
        }))
    }

    /// The list that applies to `target`, read on the blocking pool.
    pub(crate) async fn acl_of(
        &mut self,
        target: &Target,
    ) -> Result<std::sync::Arc<acl::Acl>, Reply> {
        let md = self.maildir()?;
        let folder = target.folder().cloned();
        let cache = self.svc.policy.acl_cache.clone();
        blocking(move || acl::effective(&md, folder.as_ref(), &cache)).await
    }

    /// The logged-in user's rights on `target`.
    pub(crate) async fn rights_on(&mut self, target: &Target) -> Result<Rights, Reply> {
        if !self.svc.policy.acl {
            // No lists: the owner may do everything (Courier's IMAP_ACL=0).
            return Ok(Rights::ALL);
        }
        let list = self.acl_of(target).await?;
        self.with_identity(|me| list.rights_of(me))
            .ok_or_else(|| Reply::bad("Not logged in"))
    }

    /// The user's rights on `target` when they include every right of
    /// `need` (RFC 4314 letters); otherwise the refusal: the mailbox is
    /// not there for one who may neither look it up nor read it
    /// (`NONEXISTENT`), else `NOPERM` naming the missing right.
    pub(crate) async fn require(&mut self, target: &Target, need: &[u8]) -> Result<Rights, Reply> {
        let rights = self.rights_on(target).await?;
        let want = need
            .iter()
            .fold(Rights::NONE, |r, &l| r.union(Rights::of(l)));
        if rights.contains(want) {
            return Ok(rights);
        }
        if !rights.intersects(Rights::of(b'l').union(Rights::of(b'r'))) {
            return Err(Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"));
        }
        let missing = want.minus(rights);
        Err(Reply::no(
            Some(Code::NoPerm),
            format!(
                "Permission denied: this needs the {} right on the mailbox (see MYRIGHTS)",
                missing.rfc4314().trim_end_matches(['c', 'd'])
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_map_both_ways() {
        for (wire, stored) in [
            ("bob", "user=bob"),
            ("-bob", "-user=bob"),
            ("$staff", "group=staff"),
            ("-$staff", "-group=staff"),
            ("anyone", "anyone"),
            ("owner", "owner"),
            ("administrators", "administrators"),
            ("authenticated", "authuser"),
        ] {
            assert_eq!(
                stored_identifier(wire).ok().as_deref(),
                Some(stored),
                "{wire}"
            );
            assert_eq!(wire_identifier(stored), wire, "{stored}");
        }
        assert_eq!(
            stored_identifier("user=bob").ok().as_deref(),
            Some("user=bob")
        );
        assert_eq!(
            stored_identifier("group=ops").ok().as_deref(),
            Some("group=ops")
        );
        assert_eq!(wire_identifier("user=owner"), "user=owner");
        for bad in ["", "-", "$", "a b", "a\nb", "-$"] {
            assert!(stored_identifier(bad).is_err(), "{bad:?}");
        }
    }
}
