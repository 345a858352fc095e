//! EXPUNGE and UID EXPUNGE (RFC 3501 §6.4.3, RFC 4315).

use crate::imap::selected::expunge_deleted;
use crate::imap::session::{End, Reply, Session, State};
use imap_codec::imap_types::sequence::SequenceSet;
use rustc_hash::FxHashSet as HashSet;
use tern_imap_proto::response::Code;
use tern_imap_proto::{imap_codec, seqset};
use tern_maildir::acl::Rights;

impl Session {
    pub(crate) async fn expunge(&mut self, only: Option<SequenceSet>) -> Result<Reply, End> {
        let State::Selected { mailbox, .. } = &self.state else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if mailbox.read_only {
            return Ok(Reply::no(Some(Code::ReadOnly), "Mailbox is read-only"));
        }
        if !mailbox.rights.contains(Rights::of(b'e')) {
            return Ok(Reply::no(
                Some(Code::NoPerm),
                "Permission denied: EXPUNGE needs the e right on the mailbox (see MYRIGHTS)",
            ));
        }
        let open = mailbox.open.clone();
        let allowed: HashSet<u32> = match &only {
            Some(set) => seqset::resolve_uids_by(set, &mailbox.known, |k| k.uid)
                .into_iter()
                .map(|i| mailbox.known[i].uid)
                .collect(),
            None => mailbox.known.iter().map(|k| k.uid).collect(),
        };
        match expunge_deleted(open, allowed).await {
            Ok(()) => Ok(Reply::ok("EXPUNGE completed")),
            Err(r) => Ok(r),
        }
    }
}
