//! COPY, MOVE and their UID forms (RFC 3501 §6.4.7, RFC 6851, RFC 4315 COPYUID).

use crate::imap::session::{blocking, End, Reply, Session, State};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, seqset};
use tern_maildir::acl::Rights;
use tern_maildir::folder::{AppendSource, MoveNew, NewMessage};
use tern_maildir::FolderName;

impl Session {
    pub(crate) async fn copy(
        &mut self,
        set: SequenceSet,
        target: Mailbox<'static>,
        uid: bool,
        is_move: bool,
    ) -> Result<Reply, End> {
        let verb = if is_move { "MOVE" } else { "COPY" };
        let indices = match self.indices(&set, uid) {
            Ok(i) => i,
            Err(r) => return Ok(r),
        };
        let target = match self.svc.namespace.resolve_mailbox(&target) {
            Ok(t) => t,
            Err(r) => return Ok(r),
        };
        let State::Selected { mailbox, user } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if is_move && mailbox.read_only {
            return Ok(Reply::no(Some(Code::ReadOnly), "Mailbox is read-only"));
        }
        match crate::imap::session::folder_exists(&user.maildir, target.folder()).await {
            Ok(true) => {}
            Ok(false) => return Ok(Reply::no(Some(Code::TryCreate), "Mailbox does not exist")),
            Err(r) => return Ok(r),
        }
        // RFC 4314 §4: `i` on the target; a MOVE takes the messages out of
        // the source as STORE \Deleted and EXPUNGE would (`t` and `e`).
        let from_rights = mailbox.rights;
        if is_move && !from_rights.contains(Rights::of(b't').union(Rights::of(b'e'))) {
            return Ok(Reply::no(
                Some(Code::NoPerm),
                "Permission denied: MOVE needs the t and e rights on the selected mailbox",
            ));
        }
        if let Err(r) = self.require(&target, b"i").await {
            return Ok(r);
        }
        let State::Selected { mailbox, user } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let dest = self
            .svc
            .folders
            .get(&user.maildir.folder_dir(target.folder()));
        let src = mailbox.open.clone();
        let uids: Vec<u32> = indices
            .iter()
            .filter_map(|&i| mailbox.known.get(i).map(|k| k.uid))
            .collect();
        if uids.is_empty() {
            return Ok(Reply::ok(format!("{verb} completed, nothing to do")));
        }
        let (s, d) = (src.clone(), dest.clone());
        let (root, quota) = (user.maildir.root().to_owned(), user.quota);
        let dest_folder = target.folder().cloned();
        // A MOVE between folders that both count changes no total.
        let src_counts = src
            .folder
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| FolderName::is_folder_dir(n))
            .is_none_or(|n| tern_maildir::quota::counts_folder(&n));
        let res = blocking(move || {
            let view = s.folder.view();
            let mut batch = Vec::new();
            let mut src_uids = Vec::new();
            for u in &uids {
                let Some(e) = view.find(*u) else { continue };
                let Ok(source) = s.folder.existing(e) else {
                    continue;
                };
                let size = match tern_maildir::flags::name_field(&e.base, 'S') {
                    Some(sz) => sz,
                    None => match s.folder.stat(e) {
                        Ok(m) => m.len,
                        Err(_) => continue,
                    },
                };
                let crlf_size = match s.folder.crlf_size(e) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                batch.push(NewMessage {
                    source: AppendSource::Existing(source),
                    size,
                    crlf_size,
                    flags: e.flags.clone(),
                    keywords: e.keywords.clone(),
                    internal_date: s.folder.internal_date(e).ok(),
                });
                src_uids.push(*u);
            }
            if !(is_move && src_counts) {
                let bytes = batch.iter().map(|m| m.size).sum();
                let n = batch.len() as u64;
                tern_maildir::quota::ensure_room(&root, quota, dest_folder.as_ref(), bytes, n)?;
            }
            let new_uids = d.folder.append(batch)?;
            let dview = d.folder.refresh(MoveNew::No)?;
            if is_move {
                s.folder.expunge(&src_uids)?;
            }
            Ok((src_uids, new_uids, dview.uidvalidity))
        })
        .await;
        let (src_uids, new_uids, uidvalidity) = match res {
            Ok(v) => v,
            Err(r) => return Ok(r),
        };
        dest.changed.notify_waiters();
        src.changed.notify_waiters();
        if src_uids.is_empty() {
            return Ok(Reply::no(
                Some(Code::ExpungeIssued),
                "The messages no longer exist",
            ));
        }
        let code = Code::CopyUid {
            uidvalidity,
            source: seqset::format_compact(&src_uids),
            dest: seqset::format_compact(&new_uids),
        };
        if is_move {
            self.untagged(&format!("OK [{code}] Moved"));
            Ok(Reply::ok("MOVE completed"))
        } else {
            Ok(Reply::ok_code(code, "COPY completed"))
        }
    }
}
