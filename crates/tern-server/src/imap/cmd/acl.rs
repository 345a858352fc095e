//! The ACL commands (RFC 4314 §3): SETACL, DELETEACL, GETACL, LISTRIGHTS,
//! MYRIGHTS, on the lists Courier keeps ([`crate::imap::acl`]).

use crate::imap::acl::{stored_identifier, wire_identifier};
use crate::imap::namespace::Target;
use crate::imap::session::{blocking, Reply, Session};
use tern_imap_proto::acl::AclCommand;
use tern_imap_proto::response::Code;
use tern_imap_proto::wire;
use tern_maildir::acl::{self, Rights};

/// The rights LISTRIGHTS offers one by one (RFC 4314 letters, and the
/// obsolete `c` and `d` RFC 2086 clients know).
const EACH_RIGHT: &str = "l r s w i p k x t e a c d";

impl Session {
    pub(crate) async fn acl_command(&mut self, command: AclCommand) -> Reply {
        let name = command.name();
        if !self.svc.policy.acl {
            return Reply::bad(format!("{name}: access control lists are off (imap.acl)"));
        }
        let mailbox = match &command {
            AclCommand::SetAcl { mailbox, .. }
            | AclCommand::DeleteAcl { mailbox, .. }
            | AclCommand::GetAcl { mailbox }
            | AclCommand::ListRights { mailbox, .. }
            | AclCommand::MyRights { mailbox } => mailbox.clone(),
        };
        let target = match self.existing_target(&mailbox).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let reply = match command {
            AclCommand::MyRights { .. } => self.myrights(&target).await,
            AclCommand::GetAcl { .. } => self.getacl(&target).await,
            AclCommand::ListRights { identifier, .. } => {
                self.listrights(&target, &identifier).await
            }
            AclCommand::SetAcl {
                identifier, rights, ..
            } => self.setacl(&target, &identifier, Some(&rights)).await,
            AclCommand::DeleteAcl { identifier, .. } => {
                self.setacl(&target, &identifier, None).await
            }
        };
        match reply {
            Ok(()) => Reply::ok(format!("{name} completed")),
            Err(r) => r,
        }
    }

    /// The mailbox a wire name names, when it exists.
    async fn existing_target(&mut self, mailbox: &str) -> Result<Target, Reply> {
        let target = self.svc.namespace.resolve(mailbox)?;
        let md = self.maildir()?;
        match crate::imap::session::folder_exists(&md, target.folder()).await? {
            true => Ok(target),
            false => Err(Reply::no(Some(Code::Nonexistent), "Mailbox does not exist")),
        }
    }

    fn quoted_name(&self, target: &Target) -> Vec<u8> {
        let mut out = Vec::new();
        wire::mailbox(&mut out, &self.svc.namespace.wire_name(target));
        out
    }

    fn rights_word(out: &mut Vec<u8>, r: Rights) {
        wire::string(out, r.rfc4314().as_bytes());
    }

    async fn myrights(&mut self, target: &Target) -> Result<(), Reply> {
        let rights = self.rights_on(target).await?;
        if rights.is_empty() {
            return Err(Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"));
        }
        let mut line = b"MYRIGHTS ".to_vec();
        line.extend(self.quoted_name(target));
        line.push(b' ');
        Self::rights_word(&mut line, rights);
        self.untagged(&String::from_utf8_lossy(&line));
        Ok(())
    }

    async fn getacl(&mut self, target: &Target) -> Result<(), Reply> {
        self.require(target, b"a").await?;
        let list = self.acl_of(target).await?;
        let mut line = b"ACL ".to_vec();
        line.extend(self.quoted_name(target));
        for e in list.entries() {
            line.push(b' ');
            wire::string(&mut line, wire_identifier(&e.identifier).as_bytes());
            line.push(b' ');
            Self::rights_word(&mut line, e.rights);
        }
        self.untagged(&String::from_utf8_lossy(&line));
        Ok(())
    }

    async fn listrights(&mut self, target: &Target, identifier: &str) -> Result<(), Reply> {
        self.require(target, b"a").await?;
        let stored = stored_identifier(identifier)?;
        // What cannot be taken away: everything from administrators, `l`
        // and `a` from the owner (Courier's irrevocable rights).
        let always = match stored.as_str() {
            "administrators" | "group=administrators" => Rights::ALL,
            "owner" => Rights::of(b'l').union(Rights::of(b'a')),
            _ => Rights::NONE,
        };
        let mut line = b"LISTRIGHTS ".to_vec();
        line.extend(self.quoted_name(target));
        line.push(b' ');
        wire::string(&mut line, identifier.as_bytes());
        line.push(b' ');
        let required: String = always
            .rfc4314()
            .chars()
            .filter(|c| !"cd".contains(*c))
            .collect();
        wire::string(&mut line, required.as_bytes());
        if always != Rights::ALL {
            for r in EACH_RIGHT.split(' ') {
                let one = Rights::parse_rfc4314(r).unwrap_or(Rights::NONE);
                if !always.contains(one) {
                    line.push(b' ');
                    line.extend_from_slice(r.as_bytes());
                }
            }
        }
        self.untagged(&String::from_utf8_lossy(&line));
        Ok(())
    }

    /// SETACL (`rights` given) or DELETEACL (`None`). The list that
    /// applied (perhaps inherited) becomes the folder's own, as Courier
    /// does, changed as asked; a list that would take `l` or `a` from the
    /// owner is refused.
    async fn setacl(
        &mut self,
        target: &Target,
        identifier: &str,
        rights: Option<&str>,
    ) -> Result<(), Reply> {
        let stored = stored_identifier(identifier)?;
        let change = match rights {
            None => None,
            Some(r) => {
                let (mode, letters) = match r.as_bytes().first() {
                    Some(b'+') => (Some(true), &r[1..]),
                    Some(b'-') => (Some(false), &r[1..]),
                    _ => (None, r),
                };
                let set = Rights::parse_rfc4314(letters)
                    .map_err(|c| Reply::bad(format!("Invalid ACL right {}", c.escape_default())))?;
                Some((mode, set))
            }
        };
        self.require(target, b"a").await?;
        let Some(user) = self.user().cloned() else {
            return Err(Reply::bad("Not logged in"));
        };
        let md = self.maildir()?;
        let folder = target.folder().cloned();
        let cache = self.svc.policy.acl_cache.clone();
        let outcome = blocking(move || {
            let mut list = (*acl::effective(&md, folder.as_ref(), &cache)?).clone();
            let now = list.get(&stored).unwrap_or(Rights::NONE);
            let new = match change {
                None => Rights::NONE,
                Some((None, set)) => set,
                Some((Some(true), set)) => now.union(set),
                Some((Some(false), set)) => now.minus(set),
            };
            if change.is_none() {
                list.remove(&stored);
            } else if list.get(&stored).is_none() && list.entries().len() >= acl::MAX_ENTRIES {
                return Ok(Err(Reply::no(
                    Some(Code::Limit),
                    format!("A list holds at most {} entries", acl::MAX_ENTRIES),
                )));
            } else {
                list.set(&stored, new)?;
            }
            if !list.owner_keeps_minimum(&user.name, &user.groups) {
                return Ok(Err(Reply::no(
                    Some(Code::Cannot),
                    "The mailbox's owner must keep the l and a rights",
                )));
            }
            acl::write(&md, folder.as_ref(), &list, &cache)?;
            Ok(Ok(()))
        })
        .await?;
        outcome
    }
}
