//! The ordering of SORT and the threading of THREAD (RFC 5256), with
//! DISPLAYFROM and DISPLAYTO (RFC 5957); their handlers are in
//! [`super::cmd`].
//!
//! The messages are chosen as SEARCH chooses them; their sort keys and
//! thread fields come from the folder's summary cache
//! ([`crate::summaries`]), which reads a message only the first time. Ties
//! keep the mailbox order, as RFC 5256 asks.

use std::sync::Arc;

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use tern_imap_proto::imap_codec;
use tern_maildir::{Folder, MessageEntry};

use crate::summaries::{ranks_of, RankKey};
use tern_message::search_text::{decode_header_value, fold};
use tern_message::summary::{Address, Summary};

use super::search::SearchJob;

fn internal_date(folder: &Folder, entry: &MessageEntry) -> i64 {
    folder
        .internal_date(entry)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The whole-view rank table a text key uses, `None` for a numeric key.
fn rank_key(key: &SortKey) -> Option<RankKey> {
    match key {
        SortKey::Arrival | SortKey::Date | SortKey::Size => None,
        SortKey::Subject => Some(RankKey::Subject),
        SortKey::From => Some(RankKey::From),
        SortKey::To => Some(RankKey::To),
        SortKey::Cc => Some(RankKey::Cc),
        SortKey::DisplayFrom => Some(RankKey::DisplayFrom),
        SortKey::DisplayTo => Some(RankKey::DisplayTo),
    }
}

/// The text SORT compares for a text key, in i;unicode-casemap form (as
/// Dovecot sorts).
fn key_text(key: RankKey, s: &Summary) -> String {
    // The first address as ENVELOPE shows it (what is missing named as
    // there).
    let mailbox = |a: Option<Address<'_>>| a.map(|a| fold(a.mailbox)).unwrap_or_default();
    // RFC 5957: the decoded display name, else the address itself.
    let display = |a: Option<Address<'_>>| {
        a.map(|a| match a.name {
            Some(d) if !d.trim().is_empty() => fold(&decode_header_value(d.as_bytes())),
            _ if a.host.is_empty() => fold(a.mailbox),
            _ => fold(&format!("{}@{}", a.mailbox, a.host)),
        })
        .unwrap_or_default()
    };
    match key {
        RankKey::Subject => s.subject_key().to_owned(),
        RankKey::From => mailbox(s.from()),
        RankKey::To => mailbox(s.to()),
        RankKey::Cc => mailbox(s.cc()),
        RankKey::DisplayFrom => display(s.from()),
        RankKey::DisplayTo => display(s.to()),
    }
}

/// Whether a key needs the message's summary.
fn needs_header(key: &SortKey) -> bool {
    !matches!(key, SortKey::Arrival | SortKey::Size)
}

/// The positions in `known` of the hits, sorted.
///
/// Every key becomes a number per message: dates and sizes as they are,
/// texts as their rank among the texts compared (equal texts, equal
/// ranks), so that the sort itself compares numbers only. When the hits
/// are most of the folder, the ranks over the whole view are used, which
/// the view keeps for the next SORT.
pub(super) fn sort_positions(
    hits: Vec<usize>,
    criteria: &[SortCriterion],
    job: &SearchJob,
) -> Vec<usize> {
    let (known, folder, cache) = (&job.known, &job.open.folder, &job.open.summaries);
    let aligned = cache.for_view(&folder.view());
    let view = &aligned.view;
    let header = criteria.iter().any(|c| needs_header(&c.key));
    // (position in known, position in the view), both lists in UID order.
    let mut picked: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
    let mut j = 0;
    for i in hits {
        let uid = known[i].uid;
        while j < view.messages.len() && view.messages[j].uid < uid {
            j += 1;
        }
        if view.messages.get(j).is_some_and(|e| e.uid == uid) {
            picked.push((i, j));
        }
    }
    let mut summaries: Vec<Arc<Summary>> = Vec::new();
    if header {
        let positions: Vec<usize> = picked.iter().map(|(_, p)| *p).collect();
        aligned.prefetch(cache, folder, &positions);
        let mut kept = Vec::with_capacity(picked.len());
        for (i, pos) in picked {
            // A message gone meanwhile is left out.
            if let Ok(s) = aligned.get(cache, folder, pos) {
                kept.push((i, pos));
                summaries.push(s);
            }
        }
        picked = kept;
    }
    let whole_view = picked.len() * 2 >= view.messages.len();
    if whole_view && criteria.iter().any(|c| rank_key(&c.key).is_some()) {
        let all: Vec<usize> = (0..view.messages.len()).collect();
        aligned.prefetch(cache, folder, &all);
    }
    let k = criteria.len();
    let mut keys: Vec<i64> = vec![0; picked.len() * k];
    for (j, c) in criteria.iter().enumerate() {
        let column = keys.iter_mut().skip(j).step_by(k);
        match rank_key(&c.key) {
            Some(rk) if whole_view => {
                let ranks = aligned.ranks(rk, |s| key_text(rk, s));
                for (slot, (_, pos)) in column.zip(&picked) {
                    *slot = ranks.get(*pos).copied().unwrap_or(0) as i64;
                }
            }
            Some(rk) => {
                let texts: Vec<String> = summaries.iter().map(|s| key_text(rk, s)).collect();
                let ranks = ranks_of(texts.iter().map(String::as_str));
                for (slot, r) in column.zip(ranks) {
                    *slot = r as i64;
                }
            }
            None => {
                for (n, (slot, (_, pos))) in column.zip(&picked).enumerate() {
                    let entry = &view.messages[*pos];
                    *slot = match c.key {
                        SortKey::Date => summaries
                            .get(n)
                            .and_then(|s| s.date)
                            .unwrap_or_else(|| internal_date(folder, entry)),
                        SortKey::Size => folder.crlf_size(entry).map(|s| s as i64).unwrap_or(0),
                        _ => internal_date(folder, entry),
                    };
                }
            }
        }
    }
    // Ties keep the mailbox order: the position is the last key, which
    // also makes the faster unstable sort give the stable answer.
    let mut order: Vec<(usize, usize)> = picked
        .iter()
        .enumerate()
        .map(|(n, (i, _))| (n * k, *i))
        .collect();
    if let [only] = criteria {
        let rev = only.reverse;
        let mut pairs: Vec<(i64, usize)> = order.iter().map(|(at, i)| (keys[*at], *i)).collect();
        pairs.sort_unstable_by(|a, b| {
            let o = a.0.cmp(&b.0);
            if rev { o.reverse() } else { o }.then(a.1.cmp(&b.1))
        });
        return pairs.into_iter().map(|(_, i)| i).collect();
    }
    order.sort_unstable_by(|(ka, ia), (kb, ib)| {
        for (j, c) in criteria.iter().enumerate() {
            let o = keys[ka + j].cmp(&keys[kb + j]);
            let o = if c.reverse { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        ia.cmp(ib)
    });
    order.into_iter().map(|(_, i)| i).collect()
}

/// The summaries of the hits, for THREAD (a message gone meanwhile is
/// left out).
pub(super) fn thread_summaries(
    hits: &[usize],
    job: &SearchJob,
    uid: bool,
) -> Vec<(u32, i64, Arc<Summary>)> {
    let (known, folder, cache) = (&job.known, &job.open.folder, &job.open.summaries);
    let aligned = cache.for_view(&folder.view());
    // (position in known, position in the view).
    let picked: Vec<(usize, usize)> = hits
        .iter()
        .filter_map(|&i| Some((i, aligned.position(known[i].uid)?)))
        .collect();
    let positions: Vec<usize> = picked.iter().map(|&(_, pos)| pos).collect();
    aligned.prefetch(cache, folder, &positions);
    picked
        .into_iter()
        .filter_map(|(i, pos)| {
            let s = aligned.get(cache, folder, pos).ok()?;
            let sent = s
                .date
                .unwrap_or_else(|| internal_date(folder, &aligned.view.messages[pos]));
            Some((job.id(i, uid), sent, s))
        })
        .collect()
}
