//! Answers of a backend kept for a short while: found accounts and unknown
//! names alike.
//!
//! The key is every value the backend is asked with (the SQL query's bound
//! values; the LDAP filter's login name), so two logins share an entry only
//! when the backend would be asked the very same question. A hit spares
//! only the question: the password is still checked at every login (the
//! stored hash compared, or the bind made), and an entry is never used past
//! its lifetime, so a changed password or account stops being seen by then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::passwd_file::UserEntry;

/// An answer and when it was had.
type Cached = (Instant, Option<UserEntry>);

/// A bounded cache of answers.
#[derive(Debug)]
pub(crate) struct AnswerCache {
    ttl: Duration,
    max: usize,
    entries: std::sync::Mutex<HashMap<Vec<String>, Cached>>,
}

impl AnswerCache {
    /// A cache keeping answers `ttl`, at most `max` of them; none when
    /// either is zero.
    pub(crate) fn new(ttl: Duration, max: usize) -> Option<AnswerCache> {
        (!ttl.is_zero() && max > 0).then(|| AnswerCache {
            ttl,
            max,
            entries: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The live answer to the question `key`, if one is kept.
    pub(crate) fn get(&self, key: &[String]) -> Option<Option<UserEntry>> {
        let map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some((at, e)) if at.elapsed() < self.ttl => Some(e.clone()),
            _ => None,
        }
    }

    /// Keeps `value` as the answer to `key`.
    pub(crate) fn put(&self, key: Vec<String>, value: Option<UserEntry>) {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.max {
                // Still full of live entries: start over rather than grow.
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }
}
