//! One Maildir folder: scanning, UID assignment, flag changes, appends,
//! expunges, all safe against other programs writing the same directory.
//!
//! ```text
//!   deliveries (MTA) ──► tmp/ ──rename──► new/
//!                                          │ refresh(MoveNew::Yes)
//!                                          ▼
//!   tern / Courier / mutt  ◄──rename──►  cur/<base>:2,<flags>
//!                                          │
//!   courierimapuiddb  <base> → UID   (rewritten under the dot-lock)
//! ```
//! A [`Folder`] is shared by every session of the process that has the folder
//! open (the server keeps one per path), so a folder of 100,000 messages is
//! scanned once, not once per session. Each refresh publishes an immutable
//! [`FolderView`]; readers keep the `Arc` they have and never block writers.
//!
//! Other programs rename files at any time (a flag change is a rename), and a
//! `readdir` that runs during a rename may report neither name. A message that
//! seems to have vanished is therefore looked for again before it is
//! reported expunged: nothing is ever reported lost by a racing rename.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::changelog::ChangeLog;
use crate::dirs::{Dirs, FileStat};
use crate::dovecot_keywords::DovecotKeywords;
use crate::error::{MaildirError, Result};
use crate::flags::{name_field, split_name, stored_as_sent, Flags};
use crate::keywords::{KeywordDb, KeywordSet};
use crate::lock::DotLock;
use crate::uiddb::UidDb;
use crate::unique::new_base_with_sizes;

/// Name of the dot-lock that serialises writers of the UID and keyword lists.
pub const LOCK_NAME: &str = "courierimapuiddb.lock";

/// Locks the folder at `dir` for numbering: Courier's lock, then tern's
/// (see [`crate::lock`]); both are released when the pair is dropped.
///
/// # Errors
/// As [`DotLock::acquire`].
fn lock_folder(dir: &Path) -> Result<(DotLock, DotLock)> {
    let courier = DotLock::acquire_courier(dir)?;
    let tern = DotLock::acquire(&dir.join(LOCK_NAME))?;
    Ok((courier, tern))
}

/// An mtime is trusted to reveal every change only once a scan started at
/// least this long after it: a change within the same clock tick leaves the
/// mtime as it was. A second where mtimes are whole seconds (NFS, some
/// file systems)...
const MTIME_DIRTY: Duration = Duration::from_secs(1);

/// ...and this much where they carry fractions of a second (ext4, xfs,
/// btrfs, tmpfs: the clock tick that stamps them is a few milliseconds).
const MTIME_DIRTY_FINE: Duration = Duration::from_millis(20);

/// How long after `mtime` a scan must have started to be sure it saw every
/// change that mtime stands for.
fn dirty_window(mtime: SystemTime) -> Duration {
    let fine = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() != 0);
    if fine {
        MTIME_DIRTY_FINE
    } else {
        MTIME_DIRTY
    }
}

/// While mtimes are not yet trusted, the disk is scanned again at most this
/// long after the last scan even when nothing seems to have changed.
const DIRTY_RESCAN_EVERY: Duration = Duration::from_secs(2);

/// One message as the folder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    /// The message's UID.
    pub uid: u32,
    /// The unique part of the file name (before `:2,`).
    pub base: Arc<str>,
    /// The current file name inside `new/` or `cur/`.
    pub file_name: Arc<str>,
    /// True while the file is still in `new/`.
    pub in_new: bool,
    /// System flags from the file name.
    pub flags: Flags,
    /// Keywords from `courierimapkeywords`.
    pub keywords: KeywordSet,
}

impl MessageEntry {
    /// The path of the message file.
    pub fn path(&self, folder_dir: &Path) -> PathBuf {
        folder_dir
            .join(if self.in_new { "new" } else { "cur" })
            .join(&*self.file_name)
    }
}

/// A message's UID and flags without its file: what an IMAP session keeps
/// of each message it has told its client about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    /// The message's UID.
    pub uid: u32,
    /// Its system flags.
    pub flags: Flags,
    /// Its keywords.
    pub keywords: KeywordSet,
}

impl MessageState {
    /// The state of a folder entry.
    pub fn of(m: &MessageEntry) -> MessageState {
        MessageState {
            uid: m.uid,
            flags: m.flags.clone(),
            keywords: m.keywords.clone(),
        }
    }
}

/// What every session selecting one view starts from, worked out once per
/// view ([`FolderView::digest`]): a SELECT of a large unchanged folder then
/// shares these instead of copying every entry (100,000 entries took a
/// millisecond per SELECT to copy and to free).
#[derive(Debug)]
pub struct ViewDigest {
    /// The view's messages as [`MessageState`]s, in UID order; a session
    /// shares them until it changes its own copy.
    pub states: Arc<Vec<MessageState>>,
    /// Every keyword some message has.
    pub keywords: BTreeSet<Arc<str>>,
    /// The 0-based position of the first message without `\Seen`.
    pub first_unseen: Option<usize>,
}

impl ViewDigest {
    fn of(messages: &[MessageEntry]) -> ViewDigest {
        let states: Vec<MessageState> = messages.iter().map(MessageState::of).collect();
        let keywords = states
            .iter()
            .flat_map(|k| k.keywords.iter().cloned())
            .collect();
        let first_unseen = states
            .iter()
            .position(|k| !k.flags.contains(crate::flags::Flag::Seen));
        ViewDigest {
            states: Arc::new(states),
            keywords,
            first_unseen,
        }
    }
}

/// The place for a view's [`ViewDigest`]. A copy of a view starts with an
/// empty one: the copy is made to be changed, and a digest carried over
/// would describe the messages before the change.
#[derive(Debug, Default)]
pub struct DigestCell(std::sync::OnceLock<ViewDigest>);

impl Clone for DigestCell {
    fn clone(&self) -> Self {
        DigestCell::default()
    }
}

/// An immutable snapshot of a folder.
#[derive(Debug, Clone, Default)]
pub struct FolderView {
    /// UIDVALIDITY of the folder.
    pub uidvalidity: u32,
    /// The UID the next message will get.
    pub next_uid: u32,
    /// Messages in UID order. Invariant: strictly ascending `uid`.
    pub messages: Vec<MessageEntry>,
    /// Which view of its folder object this is: one more for each view
    /// published, so that [`Folder::changes_between`] can say what changed
    /// since the one a session last saw.
    pub generation: u64,
    /// Worked out on first use; see [`FolderView::digest`].
    pub digest: DigestCell,
}

impl FolderView {
    /// The view's [`ViewDigest`], worked out by the first caller (it walks
    /// every message: call it off the async runtime).
    pub fn digest(&self) -> &ViewDigest {
        self.digest.0.get_or_init(|| ViewDigest::of(&self.messages))
    }

    /// The entry with this UID, if present.
    pub fn find(&self, uid: u32) -> Option<&MessageEntry> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }
}

/// Whether a refresh moves messages from `new/` to `cur/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveNew {
    /// Move them (a read-write SELECT does, as Courier-IMAP does).
    Yes,
    /// Leave them (EXAMINE, STATUS).
    No,
}

/// Where an appended message comes from.
#[derive(Debug)]
pub enum AppendSource {
    /// A finished file in the same Maildir's `tmp/`; it is renamed into place.
    TmpFile(crate::tmp::TmpFile),
    /// An existing message (COPY): hard-linked, or copied when linking fails.
    Existing(ExistingMessage),
}

/// A message of a folder, reached through that folder's checked
/// directories ([`crate::dirs`]): the source of a COPY.
#[derive(Debug, Clone)]
pub struct ExistingMessage {
    dirs: Arc<Dirs>,
    in_new: bool,
    name: Arc<str>,
    /// The name without its flags: what finds the file again after
    /// another session or program renamed it (a flag change).
    base: Arc<str>,
}

impl ExistingMessage {
    /// The current name of this message in its folder, after a rename
    /// another session or program made (a flag change, new/ to cur/):
    /// `None` when no file has its base name (expunged).
    fn relocate(&self) -> std::io::Result<Option<(Arc<str>, bool)>> {
        let mut found = None;
        for in_new in [true, false] {
            self.dirs.list(in_new, |name| {
                if let Some(name) = name.to_str() {
                    if split_name(name).0 == &*self.base {
                        found = Some((Arc::from(name), in_new));
                    }
                }
            })?;
        }
        Ok(found)
    }

    /// Puts this message into `td` as `tmp_name`: hard-linked where it is a
    /// regular file and the link works, else copied. Returns whether it was
    /// copied (its date must then be set). A file another session renamed
    /// meanwhile is found again by its base name ([`following_renames`]).
    ///
    /// # Errors
    /// [`MaildirError::MessageGone`] when the message no longer exists; I/O
    /// errors of the copy.
    fn bring_into(&self, td: &Arc<crate::tmp::TmpDir>, tmp_name: &str) -> Result<bool> {
        let failed = |e| MaildirError::io("copy", td.path().join(tmp_name), e);
        // `None`: no file of that name (renamed or removed meanwhile).
        let bring = |name: &str, in_new: bool| -> Result<Option<bool>> {
            // Only a regular file is linked: the name itself is linked, and
            // a link planted in place of a message must not become a
            // message here.
            let regular = self.dirs.stat(in_new, name).is_ok_and(|st| st.regular);
            if regular && self.dirs.link_out(in_new, name, &td.file(tmp_name)).is_ok() {
                return Ok(Some(false));
            }
            match self.dirs.open_file(in_new, name) {
                Ok(from) => copy_synced(from, td, tmp_name).map(|()| Some(true)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failed(e)),
            }
        };
        if let Some(copied) = bring(&self.name, self.in_new)? {
            return Ok(copied);
        }
        following_renames(bring, || self.relocate().map_err(failed))?
            .ok_or(MaildirError::MessageGone)
    }
}

/// One message to add to a folder.
#[derive(Debug)]
pub struct NewMessage {
    /// Where the bytes are.
    pub source: AppendSource,
    /// Size of the file as stored (LF line ends).
    pub size: u64,
    /// Size with CRLF line ends (RFC822.SIZE).
    pub crlf_size: u64,
    /// Flags to store.
    pub flags: Flags,
    /// Keywords to store.
    pub keywords: KeywordSet,
    /// INTERNALDATE, kept as the file's mtime.
    pub internal_date: Option<SystemTime>,
}

/// A change of flags and keywords for one message: what they were when
/// the change was worked out, and what they are to be. Only the
/// difference is applied, so a change another session or program made in
/// between is kept rather than undone.
#[derive(Debug, Clone)]
pub struct FlagChange {
    /// The message.
    pub uid: u32,
    /// Its system flags as the change was worked out from.
    pub was: Flags,
    /// Its keywords as the change was worked out from.
    pub was_keywords: KeywordSet,
    /// Its new system flags.
    pub flags: Flags,
    /// Its new keywords.
    pub keywords: KeywordSet,
}

impl FlagChange {
    /// A change of `entry` (as the caller saw it) to these flags and
    /// keywords.
    pub fn of(entry: &MessageEntry, flags: Flags, keywords: KeywordSet) -> FlagChange {
        FlagChange {
            uid: entry.uid,
            was: entry.flags.clone(),
            was_keywords: entry.keywords.clone(),
            flags,
            keywords,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: SystemTime,
    ino: u64,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok()?,
        ino: m.ino(),
        len: m.len(),
    })
}

/// The stamps of everything a scan reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stamps {
    new: Option<Stamp>,
    cur: Option<Stamp>,
    uiddb: Option<Stamp>,
    keywords: Option<Stamp>,
    dovecot_keywords: Option<Stamp>,
}

impl Stamps {
    fn all(&self) -> [Option<Stamp>; 5] {
        [
            self.new,
            self.cur,
            self.uiddb,
            self.keywords,
            self.dovecot_keywords,
        ]
    }
}

#[derive(Debug, Default)]
struct Inner {
    view: Arc<FolderView>,
    /// Some message of the view is still in `new/`.
    view_has_new: bool,
    /// When the last full scan started.
    last_scan: Option<SystemTime>,
    /// What the disk looked like when the view was last brought up to date.
    stamps: Stamps,
    uiddb_stamp: Option<Stamp>,
    uiddb: Option<UidDb>,
    kw_stamp: Option<Stamp>,
    keywords: KeywordDb,
    /// Dovecot's keyword letters, while the folder has `dovecot-keywords`.
    dovecot_kw: Option<DovecotKeywords>,
    dkw_stamp: Option<Stamp>,
    /// UIDs that arrived since any session last selected the folder.
    unclaimed_recent: BTreeSet<u32>,
    crlf_sizes: HashMap<u32, u64>,
    /// INTERNALDATE by UID: the mtime, read once (SEARCH and SORT by
    /// arrival ask for it of every message).
    internal_dates: HashMap<u32, SystemTime>,
    /// What each recent view changed.
    log: ChangeLog,
    /// The UIDVALIDITY the per-UID caches above belong to.
    validity: Option<u32>,
    /// UIDs whose files this process removed (EXPUNGE): their lines leave
    /// `courierimapuiddb` at its next rewrite, so a folder only IMAP
    /// writes (Sent, Trash) does not keep a line per message it ever held.
    unlinked: Vec<u32>,
    /// The last scan found messages it could not number (no room on the
    /// disk for the lock or the UID list): they are not in the view yet.
    numbering_held: bool,
}

impl Inner {
    /// What is kept per UID (INTERNALDATE, CRLF size, \Recent not yet
    /// claimed) belongs to one UIDVALIDITY: a folder deleted and created
    /// again numbers from 1, and its new UID 1 is another message. Called
    /// whenever a UID list is taken in, before anything is kept under it.
    fn forget_uids_of_another_validity(&mut self, uidvalidity: u32) {
        if self.validity.is_some_and(|v| v != uidvalidity) {
            self.internal_dates.clear();
            self.crlf_sizes.clear();
            self.unclaimed_recent.clear();
            self.unlinked.clear();
        }
        self.validity = Some(uidvalidity);
    }

    /// Drops from `db` the lines of messages this process removed.
    fn prune_unlinked(&mut self, db: &mut UidDb) {
        if self.unlinked.is_empty() {
            return;
        }
        let gone: std::collections::HashSet<u32> = self.unlinked.drain(..).collect();
        db.uids.retain(|_, uid| !gone.contains(uid));
    }

    /// Publishes `view` as the next generation; `touched` the UIDs whose
    /// entry it changed (`None`: not known, work it out from the views).
    fn publish(&mut self, mut view: FolderView, touched: Option<Vec<u32>>) {
        let touched =
            touched.unwrap_or_else(|| crate::changelog::diff(&self.view.messages, &view.messages));
        view.generation = self.view.generation.wrapping_add(1);
        self.log.record(view.generation, touched);
        self.view_has_new = view.messages.iter().any(|m| m.in_new);
        self.view = Arc::new(view);
    }
}

/// What a folder's in-memory lock was taken for.
#[derive(Debug, Clone, Copy)]
enum LockUse {
    Refresh,
    Append,
    SetFlags,
    Expunge,
    Other,
}

const LOCK_USES: [&str; 5] = ["refresh", "append", "store", "expunge", "other"];

/// How often, and how long, folders' in-memory locks were waited for and
/// held, by what for, over the whole process: the figures of the lock
/// contention profile (docs/BENCHMARKS.md), a few atomic additions a lock.
struct LockCounter {
    taken: AtomicU64,
    wait_ns: AtomicU64,
    hold_ns: AtomicU64,
    hold_max_ns: AtomicU64,
}

impl LockCounter {
    const fn new() -> LockCounter {
        LockCounter {
            taken: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            hold_max_ns: AtomicU64::new(0),
        }
    }

    fn waited(&self, d: Duration) {
        self.taken.fetch_add(1, Ordering::Relaxed);
        self.wait_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn held(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.hold_ns.fetch_add(ns, Ordering::Relaxed);
        self.hold_max_ns.fetch_max(ns, Ordering::Relaxed);
    }
}

static LOCK_STATS: [LockCounter; 5] = [
    LockCounter::new(),
    LockCounter::new(),
    LockCounter::new(),
    LockCounter::new(),
    LockCounter::new(),
];

/// The folder locks' figures so far, one line per use: times taken, mean
/// wait, mean and longest hold (milliseconds).
pub fn lock_stats() -> String {
    let mut out = String::new();
    for (i, name) in LOCK_USES.iter().enumerate() {
        let c = &LOCK_STATS[i];
        let n = c.taken.load(Ordering::Relaxed);
        let ms = |ns: u64| ns as f64 / 1e6;
        let mean = |ns: u64| if n == 0 { 0.0 } else { ms(ns) / n as f64 };
        out.push_str(&format!(
            "{name}\ttaken {n}\twait mean {:.3} ms\thold mean {:.3} ms\thold max {:.1} ms\n",
            mean(c.wait_ns.load(Ordering::Relaxed)),
            mean(c.hold_ns.load(Ordering::Relaxed)),
            ms(c.hold_max_ns.load(Ordering::Relaxed)),
        ));
    }
    out
}

/// A folder's in-memory lock, held; its hold is counted when it drops.
struct Held<'a> {
    g: MutexGuard<'a, Inner>,
    what: LockUse,
    since: std::time::Instant,
}

impl std::ops::Deref for Held<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.g
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.g
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        LOCK_STATS[self.what as usize].held(self.since.elapsed());
    }
}

/// A Maildir folder shared by every session of this process that opens it.
#[derive(Debug)]
pub struct Folder {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// `cur/` and `new/` as the last scan opened them ([`crate::dirs`]).
    dirs: Mutex<Option<Arc<Dirs>>>,
    /// Whether someone else changed them since ([`crate::watch`]).
    watch: Arc<crate::watch::WatchState>,
    /// Full listings made so far (for tests and measurements).
    scans: AtomicU64,
    /// When `tmp/` was last swept of crashed writers' leftovers.
    tmp_swept: Mutex<Option<std::time::Instant>>,
    /// How old a file in `tmp/` must be to go ([`crate::tmp::LEFTOVER_AGE`];
    /// tests shorten it).
    leftover_age: Duration,
}

/// How often one folder's `tmp/` is swept: Dovecot's figure.
const TMP_SWEEP_EVERY: Duration = Duration::from_secs(8 * 3600);

impl Folder {
    /// A folder at `dir` (INBOX is the Maildir root). Nothing is read yet.
    pub fn new(dir: PathBuf) -> Folder {
        Folder {
            dir,
            inner: Mutex::new(Inner::default()),
            dirs: Mutex::new(None),
            watch: Arc::default(),
            scans: AtomicU64::new(0),
            tmp_swept: Mutex::new(None),
            leftover_age: crate::tmp::LEFTOVER_AGE,
        }
    }

    /// Removes what writers killed mid-write left in `tmp/` (files older
    /// than 36 hours, [`crate::tmp::TmpDir::sweep`]), at most every 8 hours
    /// per folder, as Courier-IMAP and Dovecot do when a folder is opened
    /// for writing; else an APPEND cut off by a crash would hold its bytes
    /// for ever.
    fn sweep_tmp_if_due(&self) {
        {
            let mut last = self.tmp_swept.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < TMP_SWEEP_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Ok(tmp) = self.tmp_dir() {
            tmp.sweep_older_than(SystemTime::now(), self.leftover_age);
        }
    }

    /// The folder's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_inner(&self) -> Held<'_> {
        self.lock_for(LockUse::Other)
    }

    /// The in-memory lock, for `what` (its wait and hold are counted:
    /// [`lock_stats`]).
    fn lock_for(&self, what: LockUse) -> Held<'_> {
        let asked = std::time::Instant::now();
        // A panic while holding the lock leaves plain data behind; go on.
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let since = std::time::Instant::now();
        LOCK_STATS[what as usize].waited(since - asked);
        Held { g, what, since }
    }

    /// How many full listings of the folder this object has made.
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// True if the folder's directory looks like a Maildir (its `cur/` a
    /// directory of its own, not a link).
    pub fn exists(&self) -> bool {
        std::fs::symlink_metadata(self.dir.join("cur")).is_ok_and(|m| m.is_dir())
    }

    /// Opens `cur/` and `new/` again, refusing links ([`crate::dirs`]),
    /// for the operations until the next scan. With `keep` the new ones are
    /// kept; without, they replace kept ones only: a folder only listed
    /// (STATUS of a thousand folders) holds no descriptors.
    ///
    /// # Errors
    /// [`MaildirError::NoSuchFolder`] when they are missing or links.
    fn open_dirs(&self, keep: bool) -> Result<Arc<Dirs>> {
        let dirs = match Dirs::open(&self.dir, self.may_be_link()) {
            Ok(d) => Arc::new(d.announcing_to(self.watch.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MaildirError::NoSuchFolder)
            }
            Err(e) if crate::dirs::is_link_refusal(&e) => {
                tracing::warn!(dir = %self.dir.display(), "refusing a folder whose directory, cur/ or new/ is a symbolic link");
                return Err(MaildirError::NoSuchFolder);
            }
            Err(e) => return Err(MaildirError::io("open", self.dir.clone(), e)),
        };
        let mut kept = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if keep || kept.is_some() {
            *kept = Some(dirs.clone());
        }
        Ok(dirs)
    }

    /// Whether this folder's directory may be a link: a Maildir++ folder is
    /// a dot-directory inside a Maildir; anything else is a Maildir root
    /// (which may be `~/.maildir`), and only a root may be a link, one the
    /// operator made and allowed ([`crate::dirs::allow_linked_roots`]).
    fn may_be_link(&self) -> bool {
        let is_folder = self
            .dir
            .file_name()
            .is_some_and(|n| crate::FolderName::is_folder_dir(&n.to_string_lossy()))
            && self.dir.parent().is_some_and(|p| {
                std::fs::symlink_metadata(p.join("cur")).is_ok_and(|m| m.is_dir())
            });
        !is_folder && crate::dirs::linked_roots_allowed()
    }

    /// This folder's `tmp/`, opened without following links
    /// ([`crate::tmp`]).
    ///
    /// # Errors
    /// [`MaildirError::NoSuchFolder`] when the folder or its `tmp/` is a
    /// link; I/O errors.
    pub fn tmp_dir(&self) -> Result<Arc<crate::tmp::TmpDir>> {
        crate::tmp::TmpDir::open(&self.dir, self.may_be_link()).map_err(|e| {
            if crate::dirs::is_link_refusal(&e) {
                tracing::warn!(dir = %self.dir.display(), "refusing a folder whose directory or tmp/ is a symbolic link");
                MaildirError::NoSuchFolder
            } else {
                MaildirError::io("open", self.dir.join("tmp"), e)
            }
        })
    }

    /// The directories the last scan opened (opened now before any).
    fn dirs(&self) -> Result<Arc<Dirs>> {
        let cached = self.dirs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match cached {
            Some(d) => Ok(d),
            None => self.open_dirs(true),
        }
    }

    /// The directories to change messages in: the cached ones while they
    /// are still what `cur/` and `new/` name (`stamps`, just taken), else
    /// opened again (a folder deleted and created again, or a link swapped
    /// in, which is then refused).
    fn dirs_to_write(&self, stamps: &Stamps) -> Result<Arc<Dirs>> {
        let cached = self.dirs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match (cached, stamps.cur, stamps.new) {
            (Some(d), Some(c), Some(n)) if d.are(c.ino, n.ino) => Ok(d),
            _ => self.open_dirs(true),
        }
    }

    /// A message of this folder as the source of a COPY into another.
    ///
    /// # Errors
    /// As [`Folder::open_dirs`].
    pub fn existing(&self, entry: &MessageEntry) -> Result<ExistingMessage> {
        Ok(ExistingMessage {
            dirs: self.dirs()?,
            in_new: entry.in_new,
            name: entry.file_name.clone(),
            base: entry.base.clone(),
        })
    }

    /// A stat of a message file (never through a link).
    ///
    /// # Errors
    /// I/O errors; a file renamed by another program is not followed.
    pub fn stat(&self, entry: &MessageEntry) -> Result<FileStat> {
        self.dirs()?
            .stat(entry.in_new, &entry.file_name)
            .map_err(|e| MaildirError::io("stat", entry.path(&self.dir), e))
    }

    /// The UIDs whose entries changed between view generations `from` and
    /// `to` of this folder object (sorted), or `None` when they are no
    /// longer known: see [`crate::changelog`].
    pub fn changes_between(&self, from: u64, to: u64) -> Option<Vec<u32>> {
        self.lock_inner().log.between(from, to)
    }

    /// The last published view, without looking at the disk.
    pub fn view(&self) -> Arc<FolderView> {
        self.lock_inner().view.clone()
    }

    /// Looks at the disk and publishes a new view if anything changed.
    ///
    /// # Errors
    /// [`MaildirError::NoSuchFolder`] if the folder is gone; I/O errors.
    pub fn refresh(&self, move_new: MoveNew) -> Result<Arc<FolderView>> {
        let mut g = self.lock_for(LockUse::Refresh);
        self.refresh_locked(&mut g, move_new, false)?;
        Ok(g.view.clone())
    }

    /// As [`Folder::refresh`], but never trusts a directory that changed
    /// within the last second (where another process's change in the same
    /// clock tick leaves the mtime as it was): for SELECT and a POP3 login,
    /// which must show everything stored before they began. Plain refreshes
    /// rescan such a directory at most every 2 seconds.
    ///
    /// # Errors
    /// As [`Folder::refresh`].
    pub fn refresh_exact(&self, move_new: MoveNew) -> Result<Arc<FolderView>> {
        if move_new == MoveNew::Yes {
            self.sweep_tmp_if_due();
        }
        let mut g = self.lock_for(LockUse::Refresh);
        self.refresh_locked(&mut g, move_new, true)?;
        Ok(g.view.clone())
    }

    /// Whether the last look found new messages it could not number for
    /// lack of room on the disk (they are shown once there is room).
    pub fn numbering_held(&self) -> bool {
        self.lock_inner().numbering_held
    }

    /// Takes every message that arrived since the last SELECT as this
    /// session's \Recent (RFC 3501 §2.3.2: exactly one session sees it).
    pub fn claim_recent(&self) -> BTreeSet<u32> {
        std::mem::take(&mut self.lock_inner().unclaimed_recent)
    }

    /// The \Recent messages no session has claimed yet, left unclaimed: a
    /// read-only session (EXAMINE) sees them as \Recent too, as Dovecot
    /// shows them, without taking them from the next SELECT.
    pub fn peek_recent(&self) -> BTreeSet<u32> {
        self.peek_recent_above(0)
    }

    /// As [`Folder::peek_recent`], only the UIDs above `uid`: what a
    /// read-only session has not seen yet, without copying the whole set
    /// at each of its commands.
    pub fn peek_recent_above(&self, uid: u32) -> BTreeSet<u32> {
        match uid.checked_add(1) {
            Some(from) => self
                .lock_inner()
                .unclaimed_recent
                .range(from..)
                .copied()
                .collect(),
            None => BTreeSet::new(),
        }
    }

    /// How many messages are \Recent and not yet claimed by a session.
    pub fn unclaimed_recent_count(&self) -> usize {
        self.lock_inner().unclaimed_recent.len()
    }

    /// As [`Folder::unclaimed_recent_count`], but without waiting: `None`
    /// while the folder is busy (a scan, a lock wait of another change), so
    /// that a caller holding a lock of its own never waits behind it.
    pub fn try_unclaimed_recent_count(&self) -> Option<usize> {
        match self.inner.try_lock() {
            Ok(g) => Some(g.unclaimed_recent.len()),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                Some(p.into_inner().unclaimed_recent.len())
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Calls `each` with every file name in `new/` or `cur/` (dot files
    /// skipped).
    fn list(&self, dirs: &Dirs, in_new: bool, mut each: impl FnMut(&str)) -> Result<()> {
        let path = || self.dir.join(if in_new { "new" } else { "cur" });
        dirs.list(in_new, |name| {
            let Some(name) = name.to_str() else { return };
            if name.starts_with('.') {
                return;
            }
            // Courier's UID list is one name per line: a name holding a
            // line end cannot be written there without injecting a line.
            if name.contains(['\n', '\r']) {
                tracing::warn!(dir = %path().display(), name = %name.escape_debug(), "ignoring a message file whose name holds a line end");
                return;
            }
            each(name);
        })
        .map_err(|e| MaildirError::io("readdir", path(), e))
    }

    /// Lists new/ then cur/ (in that order: a message moved from new/ to cur/
    /// between the two reads is then seen at least once).
    ///
    /// `scan`: the listing the view is made from. The folder's directories
    /// are then watched from before it is read (while the folder keeps its
    /// directories open: it is selected, not only listed), and what the
    /// watch saw until now is forgotten.
    fn list_both(
        &self,
        found: &mut HashMap<Arc<str>, (Arc<str>, bool)>,
        scan: bool,
    ) -> Result<Arc<Dirs>> {
        // Every listing opens the directories again (and replaces those
        // kept, if any): what it finds is reached through what it listed.
        let dirs = self.open_dirs(false)?;
        if scan {
            self.scans.fetch_add(1, Ordering::Relaxed);
            let kept = self
                .dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            self.watch.begin_scan(&dirs, kept);
        }
        self.list(&dirs, true, |name| {
            let base: Arc<str> = Arc::from(split_name(name).0);
            found.entry(base).or_insert_with(|| (Arc::from(name), true));
        })?;
        self.list(&dirs, false, |name| {
            let base: Arc<str> = Arc::from(split_name(name).0);
            found.insert(base, (Arc::from(name), false));
        })?;
        Ok(dirs)
    }

    fn current_stamps(&self) -> Stamps {
        Stamps {
            new: stamp(&self.dir.join("new")),
            cur: stamp(&self.dir.join("cur")),
            uiddb: stamp(&self.dir.join(crate::uiddb::FILE_NAME)),
            // The directory, not `:list`: Courier's update files change it too.
            keywords: stamp(&self.dir.join(crate::keywords::DIR_NAME)),
            dovecot_keywords: stamp(&self.dir.join(crate::dovecot_keywords::FILE_NAME)),
        }
    }

    /// After a change made through this folder object: if the disk held no
    /// change we had not seen before it, the view is current again and the
    /// new stamps are recorded, so the next refresh need not scan.
    fn note_own_change(&self, g: &mut Inner, before: &Stamps) {
        if g.last_scan.is_some() && *before == g.stamps {
            g.stamps = self.current_stamps();
        }
    }

    fn refresh_locked(&self, g: &mut Inner, move_new: MoveNew, exact: bool) -> Result<()> {
        let stamps = self.current_stamps();
        if stamps.cur.is_none() {
            return Err(MaildirError::NoSuchFolder);
        }
        let now = SystemTime::now();
        if let Some(last) = g.last_scan {
            let trusted = stamps
                .all()
                .iter()
                .flatten()
                .all(|s| s.mtime + dirty_window(s.mtime) <= last);
            let scanned_lately = now
                .duration_since(last)
                .map(|a| a < DIRTY_RESCAN_EVERY)
                .unwrap_or(true);
            // Mtimes too recent to trust, but an inotify watch that saw only
            // this process's own changes since the last scan, a moment ago:
            // nobody else changed a name. (The UID list and Dovecot's keyword
            // file are replaced or grown by every writer, which their inode
            // and size reveal; Courier's keyword directory is left to its
            // mtime.)
            let watched = || {
                scanned_lately
                    && stamps
                        .keywords
                        .is_none_or(|s| s.mtime + dirty_window(s.mtime) <= last)
                    && self.watch.clean()
            };
            if stamps == g.stamps
                && (trusted || (scanned_lately && !exact) || watched())
                && (move_new == MoveNew::No || !g.view_has_new)
            {
                return Ok(());
            }
        }
        g.last_scan = Some(now);
        let uiddb_stamp = stamps.uiddb;
        let kw_stamp = stamps.keywords;
        let dkw_stamp = stamps.dovecot_keywords;

        // UIDs at or above this may be given by others after our listing.
        let prune_below = g.uiddb.as_ref().map(|d| d.next_uid).unwrap_or(1);
        let mut found: HashMap<Arc<str>, (Arc<str>, bool)> =
            HashMap::with_capacity_and_hasher(g.view.messages.len() + 16, Default::default());
        let dirs = self.list_both(&mut found, true)?;

        let mut moved: Vec<Arc<str>> = Vec::new();
        if move_new == MoveNew::Yes {
            let mut raced = false;
            for (base, (file, in_new)) in found.iter_mut() {
                if !*in_new {
                    continue;
                }
                let target = if file.contains(":2,") {
                    file.to_string()
                } else {
                    format!("{file}:2,")
                };
                match dirs.rename(true, file, false, &target) {
                    Ok(()) => {
                        *file = Arc::from(target);
                        *in_new = false;
                        moved.push(base.clone());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => raced = true,
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), file = %file, cause = %e, "cannot move message from new/ to cur/");
                    }
                }
            }
            if raced {
                self.list_both(&mut found, true)?;
            }
        }
        let moved_any = !moved.is_empty();

        // A message we knew that is missing now may be in the middle of a
        // rename by another program (a directory read can pass over a file
        // renamed while it runs): look again, four times at most, before
        // calling it gone. What any listing found counts. (Twice was seen
        // to miss a message three listings in a row on a loaded machine,
        // with another program renaming every file in a loop; the extra
        // listings cost only when a message is missing.)
        for _ in 0..4 {
            if !g.view.messages.iter().any(|m| !found.contains_key(&m.base)) {
                break;
            }
            self.list_both(&mut found, true)?;
        }
        // The listing is the view's own (every file where the view has it,
        // no other): when the lists the view was made from are unchanged
        // too, the view stands as it is. The common case of a folder that
        // only this process changes, scanned again because its mtimes are
        // too recent to be trusted: no new view to build, publish and diff.
        let unchanged = !moved_any
            && found.len() == g.view.messages.len()
            && uiddb_stamp == g.uiddb_stamp
            && kw_stamp == g.kw_stamp
            && dkw_stamp == g.dkw_stamp
            && g.uiddb.is_some()
            && !g.numbering_held
            && g.view.messages.iter().all(|m| {
                found
                    .get(&m.base)
                    .is_some_and(|(f, n)| *n == m.in_new && *f == m.file_name)
            });
        if unchanged {
            g.stamps = stamps;
            return Ok(());
        }

        if uiddb_stamp != g.uiddb_stamp || g.uiddb.is_none() {
            g.uiddb = UidDb::load(&self.dir)?;
            g.uiddb_stamp = uiddb_stamp;
            if let Some(v) = g.uiddb.as_ref().map(|d| d.uidvalidity) {
                g.forget_uids_of_another_validity(v);
            }
        }
        let needs_uids = match &g.uiddb {
            None => true,
            Some(db) => found.keys().any(|b| !db.uids.contains_key(b)),
        };
        let mut held = false;
        if needs_uids {
            let had_list = g.uiddb.is_some();
            match self.assign_uids(g, &found, prune_below) {
                Ok(()) => {}
                // No room for the lock or the new UID list: show what has
                // UIDs already (the rest waits for room; nothing is lost),
                // rather than refuse the folder (issue: a full disk made
                // an INBOX with new mail impossible to open at all).
                Err(e) if e.is_out_of_space() && had_list => {
                    tracing::warn!(dir = %self.dir.display(), cause = %e, "new messages not numbered: no room on the disk");
                    held = true;
                    // What numbering left in memory was never written.
                    g.uiddb = UidDb::load(&self.dir)?;
                    g.uiddb_stamp = stamp(&self.dir.join(crate::uiddb::FILE_NAME));
                }
                Err(e) => return Err(e),
            }
        }
        g.numbering_held = held;
        if kw_stamp != g.kw_stamp {
            g.keywords = KeywordDb::load(&self.dir)?;
            g.kw_stamp = kw_stamp;
        }
        if dkw_stamp != g.dkw_stamp {
            g.dovecot_kw = DovecotKeywords::load(&self.dir)?;
            g.dkw_stamp = dkw_stamp;
        }

        let Some(db) = &g.uiddb else {
            return Err(MaildirError::NotAllowed("UID list unavailable"));
        };
        let empty: KeywordSet = Arc::from(Vec::new());
        let mut messages: Vec<MessageEntry> = found
            .into_iter()
            .filter_map(|(base, (file_name, in_new))| {
                let uid = *db.uids.get(&base)?;
                let flags = match split_name(&file_name).1 {
                    Some(info) => Flags::from_info(info),
                    None => Flags::empty(),
                };
                let mut keywords = if g.keywords.by_base.is_empty() {
                    empty.clone()
                } else {
                    g.keywords
                        .by_base
                        .get(&base)
                        .cloned()
                        .unwrap_or_else(|| empty.clone())
                };
                if let Some(dk) = &g.dovecot_kw {
                    keywords = dk.merge(&keywords, &flags);
                }
                Some(MessageEntry {
                    uid,
                    base,
                    file_name,
                    in_new,
                    flags,
                    keywords,
                })
            })
            .collect();
        messages.sort_unstable_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);

        for base in moved {
            if let Some(uid) = db.uids.get(&base) {
                g.unclaimed_recent.insert(*uid);
            }
        }
        let view = FolderView {
            uidvalidity: db.uidvalidity,
            next_uid: db.next_uid,
            messages,
            generation: 0,
            digest: DigestCell::default(),
        };
        // What is kept by UID goes with the messages that left.
        if !g.unclaimed_recent.is_empty()
            || !g.crlf_sizes.is_empty()
            || !g.internal_dates.is_empty()
        {
            let present: std::collections::HashSet<u32> =
                view.messages.iter().map(|m| m.uid).collect();
            g.unclaimed_recent.retain(|u| present.contains(u));
            g.crlf_sizes.retain(|u, _| present.contains(u));
            g.internal_dates.retain(|u, _| present.contains(u));
        }
        g.publish(view, None);
        // Our own moves and UID writes are part of what we saw.
        g.stamps = if moved_any || needs_uids {
            self.current_stamps()
        } else {
            stamps
        };
        if held {
            // Try again at the next look, whatever the stamps say.
            g.last_scan = None;
        }
        Ok(())
    }

    /// Gives UIDs to every found message that has none, under the dot-lock.
    ///
    /// `prune_below`: entries whose file was not found are dropped only when
    /// their UID is below this, the next UID as known before the listing was
    /// made. A message numbered by another process after our listing is not
    /// in `found` but must keep its UID.
    fn assign_uids(
        &self,
        g: &mut Inner,
        found: &HashMap<Arc<str>, (Arc<str>, bool)>,
        prune_below: u32,
    ) -> Result<()> {
        let _lock = lock_folder(&self.dir)?;
        // Another process may have assigned them while we waited.
        let mut db = self.current_uiddb(g)?;
        g.forget_uids_of_another_validity(db.uidvalidity);
        g.prune_unlinked(&mut db);
        // New messages are numbered in the order of their names: Maildir
        // names start with the delivery time, so this is arrival order, and
        // it needs no stat of each file.
        let mut fresh: Vec<(u64, &Arc<str>)> = found
            .keys()
            .filter(|b| !db.uids.contains_key(*b))
            .map(|b| (name_order_key(b), b))
            .collect();
        fresh.sort_unstable();
        // Entries whose file is gone are dropped; their UIDs are never reused
        // because next_uid only grows.
        db.uids
            .retain(|b, uid| *uid >= prune_below || found.contains_key(b));
        self.make_room(g, &mut db, fresh.len())?;
        // A message Dovecot numbered (it serves this Maildir too, or did
        // since tern took its list over) keeps Dovecot's UID when that is
        // still free; the others follow.
        let dovecot = crate::dovecot_uidlist::lock(&self.dir)?;
        let mut numbered: Vec<(u32, Arc<str>)> = dovecot
            .as_ref()
            .map(|d| d.adopt(&mut db))
            .unwrap_or_default();
        fresh.retain(|(_, b)| !db.uids.contains_key(*b));
        for (_, base) in fresh {
            numbered.push((db.next_uid, base.clone()));
            db.next_uid = db.next_uid.saturating_add(1);
        }
        for (uid, base) in &numbered {
            let (uid, base) = (*uid, base.clone());
            db.uids.insert(base.clone(), uid);
            // A message another program put straight into cur/ that no
            // session has numbered yet is new to every session: \Recent for
            // the first that selects the folder, as one from new/ is
            // (RFC 3501 §2.3.2). One in new/ becomes so when it is moved.
            if found.get(&base).is_some_and(|(_, in_new)| !in_new) {
                g.unclaimed_recent.insert(uid);
            }
        }
        db.commit(&self.dir, &numbered)?;
        if let Some(d) = dovecot {
            d.follow(&db)?;
        }
        g.uiddb_stamp = stamp(&self.dir.join(crate::uiddb::FILE_NAME));
        g.uiddb = Some(db);
        Ok(())
    }

    /// The UID list, under the folder's lock: the one in memory when the
    /// file is still as this process last read or wrote it (an APPEND to a
    /// folder of 100,000 messages then reads no 6 MB file), else read again.
    fn current_uiddb(&self, g: &mut Inner) -> Result<UidDb> {
        match g.uiddb.take() {
            Some(db) if db.is_on_disk(&self.dir) => Ok(db),
            _ => self.load_or_new_uiddb(),
        }
    }

    /// Makes room for `wanted` new UIDs. When the next UID would pass
    /// 2^32-1 (RFC 3501 §2.3.1.1 allows no larger), the folder is numbered
    /// again from 1, in the order of its UIDs, under a new and larger
    /// UIDVALIDITY: clients resynchronise, and no UID is ever given twice
    /// under one UIDVALIDITY. True when it renumbered.
    fn make_room(&self, g: &mut Inner, db: &mut UidDb, wanted: usize) -> Result<bool> {
        let wanted = u64::try_from(wanted).unwrap_or(u64::MAX);
        if u64::from(db.next_uid).saturating_add(wanted) <= u64::from(u32::MAX) {
            return Ok(false);
        }
        let mut entries: Vec<(u32, Arc<str>)> = db.uids.drain().map(|(b, u)| (u, b)).collect();
        entries.sort_unstable();
        let uidvalidity = crate::uidvalidity::next_above(&self.maildir_root(), db.uidvalidity)?;
        tracing::warn!(
            dir = %self.dir.display(),
            old = db.uidvalidity,
            new = uidvalidity,
            messages = entries.len(),
            "UIDs exhausted: numbering the folder again under a new UIDVALIDITY"
        );
        db.uidvalidity = uidvalidity;
        db.next_uid = 1;
        // Every line changes: the list is written whole.
        db.layout = None;
        for (_, base) in entries {
            db.uids.insert(base, db.next_uid);
            db.next_uid = db.next_uid.saturating_add(1);
        }
        g.forget_uids_of_another_validity(uidvalidity);
        Ok(true)
    }

    /// Finds the current file of a message another program may have renamed.
    fn locate(&self, base: &str) -> Result<Option<(Arc<str>, bool)>> {
        let mut found = HashMap::default();
        self.list_both(&mut found, false)?;
        Ok(found.remove(base))
    }

    /// The Maildir this folder belongs to: its parent for a Maildir++
    /// folder (`.Sent`), else the directory itself (INBOX).
    fn maildir_root(&self) -> PathBuf {
        match self.dir.file_name().map(|n| n.to_string_lossy()) {
            Some(n) if crate::FolderName::is_folder_dir(&n) => self
                .dir
                .parent()
                .map_or_else(|| self.dir.clone(), Path::to_path_buf),
            _ => self.dir.clone(),
        }
    }

    /// The UID list on disk, or a new one whose UIDVALIDITY no folder of
    /// this Maildir had before ([`crate::uidvalidity`]).
    fn load_or_new_uiddb(&self) -> Result<UidDb> {
        match UidDb::load(&self.dir)? {
            Some(db) => Ok(db),
            None => {
                let floor = UidDb::validity_set_aside(&self.dir).unwrap_or(0);
                Ok(UidDb::with_validity(crate::uidvalidity::next_above(
                    &self.maildir_root(),
                    floor,
                )?))
            }
        }
    }

    /// The Maildir root whose `maildirsize` counts this folder's messages;
    /// `None` for a folder that does not count (Trash).
    fn quota_root(&self) -> Option<PathBuf> {
        match self.dir.file_name().map(|n| n.to_string_lossy()) {
            Some(n) if crate::FolderName::is_folder_dir(&n) => {
                if !crate::quota::counts_folder(&n) {
                    return None;
                }
                self.dir.parent().map(Path::to_path_buf)
            }
            _ => Some(self.dir.clone()),
        }
    }

    /// Records a change of usage in the Maildir's `maildirsize`. A failure
    /// only leaves the totals to the next recalculation, so it is logged,
    /// not returned.
    fn account(&self, bytes: i64, messages: i64) {
        if let Some(root) = self.quota_root() {
            if let Err(e) = crate::quota::add(&root, bytes, messages) {
                tracing::warn!(cause = %e, "maildirsize not updated");
            }
        }
    }

    /// Opens a message file, following a rename by another program.
    ///
    /// # Errors
    /// [`MaildirError::MessageGone`] when the message no longer exists.
    pub fn open(&self, entry: &MessageEntry) -> Result<File> {
        // Renames made through this object happen under the folder's lock:
        // opening the file the current view names, under the same lock,
        // cannot race them.
        let current = {
            let g = self.lock_inner();
            let e = g.view.find(entry.uid).unwrap_or(entry);
            let path = e.path(&self.dir);
            match self.dirs()?.open_file(e.in_new, &e.file_name) {
                Ok(f) => return Ok(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => path,
                Err(e) => return Err(MaildirError::io("open", path, e)),
            }
        };
        // Another program renamed it (a flag change) or removed it.
        let open = |file: &str, in_new: bool| -> Result<Option<File>> {
            // locate() listed through freshly opened directories.
            match self.dirs()?.open_file(in_new, file) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(MaildirError::io(
                    "open",
                    self.dir.join(if in_new { "new" } else { "cur" }).join(file),
                    e,
                )),
            }
        };
        match following_renames(open, || self.locate(&entry.base))? {
            Some(f) => Ok(f),
            None => {
                tracing::debug!(path = %current.display(), "message is gone");
                Err(MaildirError::MessageGone)
            }
        }
    }

    /// Opens the name the entry knows, without the folder's lock (threads
    /// reading many messages, or a POP3 login counting 100,000 files, must
    /// not queue on it): any name a message ever had holds the same
    /// content. Only when it was renamed away does the locked lookup of
    /// [`Folder::open`] run.
    fn open_unlocked(&self, entry: &MessageEntry) -> Result<File> {
        match self.dirs()?.open_file(entry.in_new, &entry.file_name) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.open(entry),
            Err(e) => Err(MaildirError::io("open", entry.path(&self.dir), e)),
        }
    }

    /// The size the file's bytes make with CRLF line ends (its length when
    /// it is stored as sent), counted.
    fn count_wire_size(&self, entry: &MessageEntry) -> Result<u64> {
        let f = self.open_unlocked(entry)?;
        let counted = if stored_as_sent(&entry.base) {
            f.metadata().map(|m| m.len())
        } else {
            count_crlf(f)
        };
        counted.map_err(|e| MaildirError::io("read", entry.path(&self.dir), e))
    }

    /// Reads a whole message.
    ///
    /// # Errors
    /// As [`Folder::open`].
    pub fn read(&self, entry: &MessageEntry) -> Result<Vec<u8>> {
        use std::io::Read;
        let mut f = self.open_unlocked(entry)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| MaildirError::io("read", entry.path(&self.dir), e))?;
        Ok(buf)
    }

    /// INTERNALDATE: the file's mtime, as Courier-IMAP and Dovecot keep it.
    ///
    /// # Errors
    /// As [`Folder::open`].
    pub fn internal_date(&self, entry: &MessageEntry) -> Result<SystemTime> {
        if let Some(t) = self.lock_inner().internal_dates.get(&entry.uid) {
            return Ok(*t);
        }
        // A stat of the name the view knows; the locked lookup only when
        // another program renamed the file meanwhile.
        let t = match self.stat(entry) {
            Ok(st) => st.modified(),
            Err(_) => self
                .open(entry)?
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| MaildirError::io("stat", entry.path(&self.dir), e))?,
        };
        self.lock_inner().internal_dates.insert(entry.uid, t);
        Ok(t)
    }

    /// RFC822.SIZE: the size with CRLF line ends, from the `W=` field of the
    /// name when present, else counted once and remembered.
    ///
    /// # Errors
    /// As [`Folder::open`].
    pub fn crlf_size(&self, entry: &MessageEntry) -> Result<u64> {
        if let Some(w) = name_field(&entry.base, 'W') {
            return Ok(w);
        }
        if let Some(s) = self.lock_inner().crlf_sizes.get(&entry.uid) {
            return Ok(*s);
        }
        let size = self.count_wire_size(entry)?;
        self.lock_inner().crlf_sizes.insert(entry.uid, size);
        Ok(size)
    }

    /// The size with CRLF line ends as the file holds it now, counted
    /// (never the `W=` of the name, which another program may have got
    /// wrong): what a literal sent from the file must announce.
    ///
    /// # Errors
    /// As [`Folder::open`].
    pub fn counted_crlf_size(&self, entry: &MessageEntry) -> Result<u64> {
        self.count_wire_size(entry)
    }

    /// Changes the flags and keywords of messages. Returns the entries as
    /// they are afterwards; a message that is gone is left out.
    ///
    /// # Errors
    /// I/O errors (a message that vanished is not an error).
    pub fn set_flags(&self, changes: &[FlagChange]) -> Result<Vec<MessageEntry>> {
        let mut g = self.lock_for(LockUse::SetFlags);
        let before = self.current_stamps();
        let mut view = (*g.view).clone();
        let mut done = Vec::with_capacity(changes.len());
        let mut kw_changes: Vec<(Arc<str>, KeywordSet)> = Vec::new();
        let mut delta = (0i64, 0i64);
        // Dovecot's list as it is now, grown first by a letter for every
        // keyword asked for, so that no file name ever holds a letter the
        // list does not name. A change moves only the letters of the
        // keywords it adds or removes: a letter this view does not know
        // (Dovecot gave it a moment ago) stays as it is.
        let sets: Vec<&KeywordSet> = changes
            .iter()
            .filter(|c| c.keywords != c.was_keywords)
            .map(|c| &c.keywords)
            .collect();
        // The stamps just taken say whether the folder has a list at all:
        // no second stat for it on this path, which every STORE takes.
        let dovecot = match before.dovecot_keywords {
            Some(_) => DovecotKeywords::update(&self.dir, &sets)?,
            None => None,
        };
        let lettered = |flags: Flags, from: &KeywordSet, to: &KeywordSet| match &dovecot {
            Some(dk) if from != to => {
                let removed: Vec<Arc<str>> =
                    from.iter().filter(|k| !to.contains(k)).cloned().collect();
                let removed = dk.letters_of(&Arc::from(removed));
                let mut letters: Vec<u8> = flags
                    .keyword_letters()
                    .filter(|l| !removed.contains(l))
                    .collect();
                letters.extend(dk.letters_of(to));
                flags.with_keyword_letters(&letters)
            }
            _ => flags,
        };
        for ch in changes {
            let Ok(i) = view.messages.binary_search_by_key(&ch.uid, |m| m.uid) else {
                continue;
            };
            let entry = &mut view.messages[i];
            let was_counted = crate::quota::counts_file(&entry.file_name);
            // Changed meanwhile by another session of this process (the
            // caller worked the change out before taking the lock).
            let target = if entry.flags == ch.was {
                ch.flags.clone()
            } else {
                merge_change(&ch.was, &ch.flags, &entry.flags)
            };
            let keywords = if entry.keywords == ch.was_keywords {
                ch.keywords.clone()
            } else {
                merge_keywords(&ch.was_keywords, &ch.keywords, &entry.keywords)
            };
            let target = lettered(target, &entry.keywords, &keywords);
            let mut flags = target.clone();
            let mut new_name = format!("{}:2,{}", entry.base, flags.to_info());
            if *entry.file_name != *new_name || entry.in_new {
                let mut attempt = 0;
                loop {
                    let from = entry.path(&self.dir);
                    match self.dirs_to_write(&before)?.rename(
                        entry.in_new,
                        &entry.file_name,
                        false,
                        &new_name,
                    ) {
                        Ok(()) => {
                            entry.file_name = Arc::from(new_name.as_str());
                            entry.in_new = false;
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => {
                            attempt += 1;
                            match self.locate(&entry.base)? {
                                Some((file, in_new)) => {
                                    // Another program changed the flags
                                    // meanwhile: apply this change to its
                                    // flags rather than undo its change.
                                    let theirs =
                                        Flags::from_info(split_name(&file).1.unwrap_or(""));
                                    flags = lettered(
                                        merge_change(&entry.flags, &target, &theirs),
                                        &entry.keywords,
                                        &keywords,
                                    );
                                    new_name = format!("{}:2,{}", entry.base, flags.to_info());
                                    entry.file_name = file;
                                    entry.in_new = in_new;
                                    if *entry.file_name == *new_name && !entry.in_new {
                                        break;
                                    }
                                }
                                None => break,
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) => return Err(MaildirError::io("rename", from, e)),
                    }
                }
                if *entry.file_name != *new_name {
                    continue; // gone
                }
            }
            let counted = crate::quota::counts_file(&entry.file_name);
            if counted != was_counted {
                let size = name_field(&entry.base, 'S')
                    .or_else(|| self.stat(entry).ok().map(|m| m.len))
                    .unwrap_or(0);
                let sign = if counted { 1 } else { -1 };
                delta.0 += sign * i64::try_from(size).unwrap_or(0);
                delta.1 += sign;
            }
            entry.flags = flags;
            if entry.keywords != keywords {
                entry.keywords = keywords.clone();
                kw_changes.push((entry.base.clone(), keywords));
            }
            done.push(entry.clone());
        }
        if !kw_changes.is_empty() {
            let _lock = lock_folder(&self.dir)?;
            let mut db = KeywordDb::load(&self.dir)?;
            for (base, set) in kw_changes {
                if set.is_empty() {
                    db.by_base.remove(&base);
                } else {
                    db.by_base.insert(base, set);
                }
            }
            db.store(&self.dir)?;
            g.kw_stamp = stamp(&self.dir.join(crate::keywords::DIR_NAME));
            g.keywords = db;
        }
        if dovecot.is_some() {
            g.dkw_stamp = stamp(&self.dir.join(crate::dovecot_keywords::FILE_NAME));
            g.dovecot_kw = dovecot;
        }
        g.publish(view, Some(done.iter().map(|e| e.uid).collect()));
        self.note_own_change(&mut g, &before);
        self.account(delta.0, delta.1);
        Ok(done)
    }

    /// Adds messages to the folder and returns their UIDs, in order.
    ///
    /// Each file is in `cur/` before its UID is written, so a crash between
    /// the two leaves a message that the next scan numbers: never a UID
    /// without a message, never a message lost.
    ///
    /// # Errors
    /// I/O errors; [`MaildirError::MessageGone`] when a COPY's source was
    /// expunged. A batch that fails adds none of its messages.
    pub fn append(&self, messages: Vec<NewMessage>) -> Result<Vec<u32>> {
        // The whole append holds the folder's lock, so that no other change
        // made through this object interleaves between the stamps taken
        // before and after (the view must learn every message it adds).
        let mut g = self.lock_for(LockUse::Append);
        let before = self.current_stamps();
        let mut placed: Vec<(Arc<str>, KeywordSet)> = Vec::with_capacity(messages.len());
        let mut entries: Vec<MessageEntry> = Vec::with_capacity(messages.len());
        let mut delta = (0i64, 0i64);
        let dovecot = if before.dovecot_keywords.is_some()
            && messages.iter().any(|m| !m.keywords.is_empty())
        {
            let sets: Vec<&KeywordSet> = messages.iter().map(|m| &m.keywords).collect();
            DovecotKeywords::update(&self.dir, &sets)?
        } else {
            None
        };
        // This folder's tmp/, opened (never through a link) for the first
        // message copied in.
        let mut tmp_dir: Option<Arc<crate::tmp::TmpDir>> = None;
        let placing = (|| -> Result<()> {
            for mut m in messages {
                // Letters of the folder a message is copied from mean nothing
                // here: this folder's own letters, or none.
                let letters = dovecot
                    .as_ref()
                    .map(|dk| dk.letters_of(&m.keywords))
                    .unwrap_or_default();
                m.flags = m.flags.with_keyword_letters(&letters);
                let base = new_base_with_sizes(m.size, m.crlf_size);
                let final_name = format!("{}:2,{}", base, m.flags.to_info());
                let dirs = self.dirs_to_write(&before)?;
                match m.source {
                    AppendSource::TmpFile(src) => {
                        if let Some(t) = m.internal_date {
                            src.set_modified(t)
                                .map_err(|e| MaildirError::io("utime", src.path(), e))?;
                        }
                        dirs.rename_in(&src, &final_name)
                            .map_err(|e| MaildirError::io("rename", src.path(), e))?;
                    }
                    AppendSource::Existing(src) => {
                        let td = match &tmp_dir {
                            Some(t) => t.clone(),
                            None => tmp_dir.insert(self.tmp_dir()?).clone(),
                        };
                        let tmp = td.file(&base);
                        if src.bring_into(&td, &base)? {
                            if let Some(t) = m.internal_date {
                                tmp.set_modified(t)
                                    .map_err(|e| MaildirError::io("utime", tmp.path(), e))?;
                            }
                        }
                        dirs.rename_in(&tmp, &final_name).map_err(|e| {
                            let _ = tmp.remove();
                            MaildirError::io("rename", tmp.path(), e)
                        })?;
                    }
                }
                if crate::quota::counts_file(&final_name) {
                    delta.0 += i64::try_from(m.size).unwrap_or(0);
                    delta.1 += 1;
                }
                let base: Arc<str> = Arc::from(base.as_str());
                entries.push(MessageEntry {
                    uid: 0,
                    base: base.clone(),
                    file_name: Arc::from(final_name.as_str()),
                    in_new: false,
                    flags: m.flags.clone(),
                    keywords: m.keywords.clone(),
                });
                placed.push((base, m.keywords));
            }
            Ok(())
        })();
        if let Err(e) = placing {
            // None of the batch is added when one of it fails (RFC 3501
            // §6.4.7: a failed COPY leaves the destination as it was): the
            // files placed so far have no UID yet, and are taken out again.
            self.unplace(&before, &entries);
            return Err(e);
        }
        self.account(delta.0, delta.1);
        if dovecot.is_some() {
            g.dkw_stamp = stamp(&self.dir.join(crate::dovecot_keywords::FILE_NAME));
            g.dovecot_kw = dovecot;
        }
        // The new names in cur/ are durable before any UID names them; the
        // UID list is then written durably too (write_atomic), so the
        // APPENDUID/COPYUID the client is told survives a power loss.
        if !placed.is_empty() {
            crate::unique::sync_dir(&self.dir.join("cur"))?;
        }
        // Lock order everywhere: the in-memory state, then the dot-lock.
        let lock = lock_folder(&self.dir)?;
        let mut db = self.current_uiddb(&mut g)?;
        g.forget_uids_of_another_validity(db.uidvalidity);
        g.prune_unlinked(&mut db);
        let renumbered = self.make_room(&mut g, &mut db, placed.len())?;
        // UIDs Dovecot gave meanwhile are not given again.
        let dovecot = crate::dovecot_uidlist::lock(&self.dir)?;
        let mut added = dovecot
            .as_ref()
            .map(|d| d.adopt(&mut db))
            .unwrap_or_default();
        let mut uids = Vec::with_capacity(placed.len());
        for (base, _) in &placed {
            // A concurrent scan by another process may have numbered it already.
            let uid = match db.uids.get(base) {
                Some(u) => *u,
                None => {
                    let u = db.next_uid;
                    db.uids.insert(base.clone(), u);
                    db.next_uid = db.next_uid.saturating_add(1);
                    added.push((u, base.clone()));
                    u
                }
            };
            uids.push(uid);
        }
        db.commit(&self.dir, &added)?;
        if let Some(d) = dovecot {
            d.follow(&db)?;
        }
        if placed.iter().any(|(_, k)| !k.is_empty()) {
            let mut kdb = KeywordDb::load(&self.dir)?;
            for (base, k) in &placed {
                if !k.is_empty() {
                    kdb.by_base.insert(base.clone(), k.clone());
                }
            }
            kdb.store(&self.dir)?;
        }
        drop(lock);
        g.uiddb_stamp = stamp(&self.dir.join(crate::uiddb::FILE_NAME));
        let next_uid = db.next_uid;
        g.uiddb = Some(db);
        g.unclaimed_recent.extend(uids.iter().copied());
        // The view learns the new messages at once when it was current;
        // after a renumbering, every UID changed: the next refresh scans.
        if renumbered {
            g.last_scan = None;
        } else if g.last_scan.is_some() && before == g.stamps {
            let mut view = (*g.view).clone();
            for (mut e, uid) in entries.into_iter().zip(&uids) {
                e.uid = *uid;
                if view.find(*uid).is_none() {
                    view.messages.push(e);
                }
            }
            view.messages.sort_unstable_by_key(|m| m.uid);
            view.next_uid = view.next_uid.max(next_uid);
            if placed.iter().any(|(_, k)| !k.is_empty()) {
                g.kw_stamp = stamp(&self.dir.join(crate::keywords::DIR_NAME));
                g.keywords = KeywordDb::load(&self.dir)?;
            }
            g.publish(view, Some(uids.clone()));
            g.stamps = self.current_stamps();
        }
        Ok(uids)
    }

    /// Takes out the files of a batch [`Folder::append`] had placed in
    /// `cur/` before one of its messages failed. They were made by this
    /// append and have no UID: no one has been told of them.
    fn unplace(&self, before: &Stamps, entries: &[MessageEntry]) {
        if entries.is_empty() {
            return;
        }
        let dirs = match self.dirs_to_write(before) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot take back the messages of a failed append");
                return;
            }
        };
        for e in entries {
            if let Err(err) = dirs.unlink(false, &e.file_name) {
                tracing::warn!(path = %e.path(&self.dir).display(), error = %err, "cannot take back a message of a failed append");
            }
        }
    }

    /// Removes messages. Returns the UIDs actually removed (a message that
    /// another program removed first is simply left out).
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>> {
        let mut g = self.lock_for(LockUse::Expunge);
        let before = self.current_stamps();
        let mut view = (*g.view).clone();
        let mut removed = Vec::new();
        let mut delta = (0i64, 0i64);
        for &uid in uids {
            let Some(entry) = view.find(uid).cloned() else {
                continue;
            };
            let mut path = entry.path(&self.dir);
            let mut name = entry.file_name.clone();
            let mut in_new = entry.in_new;
            let dirs = self.dirs_to_write(&before)?;
            let size_of = |dirs: &Dirs, in_new: bool, name: &str| {
                name_field(&entry.base, 'S')
                    .or_else(|| dirs.stat(in_new, name).ok().map(|m| m.len))
                    .unwrap_or(0)
            };
            let mut size = size_of(&dirs, in_new, &name);
            let mut result = dirs.unlink(in_new, &name);
            // Another program may rename the file (a flag change) between
            // our look and our unlink, more than once: follow it a few
            // times; only when no name is left is it gone.
            for _ in 0..4 {
                if !matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
                    break;
                }
                let Some((file, file_in_new)) = self.locate(&entry.base)? else {
                    break;
                };
                in_new = file_in_new;
                path = self
                    .dir
                    .join(if in_new { "new" } else { "cur" })
                    .join(&*file);
                name = file;
                // locate() opened the directories again.
                let dirs = self.dirs()?;
                size = size_of(&dirs, in_new, &name);
                result = dirs.unlink(in_new, &name);
            }
            match result {
                Ok(()) => {
                    // Only what this process removed is accounted here: a
                    // file another program removed is that program's to count.
                    if crate::quota::counts_file(&name) {
                        delta.0 -= i64::try_from(size).unwrap_or(0);
                        delta.1 -= 1;
                    }
                    removed.push(uid)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed.push(uid),
                Err(e) => return Err(MaildirError::io("unlink", path, e)),
            }
        }
        let gone: std::collections::HashSet<u32> = removed.iter().copied().collect();
        view.messages.retain(|m| !gone.contains(&m.uid));
        g.unlinked.extend_from_slice(&removed);
        g.publish(view, Some(removed.clone()));
        self.note_own_change(&mut g, &before);
        self.account(delta.0, delta.1);
        Ok(removed)
    }
}

/// The flags `current` gets from a change that turned `before` into
/// `wanted`: what was added is added, what was removed is removed, the rest
/// is as the other writer left it.
fn merge_change(before: &Flags, wanted: &Flags, current: &Flags) -> Flags {
    let mut out = current.clone();
    for f in crate::Flag::ALL {
        if wanted.contains(f) != before.contains(f) {
            out.set(f, wanted.contains(f));
        }
    }
    out
}

/// `current` with the keywords added and removed between `before` and
/// `wanted` (sorted, as keyword sets are kept).
fn merge_keywords(before: &KeywordSet, wanted: &KeywordSet, current: &KeywordSet) -> KeywordSet {
    let mut out: Vec<Arc<str>> = current
        .iter()
        .filter(|k| !before.contains(k) || wanted.contains(k))
        .cloned()
        .collect();
    for k in wanted.iter() {
        if !before.contains(k) && !out.contains(k) {
            out.push(k.clone());
        }
    }
    out.sort();
    Arc::from(out)
}

/// Listings of its folder a message another program may have renamed is
/// looked for in before it counts as gone: a rename can hide a file from
/// one listing.
const RENAME_LOOKS: u32 = 5;

/// After a message's file was not where its name said: `find` lists the
/// folder for the name it has now and `use_name` tries that, up to
/// [`RENAME_LOOKS`] times, a little later each time. `use_name` answers
/// `None` for a name with no file; `None` here: the message is gone.
fn following_renames<T>(
    mut use_name: impl FnMut(&str, bool) -> Result<Option<T>>,
    mut find: impl FnMut() -> Result<Option<(Arc<str>, bool)>>,
) -> Result<Option<T>> {
    for attempt in 0..RENAME_LOOKS {
        if let Some((name, in_new)) = find()? {
            if let Some(v) = use_name(&name, in_new)? {
                return Ok(Some(v));
            }
        }
        std::thread::sleep(Duration::from_millis(1 << attempt));
    }
    Ok(None)
}

/// The leading number of a Maildir base name (the delivery time); names
/// are numbered in this order, ties broken by the name.
fn name_order_key(name: &str) -> u64 {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    name[..digits].parse().unwrap_or(u64::MAX)
}

/// The length of a file's content once every bare LF is written as CRLF,
/// read in small pieces (no buffer of the whole message).
fn count_crlf(mut f: File) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = [0u8; 8 * 1024];
    let (mut n, mut prev) = (0u64, 0u8);
    loop {
        let k = match f.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        n += k as u64;
        for &b in &buf[..k] {
            if b == b'\n' && prev != b'\r' {
                n += 1;
            }
            prev = b;
        }
    }
}

/// The length of `data` once every bare LF is written as CRLF.
pub fn crlf_len(data: &[u8]) -> u64 {
    let mut n = data.len() as u64;
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

fn copy_synced(mut from: File, tmp: &Arc<crate::tmp::TmpDir>, name: &str) -> Result<()> {
    let mut made = None;
    let res = (|| {
        let (mut to, file) = tmp.create(name)?;
        made = Some(file);
        std::io::copy(&mut from, &mut to)?;
        to.set_modified(from.metadata()?.modified()?)?;
        to.sync_all()
    })();
    res.map_err(|e| {
        if let Some(f) = &made {
            let _ = f.remove();
        }
        MaildirError::io("copy", tmp.path().join(name), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_folder_for_writing_sweeps_its_tmp_at_most_every_8_hours() {
        let t = tempfile::tempdir().unwrap();
        crate::maildir::make_maildir_dirs(t.path()).unwrap();
        std::fs::write(t.path().join("tmp/leftover"), "x").unwrap();
        let mut f = Folder::new(t.path().to_owned());
        f.leftover_age = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(1100));
        // EXAMINE and STATUS leave it.
        f.refresh_exact(MoveNew::No).unwrap();
        assert!(t.path().join("tmp/leftover").exists());
        f.refresh_exact(MoveNew::Yes).unwrap();
        assert!(!t.path().join("tmp/leftover").exists());
        // Not again within 8 hours.
        std::fs::write(t.path().join("tmp/second"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        f.refresh_exact(MoveNew::Yes).unwrap();
        assert!(t.path().join("tmp/second").exists());
    }

    #[test]
    fn a_linked_maildir_root_is_served_and_a_linked_folder_is_not() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        for sub in ["cur", "new", "tmp", ".x/cur", ".x/new", ".x/tmp"] {
            std::fs::create_dir_all(real.join(sub)).unwrap();
        }
        std::fs::write(real.join("new/1.M1.h"), "Subject: a\n\nb\n").unwrap();
        // The operator's link to a root named like a folder (~/.maildir).
        let link = t.path().join(".maildir");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // Only where the operator allows it (the one test of this crate
        // that changes the process-wide setting).
        crate::dirs::allow_linked_roots(false);
        assert!(matches!(
            Folder::new(link.clone()).refresh(MoveNew::No),
            Err(MaildirError::NoSuchFolder)
        ));
        assert!(matches!(
            crate::Maildir::new(&link).ensure(),
            Err(MaildirError::LinkedRoot(_))
        ));
        crate::dirs::allow_linked_roots(true);
        let view = Folder::new(link.clone()).refresh(MoveNew::No).unwrap();
        assert_eq!(view.messages.len(), 1);
        // A folder inside it that is a link is refused.
        std::os::unix::fs::symlink(real.join(".x"), real.join(".y")).unwrap();
        assert!(Folder::new(link.join(".x")).refresh(MoveNew::No).is_ok());
        assert!(matches!(
            Folder::new(link.join(".y")).refresh(MoveNew::No),
            Err(MaildirError::NoSuchFolder)
        ));
    }

    /// A folder only this process changes is not listed again at each
    /// exact refresh while its mtimes are too recent to trust; a change by
    /// anyone else is still seen at once, even one that leaves the
    /// directory's mtime as it was (a change in the same clock tick).
    #[test]
    fn own_changes_need_no_listing_and_anothers_change_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        crate::maildir::make_maildir_dirs(dir.path()).unwrap();
        for i in 1..=3 {
            std::fs::write(
                dir.path().join(format!("cur/170000000{i}.M{i}P1.h:2,")),
                "Subject: x\n\nx\n",
            )
            .unwrap();
        }
        let folder = Folder::new(dir.path().to_owned());
        let view = folder.refresh_exact(MoveNew::No).unwrap();
        // Reading a message keeps the directories open (a selected folder);
        // the next listing then watches them.
        drop(folder.open(&view.messages[0]).unwrap());
        folder.refresh(MoveNew::No).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let view = folder.refresh_exact(MoveNew::No).unwrap();
        let scans = folder.scans();
        for i in 0..5 {
            let e = view.messages[0].clone();
            let flags = Flags::from_info(if i % 2 == 0 { "S" } else { "" });
            folder
                .set_flags(&[FlagChange::of(&e, flags, e.keywords.clone())])
                .unwrap();
            let v = folder.refresh_exact(MoveNew::No).unwrap();
            assert_eq!(v.messages.len(), 3);
        }
        let own = folder.scans() - scans;
        if !crate::watch::available() {
            panic!("inotify is not available on this machine");
        }
        assert_eq!(own, 0, "own flag changes made the folder be listed again");
        // Another program sets \Flagged on the third message and puts the
        // directory's mtime back: the mtimes say nothing changed.
        let cur = dir.path().join("cur");
        let before = std::fs::metadata(&cur).unwrap().modified().unwrap();
        let third = &view.messages[2];
        std::fs::rename(
            cur.join(&*third.file_name),
            cur.join(format!("{}:2,F", third.base)),
        )
        .unwrap();
        std::fs::File::open(&cur)
            .unwrap()
            .set_modified(before)
            .unwrap();
        let v = folder.refresh_exact(MoveNew::No).unwrap();
        assert!(v
            .find(third.uid)
            .unwrap()
            .flags
            .contains(crate::Flag::Flagged));
        assert_eq!(folder.scans(), scans + 1);
    }

    #[test]
    fn the_lock_figures_count_each_use() {
        let dir = tempfile::tempdir().unwrap();
        crate::maildir::make_maildir_dirs(dir.path()).unwrap();
        let folder = Folder::new(dir.path().to_owned());
        let taken = |use_: &str| -> u64 {
            let stats = lock_stats();
            let line = stats
                .lines()
                .find(|l| l.starts_with(use_))
                .unwrap()
                .to_owned();
            line.split('\t').nth(1).unwrap()["taken ".len()..]
                .parse()
                .unwrap()
        };
        let before = taken("refresh\t");
        folder.refresh(MoveNew::No).unwrap();
        folder.refresh_exact(MoveNew::No).unwrap();
        assert!(taken("refresh\t") >= before + 2, "{}", lock_stats());
    }

    #[test]
    fn a_flag_change_keeps_what_another_writer_changed() {
        let before = Flags::from_info("");
        let wanted = Flags::from_info("T");
        // Someone set S meanwhile: the result has both.
        let merged = merge_change(&before, &wanted, &Flags::from_info("S"));
        assert_eq!(merged.to_info(), "ST");
        // Removing S while someone set F: F stays, S goes.
        let merged = merge_change(
            &Flags::from_info("S"),
            &Flags::from_info(""),
            &Flags::from_info("FS"),
        );
        assert_eq!(merged.to_info(), "F");
    }

    /// Two sessions of one process work changes out from the same view;
    /// the second must not undo the first.
    #[test]
    fn changes_worked_out_from_an_older_view_keep_newer_ones() {
        let dir = tempfile::tempdir().unwrap();
        crate::maildir::make_maildir_dirs(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("cur/1700000000.M1P1.h:2,"),
            "Subject: x\n\nx\n",
        )
        .unwrap();
        let folder = Folder::new(dir.path().to_owned());
        let view = folder.refresh(MoveNew::No).unwrap();
        let old = &view.messages[0];
        let kw = |k: &[&str]| -> KeywordSet { k.iter().map(|s| Arc::from(*s)).collect() };
        folder
            .set_flags(&[FlagChange::of(old, Flags::from_info("T"), kw(&["$a"]))])
            .unwrap();
        let done = folder
            .set_flags(&[FlagChange::of(old, Flags::from_info("S"), kw(&["$b"]))])
            .unwrap();
        assert_eq!(done[0].flags.to_info(), "ST");
        assert_eq!(&*done[0].keywords, &*kw(&["$a", "$b"]));
        let names: Vec<String> = std::fs::read_dir(dir.path().join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1700000000.M1P1.h:2,ST"]);
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    fn two_messages() -> (tempfile::TempDir, Folder, Folder, Arc<FolderView>) {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        crate::maildir::make_maildir_dirs(&src).unwrap();
        crate::maildir::make_maildir_dirs(&dst).unwrap();
        std::fs::write(src.join("cur/1.M1.h:2,"), "Subject: a\n\nb\n").unwrap();
        std::fs::write(src.join("cur/2.M2.h:2,"), "Subject: c\n\nd\n").unwrap();
        let (s, d) = (Folder::new(src), Folder::new(dst));
        let view = s.refresh_exact(MoveNew::No).unwrap();
        (t, s, d, view)
    }

    fn copy_of(f: &Folder, e: &MessageEntry) -> NewMessage {
        NewMessage {
            source: AppendSource::Existing(f.existing(e).unwrap()),
            size: 14,
            crlf_size: 17,
            flags: e.flags.clone(),
            keywords: e.keywords.clone(),
            internal_date: None,
        }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_source_renamed_by_another_session_is_found_again() {
        let (t, s, d, view) = two_messages();
        let batch = vec![
            copy_of(&s, &view.messages[0]),
            copy_of(&s, &view.messages[1]),
        ];
        // Another session sets \Seen on both after the COPY took its
        // sources, one of them also moved from cur/ to new/ and back.
        let src = t.path().join("src");
        std::fs::rename(src.join("cur/1.M1.h:2,"), src.join("cur/1.M1.h:2,S")).unwrap();
        std::fs::rename(src.join("cur/2.M2.h:2,"), src.join("new/2.M2.h:2,S")).unwrap();
        let uids = d.append(batch).unwrap();
        assert_eq!(uids.len(), 2);
        let v = d.refresh_exact(MoveNew::No).unwrap();
        assert_eq!(v.messages.len(), 2);
        for m in &v.messages {
            let mut body = String::new();
            std::io::Read::read_to_string(&mut d.open(m).unwrap(), &mut body).unwrap();
            assert!(body.starts_with("Subject: "), "{body}");
        }
        assert!(names_in(&t.path().join("dst/tmp")).is_empty());
    }

    #[test]
    fn a_source_expunged_meanwhile_fails_the_whole_copy_and_adds_nothing() {
        let (t, s, d, view) = two_messages();
        let batch = vec![
            copy_of(&s, &view.messages[0]),
            copy_of(&s, &view.messages[1]),
        ];
        std::fs::remove_file(t.path().join("src/cur/2.M2.h:2,")).unwrap();
        let err = d.append(batch).unwrap_err();
        assert!(matches!(err, MaildirError::MessageGone), "{err:?}");
        // The first message was placed before the second failed: it is
        // taken out again, and nothing is left in tmp/ either.
        assert!(names_in(&t.path().join("dst/cur")).is_empty());
        assert!(names_in(&t.path().join("dst/new")).is_empty());
        assert!(names_in(&t.path().join("dst/tmp")).is_empty());
        assert!(d.refresh_exact(MoveNew::No).unwrap().messages.is_empty());
        // The source keeps what it has.
        assert_eq!(names_in(&t.path().join("src/cur")), ["1.M1.h:2,"]);
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn an_unchanged_view_shares_its_digest_and_a_changed_one_has_its_own() {
        let t = tempfile::tempdir().unwrap();
        crate::maildir::make_maildir_dirs(t.path()).unwrap();
        std::fs::write(t.path().join("new/1.M1.h"), "Subject: a\n\nb\n").unwrap();
        std::fs::write(t.path().join("new/2.M2.h"), "Subject: c\n\nd\n").unwrap();
        let f = Folder::new(t.path().to_owned());
        let first = f.refresh_exact(MoveNew::Yes).unwrap();
        let d = first.digest();
        assert_eq!(d.states.len(), 2);
        assert_eq!(d.first_unseen, Some(0));
        assert!(d.keywords.is_empty());
        // Nothing changed: the same digest, not a copy.
        let again = f.refresh_exact(MoveNew::Yes).unwrap();
        assert!(Arc::ptr_eq(&d.states, &again.digest().states));

        let work: Arc<str> = Arc::from("work");
        let kw: KeywordSet = Arc::from(vec![work.clone()]);
        f.set_flags(&[FlagChange::of(
            &first.messages[0],
            Flags::from_info("S"),
            kw.clone(),
        )])
        .unwrap();
        let changed = f.refresh_exact(MoveNew::Yes).unwrap();
        let d2 = changed.digest();
        assert!(!Arc::ptr_eq(&d.states, &d2.states));
        assert!(d2.states[0].flags.contains(crate::flags::Flag::Seen));
        assert_eq!(d2.states[0].keywords, kw);
        assert_eq!(d2.first_unseen, Some(1));
        assert_eq!(d2.keywords, BTreeSet::from([work]));
        // The view a session still holds keeps describing what it showed.
        assert_eq!(first.digest().first_unseen, Some(0));
        assert!(!first.digest().states[0]
            .flags
            .contains(crate::flags::Flag::Seen));
        // A copy (made to be changed) never carries the digest over.
        let copy = (*changed).clone();
        assert!(copy.digest.0.get().is_none());
    }
}
