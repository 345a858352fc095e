//! The per-folder cache of message summaries (ENVELOPE, BODY,
//! BODYSTRUCTURE, sort and thread fields; see [`tern_message::summary`]).
//!
//! A summary is keyed by the message's unique name: Maildir never changes a
//! message's content under one name, so an entry is right for as long as
//! the message exists. The cache lives in memory for every session of the
//! folder and on disk in `tern.cache` beside the messages, so a restart
//! does not re-read 100,000 files. It is only a cache: a missing, stale or
//! damaged file is rebuilt from the messages (and the log says so); entries
//! of messages that are gone are dropped when it is written. Several
//! processes may write it; the last write wins, which loses nothing but
//! work.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;
use tern_maildir::unique::{read_nofollow, write_atomic_with};
use tern_maildir::{Folder, FolderView, MaildirError, MessageEntry};
use tern_message::summary::{decode_cache, encode_cache_entry, summarize, Summary, CACHE_MAGIC};

/// The cache file in the folder's directory.
pub const FILE: &str = "tern.cache";

/// Summaries added since the last write before another write is worth it.
const SAVE_AFTER: usize = 64;

/// Fewer missing summaries than this are made on one thread.
const PARALLEL_FROM: usize = 64;

/// Writes are at least this far apart while summaries keep coming.
const SAVE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    map: HashMap<Arc<str>, Arc<Summary>>,
    saved_at: Option<Instant>,
}

/// The summaries of one folder.
#[derive(Debug, Default)]
pub struct SummaryCache {
    state: Mutex<State>,
    dirty: AtomicUsize,
    /// A write is running in the background.
    saving: Arc<AtomicBool>,
    /// How long the last write took, in milliseconds.
    last_cost_ms: Arc<AtomicU64>,
    /// The summaries of the folder's current view, by position.
    aligned: Mutex<Option<Arc<ViewSummaries>>>,
    /// Cache writes running at once, shared by every folder of the process
    /// (see [`Writers`]).
    writers: Writers,
}

/// How many cache writes may run at once in the whole process: each runs
/// on a thread of its own, and a thousand folders due at once must not
/// start a thousand threads. A write that finds no room is not started; its
/// summaries stay dirty and are written by a later save.
#[derive(Debug, Clone)]
pub struct Writers {
    running: Arc<AtomicUsize>,
    max: usize,
}

/// Cache writes at once in the process.
pub const MAX_CACHE_WRITERS: usize = 2;

impl Default for Writers {
    fn default() -> Self {
        static SHARED: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();
        Writers {
            running: SHARED.get_or_init(Default::default).clone(),
            max: MAX_CACHE_WRITERS,
        }
    }
}

impl Writers {
    /// Takes a place, if one is free.
    fn try_take(&self) -> bool {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A text sort key whose ranks over a whole view are kept (see
/// [`ViewSummaries::ranks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RankKey {
    /// SORT SUBJECT: the base subject.
    Subject,
    /// SORT FROM: the first From mailbox.
    From,
    /// SORT TO: the first To mailbox.
    To,
    /// SORT CC: the first Cc mailbox.
    Cc,
    /// SORT DISPLAYFROM (RFC 5957).
    DisplayFrom,
    /// SORT DISPLAYTO (RFC 5957).
    DisplayTo,
}

/// The summaries of one view of a folder, by position in the view.
///
/// Commands over many messages (FETCH 1:*, SEARCH, SORT, THREAD) look a
/// summary up by position here; the lookup by file name in the cache's map
/// happens once per message and view, not once per command. When the view
/// changes, the summaries of the messages that stay are carried over.
#[derive(Debug)]
pub struct ViewSummaries {
    /// The view the positions are in.
    pub view: Arc<FolderView>,
    /// Shared by the views that hold the same messages (a flag change
    /// makes a new view of the same messages).
    shared: Arc<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<OnceLock<Arc<Summary>>>,
    /// Ranks of text sort keys over every message of the view (equal
    /// texts equal ranks), built by the first SORT that needs them: a
    /// SORT of a large folder then compares numbers only.
    ranks: Mutex<HashMap<RankKey, Arc<Vec<u32>>>>,
}

/// Whether two views hold the same messages in the same order.
fn same_messages(a: &FolderView, b: &FolderView) -> bool {
    a.messages.len() == b.messages.len()
        && a.messages
            .iter()
            .zip(&b.messages)
            .all(|(x, y)| x.uid == y.uid && Arc::ptr_eq(&x.base, &y.base))
}

impl ViewSummaries {
    /// The position of the message with this UID.
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.view
            .messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
    }

    /// The summary of the message at `pos` (from the folder's cache, or
    /// from the message file the first time).
    ///
    /// # Errors
    /// As [`SummaryCache::get`]; [`MaildirError::MessageGone`] for a
    /// position outside the view.
    pub fn get(
        &self,
        cache: &SummaryCache,
        folder: &Folder,
        pos: usize,
    ) -> Result<Arc<Summary>, MaildirError> {
        let (Some(slot), Some(entry)) = (self.shared.slots.get(pos), self.view.messages.get(pos))
        else {
            return Err(MaildirError::MessageGone);
        };
        if let Some(s) = slot.get() {
            return Ok(s.clone());
        }
        let s = cache.get(folder, entry)?;
        Ok(slot.get_or_init(|| s).clone())
    }

    /// Makes sure the summaries of the messages at `positions` are here,
    /// summarizing the missing ones on all cores when there are many (the
    /// first FETCH of ENVELOPE or BODYSTRUCTURE over a large folder reads
    /// every message).
    pub fn prefetch(&self, cache: &SummaryCache, folder: &Folder, positions: &[usize]) {
        let missing: Vec<usize> = positions
            .iter()
            .copied()
            .filter(|&p| self.shared.slots.get(p).is_some_and(|s| s.get().is_none()))
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        if missing.len() < PARALLEL_FROM || threads < 2 {
            for p in missing {
                let _ = self.get(cache, folder, p);
            }
            return;
        }
        let per = missing.len().div_ceil(threads);
        std::thread::scope(|scope| {
            for part in missing.chunks(per) {
                scope.spawn(move || {
                    for &p in part {
                        let _ = self.get(cache, folder, p);
                    }
                });
            }
        });
    }

    /// As [`ViewSummaries::get`], borrowed: no reference count is touched,
    /// which matters when a command walks 100,000 summaries.
    ///
    /// # Errors
    /// As [`ViewSummaries::get`].
    pub fn get_ref(
        &self,
        cache: &SummaryCache,
        folder: &Folder,
        pos: usize,
    ) -> Result<&Summary, MaildirError> {
        let Some(slot) = self.shared.slots.get(pos) else {
            return Err(MaildirError::MessageGone);
        };
        if slot.get().is_none() {
            // Fills the slot.
            self.get(cache, folder, pos)?;
        }
        slot.get().map(|s| &**s).ok_or(MaildirError::MessageGone)
    }

    /// The ranks of `key` over the whole view, built with `text` (the
    /// key's text of one summary) the first time.
    pub fn ranks(&self, key: RankKey, text: impl Fn(&Summary) -> String) -> Arc<Vec<u32>> {
        if let Some(r) = self.lock_ranks().get(&key) {
            return r.clone();
        }
        let texts: Vec<String> = self
            .shared
            .slots
            .iter()
            .map(|s| s.get().map(|s| text(s)).unwrap_or_default())
            .collect();
        let ranks = Arc::new(ranks_of(texts.iter().map(String::as_str)));
        self.lock_ranks().insert(key, Arc::clone(&ranks));
        ranks
    }

    fn lock_ranks(&self) -> std::sync::MutexGuard<'_, HashMap<RankKey, Arc<Vec<u32>>>> {
        self.shared.ranks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn load(dir: &Path) -> HashMap<Arc<str>, Arc<Summary>> {
    let path = dir.join(FILE);
    let data = match read_nofollow(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), cause = %e, "summary cache unreadable; rebuilding it from the messages");
            return HashMap::default();
        }
    };
    let parsed = decode_cache(&data).map(|entries| {
        entries
            .into_iter()
            .map(|(base, s)| (Arc::from(base), Arc::new(s)))
            .collect::<HashMap<Arc<str>, Arc<Summary>>>()
    });
    parsed.unwrap_or_else(|| {
        tracing::warn!(file = %path.display(), "summary cache damaged or of an older format; rebuilding it from the messages");
        let _ = std::fs::remove_file(&path);
        HashMap::default()
    })
}

/// The rank of each text among the distinct texts, in byte order (equal
/// texts, equal ranks): each distinct text is compared once, however many
/// messages share it.
pub fn ranks_of<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<u32> {
    let mut distinct: HashMap<&str, u32> = HashMap::default();
    let ids: Vec<u32> = texts
        .map(|t| {
            let n = distinct.len() as u32;
            *distinct.entry(t).or_insert(n)
        })
        .collect();
    let mut sorted: Vec<(&str, u32)> = distinct.into_iter().collect();
    sorted.sort_unstable();
    let mut rank_of = vec![0u32; sorted.len()];
    for (r, (_, id)) in sorted.iter().enumerate() {
        rank_of[*id as usize] = r as u32;
    }
    ids.iter().map(|id| rank_of[*id as usize]).collect()
}

impl SummaryCache {
    /// The summaries of `view` (the folder's current view) by position.
    pub fn for_view(&self, view: &Arc<FolderView>) -> Arc<ViewSummaries> {
        let mut aligned = self.aligned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = aligned.as_ref() {
            if Arc::ptr_eq(&a.view, view) {
                return a.clone();
            }
        }
        if let Some(a) = aligned.as_ref().filter(|a| same_messages(&a.view, view)) {
            let a = Arc::new(ViewSummaries {
                view: view.clone(),
                shared: a.shared.clone(),
            });
            *aligned = Some(a.clone());
            return a;
        }
        let slots: Vec<OnceLock<Arc<Summary>>> = match aligned.as_ref() {
            // Both views are in UID order: carry over what stays.
            Some(old) => {
                let mut j = 0;
                view.messages
                    .iter()
                    .map(|m| {
                        while j < old.view.messages.len() && old.view.messages[j].uid < m.uid {
                            j += 1;
                        }
                        let slot = OnceLock::new();
                        if let (Some(o), Some(s)) =
                            (old.view.messages.get(j), old.shared.slots.get(j))
                        {
                            if o.uid == m.uid && o.base == m.base {
                                if let Some(s) = s.get() {
                                    let _ = slot.set(s.clone());
                                }
                            }
                        }
                        slot
                    })
                    .collect()
            }
            None => view.messages.iter().map(|_| OnceLock::new()).collect(),
        };
        let a = Arc::new(ViewSummaries {
            view: view.clone(),
            shared: Arc::new(Slots {
                slots,
                ranks: Mutex::new(HashMap::default()),
            }),
        });
        *aligned = Some(a.clone());
        a
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The summary of a message, from the cache or from the message file.
    ///
    /// # Errors
    /// As [`Folder::read`] (the message is gone, I/O).
    pub fn get(&self, folder: &Folder, entry: &MessageEntry) -> Result<Arc<Summary>, MaildirError> {
        {
            let mut st = self.lock();
            if !st.loaded {
                st.map = load(folder.dir());
                st.loaded = true;
            }
            if let Some(s) = st.map.get(&entry.base) {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(summarize(&crate::imap::wire_form(folder, entry)?));
        self.lock().map.insert(entry.base.clone(), s.clone());
        self.dirty.fetch_add(1, Ordering::Relaxed);
        Ok(s)
    }

    /// Gives back the memory of the summaries (writing the new ones to
    /// `tern.cache` first); the next command loads them from there again.
    pub fn unload(&self, folder: &Folder) {
        self.save(folder, true);
        if self.dirty.load(Ordering::Relaxed) > 0 {
            // A write already under way took its snapshot before these
            // summaries were made: they stay until a later sweep can write
            // them, rather than being computed again next time.
            return;
        }
        let mut st = self.lock();
        st.map = HashMap::default();
        st.loaded = false;
        drop(st);
        *self.aligned.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How many summaries are in memory.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no summary is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the cache when enough is new and the last write is not too
    /// recent; call it after a command that summarized messages. Errors
    /// are logged: the cache is only a cache.
    ///
    /// The whole file is rewritten each time (94 MB for 100,000 messages),
    /// so writes are kept at least ten times as far apart as the last one
    /// took, and at least a second.
    pub fn save_if_due(&self, folder: &Folder) {
        self.save(folder, false);
    }

    /// Writes the cache in the background if anything is new: at once
    /// when `now`, else when [`SummaryCache::save_if_due`] says so.
    fn save(&self, folder: &Folder, now: bool) {
        let dirty = self.dirty.load(Ordering::Relaxed);
        if dirty == 0 {
            return;
        }
        let mut st = self.lock();
        let due = dirty >= SAVE_AFTER || st.saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY);
        let gap =
            Duration::from_millis(self.last_cost_ms.load(Ordering::Relaxed).saturating_mul(10))
                .max(Duration::from_secs(1));
        if !now && (!due || st.saved_at.is_some_and(|t| t.elapsed() < gap)) {
            return;
        }
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        if !self.writers.try_take() {
            self.saving.store(false, Ordering::Release);
            return;
        }
        let view = folder.view();
        // Only messages that still exist are kept and written.
        let present: std::collections::HashSet<&str> =
            view.messages.iter().map(|m| &*m.base).collect();
        st.map.retain(|base, _| present.contains(&**base));
        let list: Vec<(Arc<str>, Arc<Summary>)> = view
            .messages
            .iter()
            .filter_map(|m| st.map.get(&m.base).map(|s| (m.base.clone(), s.clone())))
            .collect();
        st.saved_at = Some(Instant::now());
        self.dirty.store(0, Ordering::Relaxed);
        drop(st);
        // Encoding and writing a large folder's cache takes a while: it is
        // done beside the command, never in its way.
        let path = folder.dir().join(FILE);
        let saving = self.saving.clone();
        let cost = self.last_cost_ms.clone();
        let writers = self.writers.clone();
        let (saving2, writers2) = (saving.clone(), writers.clone());
        let spawned = std::thread::Builder::new()
            .name("cache-write".into())
            .spawn(move || {
                let began = Instant::now();
                // Streamed through a buffer: the file of a large folder is
                // never held in memory whole.
                let written = write_atomic_with(&path, |w| {
                    w.write_all(CACHE_MAGIC)?;
                    let mut out = Vec::with_capacity(4096);
                    for (base, s) in &list {
                        out.clear();
                        encode_cache_entry(&mut out, base, s);
                        w.write_all(&out)?;
                    }
                    Ok(())
                });
                if let Err(e) = written {
                    tracing::warn!(cause = %e, "summary cache not written");
                }
                let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                cost.store(ms, Ordering::Relaxed);
                writers.give_back();
                saving.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            // No thread (the process is at its limit): the summaries stay
            // dirty for a later save.
            tracing::warn!(cause = %e, "summary cache write not started");
            self.dirty.fetch_add(1, Ordering::Relaxed);
            writers2.give_back();
            saving2.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_maildir::folder::MoveNew;

    /// Summaries made after a cache write began are not in that write: an
    /// unload then keeps them (for a later sweep) instead of losing them.
    /// A save that finds every writer place taken starts no thread and
    /// keeps its summaries for later.
    #[test]
    fn cache_writes_at_once_are_bounded() {
        let dir = crate::test_support::maildir_with_one_message("s");
        let folder = Folder::new(dir.path().to_owned());
        let view = folder.refresh(MoveNew::No).unwrap();
        let cache = SummaryCache {
            writers: Writers {
                running: Arc::new(AtomicUsize::new(1)),
                max: 1,
            },
            ..SummaryCache::default()
        };
        cache.get(&folder, &view.messages[0]).unwrap();
        cache.unload(&folder);
        assert_eq!(cache.len(), 1, "not written: no writer place");
        assert!(!folder.dir().join(FILE).exists());
        cache.writers.give_back();
        cache.unload(&folder);
        assert!(cache.is_empty(), "written once a place is free");
    }

    #[test]
    fn unload_keeps_what_a_running_write_missed() {
        let dir = crate::test_support::maildir_with_one_message("s");
        let folder = Folder::new(dir.path().to_owned());
        let view = folder.refresh(MoveNew::No).unwrap();
        let cache = SummaryCache::default();
        cache.get(&folder, &view.messages[0]).unwrap();
        cache.saving.store(true, Ordering::Release);
        cache.unload(&folder);
        assert_eq!(cache.len(), 1, "kept while another write runs");
        cache.saving.store(false, Ordering::Release);
        cache.unload(&folder);
        assert!(cache.is_empty(), "written, then given back");
    }
}
