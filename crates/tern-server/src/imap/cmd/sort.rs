//! SORT (RFC 5256).

use crate::imap::session::{compute, Reply, Session};
use crate::imap::sort::sort_positions;
use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::extensions::sort::SortCriterion;
use std::fmt::Write as _;
use tern_imap_proto::criteria::Criteria;
use tern_imap_proto::imap_codec;

impl Session {
    pub(crate) async fn sort(
        &mut self,
        criteria: Vec1<SortCriterion>,
        charset: Charset<'static>,
        search: Criteria,
        uid: bool,
    ) -> Reply {
        let job = match self.search_job(Some(&charset), search) {
            Ok(j) => j,
            Err(r) => return r,
        };
        let criteria: Vec<SortCriterion> = criteria.into_inner();
        let ids = compute(move || {
            let ids = job.run().map(|hits| {
                sort_positions(hits, &criteria, &job)
                    .into_iter()
                    .map(|i| job.id(i, uid))
                    .collect::<Vec<u32>>()
            });
            job.open.summaries.save_if_due(&job.open.folder);
            ids
        })
        .await;
        let ids = match ids {
            Ok(Ok(v)) => v,
            Ok(Err(r)) | Err(r) => return r,
        };
        let mut line = String::with_capacity(5 + ids.len() * 7);
        line.push_str("SORT");
        for id in ids {
            let _ = write!(line, " {id}");
        }
        self.untagged(&line);
        Reply::ok("SORT completed")
    }
}
