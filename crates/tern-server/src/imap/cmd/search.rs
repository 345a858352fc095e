//! SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES).

use crate::imap::session::{compute, Reply, Session, State};
use imap_codec::imap_types::core::Charset;
use std::fmt::Write as _;
use tern_imap_proto::criteria::Criteria;
use tern_imap_proto::{imap_codec, seqset};

impl Session {
    pub(crate) async fn search(
        &mut self,
        charset: Option<Charset<'static>>,
        criteria: Criteria,
        uid: bool,
    ) -> Reply {
        let job = match self.search_job(charset.as_ref(), criteria) {
            Ok(j) => j,
            Err(r) => return r,
        };
        let found = compute(move || {
            let found = job.run().map(|hits| {
                hits.into_iter()
                    .map(|i| (job.id(i, uid), job.known[i].uid))
                    .collect::<Vec<(u32, u32)>>()
            });
            job.open.summaries.save_if_due(&job.open.folder);
            found
        })
        .await;
        let found = match found {
            Ok(Ok(h)) => h,
            Ok(Err(r)) | Err(r) => return r,
        };
        let Some((tag, opts)) = self.esearch.take() else {
            let mut line = String::from("SEARCH");
            for (h, _) in found {
                let _ = write!(line, " {h}");
            }
            self.untagged(&line);
            return Reply::ok("SEARCH completed");
        };
        let ids: Vec<u32> = found.iter().map(|(h, _)| *h).collect();
        if opts.save {
            // RFC 5182 §2.4: with MIN/MAX only, only those are saved.
            let mut uids: Vec<u32> = found.iter().map(|(_, u)| *u).collect();
            if (opts.min || opts.max) && !opts.all && !opts.count && !uids.is_empty() {
                let (lo, hi) = (uids[0], uids[uids.len() - 1]);
                uids = match (opts.min, opts.max) {
                    (true, true) if lo != hi => vec![lo, hi],
                    (true, _) => vec![lo],
                    _ => vec![hi],
                };
            }
            if let State::Selected { mailbox, .. } = &mut self.state {
                mailbox.saved = uids;
            }
        }
        // SAVE alone answers with no ESEARCH (RFC 5182 §2.4).
        if opts.min || opts.max || opts.all || opts.count {
            let mut line = format!("ESEARCH (TAG \"{tag}\")");
            if uid {
                line.push_str(" UID");
            }
            if let (Some(lo), Some(hi)) = (ids.first(), ids.last()) {
                if opts.min {
                    let _ = write!(line, " MIN {lo}");
                }
                if opts.max {
                    let _ = write!(line, " MAX {hi}");
                }
            }
            if opts.count {
                let _ = write!(line, " COUNT {}", ids.len());
            }
            if opts.all && !ids.is_empty() {
                let _ = write!(line, " ALL {}", seqset::format_compact(&ids));
            }
            self.untagged(&line);
        }
        Reply::ok("SEARCH completed")
    }
}
