//! SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2).

use crate::imap::selected::flag_list;
use crate::imap::session::{blocking, Reply, Selected, Session, State};
use imap_codec::imap_types::mailbox::Mailbox;
use rustc_hash::FxHashSet as HashSet;
use tern_imap_proto::imap_codec;
use tern_imap_proto::response::Code;
use tern_maildir::acl::Rights;
use tern_maildir::folder::MoveNew;

impl Session {
    pub(crate) async fn select(&mut self, mailbox: Mailbox<'static>, read_only: bool) -> Reply {
        // Any selected mailbox is deselected first, even if this fails.
        let Some(user) = self.take_user() else {
            return Reply::bad("Not logged in");
        };
        self.state = State::Authenticated { user: user.clone() };
        let target = match self.svc.namespace.resolve_mailbox(&mailbox) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let dir = user.maildir.folder_dir(target.folder());
        match crate::imap::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Reply::no(Some(Code::Nonexistent), "Mailbox does not exist"),
            Err(r) => return r,
        }
        // RFC 4314 §4: SELECT and EXAMINE need `r`; with none of the rights
        // that change the mailbox the SELECT is read-only, as Dovecot's.
        let rights = match self.require(&target, b"r").await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let changes = [b's', b't', b'w', b'e', b'i']
            .iter()
            .fold(Rights::NONE, |r, &l| r.union(Rights::of(l)));
        let examine = read_only;
        let read_only = read_only || !rights.intersects(changes);
        let open = self.svc.folders.get(&dir);
        let o = open.clone();
        let res = blocking(move || {
            let view =
                o.folder
                    .refresh_exact(if read_only { MoveNew::No } else { MoveNew::Yes })?;
            // EXAMINE reports the \Recent messages as SELECT and STATUS
            // would, but leaves them to the next SELECT.
            let recent: HashSet<u32> = if read_only {
                o.folder.peek_recent().into_iter().collect()
            } else {
                o.folder.claim_recent().into_iter().collect()
            };
            // Worked out here, off the runtime, once per view: the next
            // SELECT of the unchanged folder shares it.
            view.digest();
            Ok((view, recent, o.folder.numbering_held()))
        })
        .await;
        let (view, recent, held) = match res {
            Ok(v) => v,
            Err(r) => return r,
        };
        let digest = view.digest();
        let known = digest.states.clone();
        let keywords = digest.keywords.clone();
        let flags = flag_list(&keywords);
        self.untagged(&format!("FLAGS ({flags})"));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            let permanent = permanent_flags(&flags, rights);
            self.untagged(&format!(
                "OK [PERMANENTFLAGS ({permanent})] Flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", known.len()));
        let recent_count = if recent.is_empty() {
            0
        } else {
            known.iter().filter(|k| recent.contains(&k.uid)).count()
        };
        self.untagged(&format!("{recent_count} RECENT"));
        if let Some(first) = digest.first_unseen {
            self.untagged(&format!("OK [UNSEEN {}] First unseen", first + 1));
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", view.uidvalidity));
        self.untagged(&format!(
            "OK [UIDNEXT {}] Predicted next UID",
            view.next_uid
        ));
        if held {
            self.untagged(
                "NO [ALERT] The disk is full: new messages are not shown until there is room again",
            );
        }
        tracing::debug!(mailbox = %self.svc.namespace.wire_name(&target), read_only, "selected");
        self.state = State::Selected {
            user,
            mailbox: Box::new(Selected {
                open,
                read_only,
                rights,
                uidvalidity: view.uidvalidity,
                known,
                recent,
                keywords,
                synced: view,
                in_step: true,
                saved: Vec::new(),
            }),
        };
        if examine {
            Reply::ok_code(Code::ReadOnly, "EXAMINE completed")
        } else if read_only {
            Reply::ok_code(
                Code::ReadOnly,
                "SELECT completed, read-only: no right to change it",
            )
        } else {
            Reply::ok_code(Code::ReadWrite, "SELECT completed")
        }
    }
}

/// The flags the user's rights let them change (RFC 4314 §4): `\Seen`
/// with `s`, `\Deleted` with `t`, the others, keywords and `\*` with `w`.
fn permanent_flags(flags: &str, rights: Rights) -> String {
    let may = |l: u8| rights.contains(Rights::of(l));
    let mut out: Vec<&str> = flags
        .split(' ')
        .filter(|f| match *f {
            "\\Seen" => may(b's'),
            "\\Deleted" => may(b't'),
            _ => may(b'w'),
        })
        .collect();
    if may(b'w') {
        out.push("\\*");
    }
    out.join(" ")
}
