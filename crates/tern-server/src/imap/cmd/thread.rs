//! THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.

use crate::imap::session::{compute, Reply, Session};
use crate::imap::sort::thread_summaries;
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use tern_imap_proto::criteria::Criteria;
use tern_imap_proto::imap_codec;
use tern_message::thread::{self, ThreadMessage};

impl Session {
    pub(crate) async fn thread(
        &mut self,
        algorithm: ThreadingAlgorithm<'static>,
        charset: Charset<'static>,
        search: Criteria,
        uid: bool,
    ) -> Reply {
        let references = match &algorithm {
            ThreadingAlgorithm::References => true,
            ThreadingAlgorithm::OrderedSubject => false,
            other @ ThreadingAlgorithm::Other(_) => {
                return Reply::bad(format!("Unknown threading algorithm {other}"));
            }
        };
        let job = match self.search_job(Some(&charset), search) {
            Ok(j) => j,
            Err(r) => return r,
        };
        let text = compute(move || {
            let hits = job.run()?;
            let summaries = thread_summaries(&hits, &job, uid);
            job.open.summaries.save_if_due(&job.open.folder);
            let msgs: Vec<ThreadMessage<'_>> = summaries
                .iter()
                .map(|(id, sent, s)| ThreadMessage {
                    id: *id,
                    message_id: s.message_id(),
                    references: s.references(),
                    subject_key: s.subject_key(),
                    is_reply: s.is_reply,
                    sent: *sent,
                })
                .collect();
            let threads = if references {
                thread::references(&msgs)
            } else {
                thread::ordered_subject(&msgs)
            };
            Ok(thread::format(&threads, &msgs))
        })
        .await;
        let text = match text {
            Ok(Ok(v)) => v,
            Ok(Err(r)) | Err(r) => return r,
        };
        if text.is_empty() {
            self.untagged("THREAD");
        } else {
            self.untagged(&format!("THREAD {text}"));
        }
        Reply::ok("THREAD completed")
    }
}
