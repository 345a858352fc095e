//! What STORE, COPY and MOVE (RFC 3501 §6.4.6–7, RFC 4315 UIDPLUS, RFC
//! 6851; handlers in [`super::cmd`]) share: flag conversion and message
//! sets.

use std::collections::BTreeSet;
use std::sync::Arc;

use imap_codec::imap_types::flag::{Flag as ImapFlag, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use tern_imap_proto::ids::Seq;
use tern_imap_proto::{imap_codec, seqset};
use tern_maildir::keywords::KeywordSet;
use tern_maildir::{Flag, Flags};

use super::session::{Reply, Session, State};

/// Flags named in a STORE or APPEND, split into system flags and keywords.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlagSet {
    pub system: Vec<Flag>,
    pub keywords: BTreeSet<Arc<str>>,
}

/// Converts IMAP flags; `\Recent` is ignored (it cannot be stored), any
/// other unknown system flag is refused.
pub(crate) fn convert_flags(flags: &[ImapFlag<'_>]) -> Result<FlagSet, Reply> {
    let mut set = FlagSet::default();
    for f in flags {
        match f {
            ImapFlag::Answered => set.system.push(Flag::Answered),
            ImapFlag::Deleted => set.system.push(Flag::Deleted),
            ImapFlag::Draft => set.system.push(Flag::Draft),
            ImapFlag::Flagged => set.system.push(Flag::Flagged),
            ImapFlag::Seen => set.system.push(Flag::Seen),
            ImapFlag::Keyword(k) => {
                set.keywords.insert(Arc::from(k.as_ref()));
            }
            ImapFlag::Extension(_) => {
                let name = f.to_string();
                if !name.eq_ignore_ascii_case("\\Recent") {
                    return Err(Reply::bad(format!("Invalid system flag {name}")));
                }
            }
        }
    }
    Ok(set)
}

pub(super) fn apply(
    kind: StoreType,
    flags: &Flags,
    keywords: &KeywordSet,
    change: &FlagSet,
) -> (Flags, KeywordSet) {
    let mut f = flags.clone();
    let mut k: BTreeSet<Arc<str>> = keywords.iter().cloned().collect();
    match kind {
        StoreType::Replace => {
            for fl in Flag::ALL {
                f.set(fl, change.system.contains(&fl));
            }
            k = change.keywords.clone();
        }
        StoreType::Add => {
            for fl in &change.system {
                f.set(*fl, true);
            }
            for kw in &change.keywords {
                if !k.iter().any(|x| x.eq_ignore_ascii_case(kw)) {
                    k.insert(kw.clone());
                }
            }
        }
        StoreType::Remove => {
            for fl in &change.system {
                f.set(*fl, false);
            }
            k.retain(|x| !change.keywords.iter().any(|kw| kw.eq_ignore_ascii_case(x)));
        }
    }
    (f, k.into_iter().collect::<Vec<_>>().into())
}

impl Session {
    pub(super) fn indices(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Reply> {
        let State::Selected { mailbox, .. } = &self.state else {
            return Err(Reply::bad("No mailbox selected"));
        };
        if uid {
            Ok(seqset::resolve_uids_by(set, &mailbox.known, |k| k.uid))
        } else {
            seqset::resolve_seqs(set, mailbox.known.len() as u32)
                .map(|s| s.into_iter().map(Seq::index).collect())
                .map_err(|e| Reply::bad(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_kinds() {
        let mut base = Flags::empty();
        base.set(Flag::Seen, true);
        let kws: KeywordSet = vec![Arc::from("$Work")].into();
        let change = FlagSet {
            system: vec![Flag::Flagged],
            keywords: [Arc::from("$work"), Arc::from("x")].into_iter().collect(),
        };
        let (f, k) = apply(StoreType::Add, &base, &kws, &change);
        assert!(f.contains(Flag::Seen) && f.contains(Flag::Flagged));
        assert_eq!(k.len(), 2);
        let (f, k) = apply(StoreType::Remove, &f, &k, &change);
        assert!(f.contains(Flag::Seen) && !f.contains(Flag::Flagged));
        assert!(k.is_empty());
        let (f, _) = apply(StoreType::Replace, &base, &kws, &change);
        assert!(!f.contains(Flag::Seen) && f.contains(Flag::Flagged));
    }
}
