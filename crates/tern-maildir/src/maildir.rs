//! A user's Maildir++: the root (INBOX), its folders and subscriptions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{MaildirError, Result};
use crate::folder::{AppendSource, Folder, MoveNew, NewMessage};
use crate::name::FolderName;
use crate::name_form::{self, NameForm, NameSetting};
use crate::tmp::TmpDir;
use crate::unique::new_base;

/// Courier-IMAP's subscription list: one full name a line.
pub const SUBSCRIPTIONS: &str = crate::subscriptions::COURIER_FILE;

/// Two directories that spell one folder name, one in each form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConflict {
    /// The name both spell.
    pub name: FolderName,
    /// The directory tern opens under that name.
    pub listed: String,
    /// The directory left out.
    pub hidden: String,
}

/// A folder found in the Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Its name below INBOX.
    pub name: FolderName,
}

/// A user's Maildir++ root.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    names: NameSetting,
    /// The form found on disk, read once when first needed.
    detected: Arc<OnceLock<NameForm>>,
    /// Whether a name conflict was logged already (once per session).
    conflict_logged: Arc<AtomicBool>,
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => crate::owner::inherit(path).map_err(|e| MaildirError::io("chown", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(MaildirError::io("mkdir", path, e)),
    }
}

/// Creates `cur/ new/ tmp/` in `dir` (which may exist).
///
/// # Errors
/// I/O errors.
pub fn make_maildir_dirs(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| MaildirError::io("mkdir", parent, e))?;
    }
    mkdir(dir)?;
    for sub in ["tmp", "new", "cur"] {
        mkdir(&dir.join(sub))?;
    }
    Ok(())
}

impl Maildir {
    /// The Maildir at `root`, spelling folder names as it already does;
    /// nothing is touched.
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir::with_names(root, NameSetting::Auto)
    }

    /// The Maildir at `root` with folder names spelled as `names` says.
    pub fn with_names(root: impl Into<PathBuf>, names: NameSetting) -> Maildir {
        Maildir {
            root: root.into(),
            names,
            detected: Arc::default(),
            conflict_logged: Arc::default(),
        }
    }

    /// How this Maildir spells folder names ([`name_form`]). With the
    /// setting `Auto`, the first call reads the root directory.
    pub fn name_form(&self) -> NameForm {
        match self.names {
            NameSetting::Utf8 => NameForm::Utf8,
            NameSetting::Mutf7 => NameForm::Mutf7,
            NameSetting::Auto => *self.detected.get_or_init(|| name_form::detect(&self.root)),
        }
    }

    /// Creates the root's `cur/ new/ tmp/` if missing (first login).
    ///
    /// # Errors
    /// I/O errors.
    pub fn ensure(&self) -> Result<()> {
        if !crate::dirs::linked_roots_allowed()
            && std::fs::symlink_metadata(&self.root).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(MaildirError::LinkedRoot(self.root.clone()));
        }
        make_maildir_dirs(&self.root)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a folder (`None` is INBOX): the one that exists, in
    /// either spelling (this Maildir's own first), else where it would be
    /// created. Only a name with non-ASCII characters or `&` looks at the
    /// disk.
    pub fn folder_dir(&self, name: Option<&FolderName>) -> PathBuf {
        let Some(n) = name else {
            return self.root.clone();
        };
        if !name_form::form_matters(n.as_str()) {
            return self.root.join(format!(".{n}"));
        }
        let spellings = name_form::candidates(n.as_str(), self.name_form());
        for raw in &spellings {
            let dir = self.root.join(format!(".{raw}"));
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return dir;
            }
        }
        match spellings.first() {
            Some(raw) => self.root.join(format!(".{raw}")),
            // Not reached: the modified UTF-7 spelling always exists.
            None => self
                .root
                .join(format!(".{}", crate::mutf7::encode(n.as_str()))),
        }
    }

    /// Where a new folder `name` goes: its spelling in this Maildir's form.
    ///
    /// # Errors
    /// [`MaildirError::InvalidName`] when that spelling would read back as
    /// another name.
    fn new_folder_dir(&self, name: &FolderName) -> Result<PathBuf> {
        name_form::encode_dir_name(name.as_str(), self.name_form())
            .map(|raw| self.root.join(format!(".{raw}")))
            .ok_or(MaildirError::InvalidName(
                "the name would read back as another name on disk",
            ))
    }

    /// The root's `tmp/`, where incoming literals are streamed, opened
    /// without following links ([`crate::tmp`]).
    ///
    /// # Errors
    /// [`MaildirError::LinkedRoot`] for a root that is a link the
    /// configuration does not allow; [`MaildirError::NoSuchFolder`] for a
    /// `tmp/` that is a link; I/O errors.
    pub fn tmp_dir(&self) -> Result<Arc<TmpDir>> {
        TmpDir::open(&self.root, crate::dirs::linked_roots_allowed()).map_err(|e| {
            if crate::dirs::is_link_refusal(&e) {
                if std::fs::symlink_metadata(&self.root).is_ok_and(|m| m.file_type().is_symlink()) {
                    return MaildirError::LinkedRoot(self.root.clone());
                }
                tracing::warn!(dir = %self.root.display(), "refusing a Maildir whose tmp/ is a symbolic link");
                return MaildirError::NoSuchFolder;
            }
            MaildirError::io("open", self.root.join("tmp"), e)
        })
    }

    /// True if the folder exists (INBOX always does once created). A folder
    /// directory that is a symbolic link does not count: a link planted in
    /// the Maildir must not lead a session into another directory (another
    /// user's Maildir, say).
    pub fn folder_exists(&self, name: Option<&FolderName>) -> bool {
        let dir = self.folder_dir(name);
        if name.is_some() {
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => {}
                _ => return false,
            }
        }
        dir.join("cur").is_dir()
    }

    /// Every folder below INBOX, sorted by name, whichever way its
    /// directory spells it. Two directories that spell the same name (one
    /// in each form) are a conflict: the one [`Maildir::folder_dir`] opens
    /// is listed, the other is logged and left alone, never merged.
    ///
    /// # Errors
    /// I/O errors reading the root.
    pub fn list_folders(&self) -> Result<Vec<FolderInfo>> {
        let (folders, conflicts) = self.scan_folders()?;
        if !conflicts.is_empty() && !self.conflict_logged.swap(true, Ordering::Relaxed) {
            for c in &conflicts {
                tracing::warn!(
                    maildir = %self.root.display(),
                    name = %c.name,
                    listed = %c.listed,
                    hidden = %c.hidden,
                    "two folder directories spell one name; the second is not shown (rename one)"
                );
            }
        }
        Ok(folders)
    }

    /// The folders, and the directories hidden because another spells the
    /// same name.
    ///
    /// # Errors
    /// I/O errors reading the root.
    pub fn scan_folders(&self) -> Result<(Vec<FolderInfo>, Vec<NameConflict>)> {
        let rd = std::fs::read_dir(&self.root)
            .map_err(|e| MaildirError::io("readdir", &self.root, e))?;
        // name -> (rank of its spelling, that spelling)
        let mut found: std::collections::BTreeMap<FolderName, (usize, String)> =
            std::collections::BTreeMap::new();
        let mut conflicts = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| MaildirError::io("readdir", &self.root, e))?;
            let Some(dir) = ent.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !FolderName::is_folder_dir(&dir) {
                continue;
            }
            let raw = &dir[1..];
            let decoded = name_form::decode_dir_name(raw, || self.name_form());
            let Ok(name) = FolderName::new(&decoded) else {
                continue;
            };
            // Symlinks planted by others are not followed: only real directories count.
            match ent.file_type() {
                Ok(t) if t.is_dir() => {}
                _ => continue,
            }
            if !ent.path().join("cur").is_dir() {
                continue;
            }
            let rank = if name_form::form_matters(&decoded) {
                name_form::candidates(&decoded, self.name_form())
                    .iter()
                    .position(|c| c == raw)
                    .unwrap_or(usize::MAX)
            } else {
                0
            };
            match found.entry(name) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((rank, raw.to_owned()));
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let (kept, hidden) = if rank < o.get().0 {
                        let old = std::mem::replace(o.get_mut(), (rank, raw.to_owned()));
                        (raw.to_owned(), old.1)
                    } else {
                        (o.get().1.clone(), raw.to_owned())
                    };
                    conflicts.push(NameConflict {
                        name: o.key().clone(),
                        listed: format!(".{kept}"),
                        hidden: format!(".{hidden}"),
                    });
                }
            }
        }
        let folders = found.into_keys().map(|name| FolderInfo { name }).collect();
        Ok((folders, conflicts))
    }

    /// Creates a folder.
    ///
    /// # Errors
    /// [`MaildirError::FolderExists`], or I/O errors.
    pub fn create_folder(&self, name: &FolderName) -> Result<()> {
        if self.folder_dir(Some(name)).exists() {
            return Err(MaildirError::FolderExists);
        }
        let dir = self.new_folder_dir(name)?;
        // Build it under tmp/ and rename into place, so that no other process
        // sees a half-made folder. Both ends are reached through the
        // directories as opened: a link swapped in leads nowhere.
        let tmp = self.tmp_dir()?;
        let staging = tmp
            .make_folder(&format!("{}.newfolder", new_base()))
            .map_err(|e| MaildirError::io("mkdir", tmp.path(), e))?;
        let Some(leaf) = dir.file_name() else {
            return Err(MaildirError::InvalidName("empty"));
        };
        match staging.rename_to(tmp.base(), leaf) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = staging.remove_tree();
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    || e.raw_os_error() == Some(libc::ENOTEMPTY)
                {
                    Err(MaildirError::FolderExists)
                } else {
                    Err(MaildirError::io("rename", dir, e))
                }
            }
        }
    }

    /// Deletes a folder and its messages; its children stay (RFC 3501 §6.3.4).
    ///
    /// # Errors
    /// [`MaildirError::NoSuchFolder`], or I/O errors.
    pub fn delete_folder(&self, name: &FolderName) -> Result<()> {
        let dir = self.folder_dir(Some(name));
        if !self.folder_exists(Some(name)) {
            return Err(MaildirError::NoSuchFolder);
        }
        // Atomically out of sight first, then removed at leisure; both
        // through the directories as opened, never a link swapped in.
        let tmp = self.tmp_dir()?;
        let graveyard = tmp.file(&format!("{}.deleted", new_base()));
        let Some(leaf) = dir.file_name() else {
            return Err(MaildirError::NoSuchFolder);
        };
        rustix::fs::renameat(tmp.base(), leaf, tmp.fd(), graveyard.name())
            .map_err(|e| MaildirError::io("rename", &dir, e.into()))?;
        // The quota usage drops by what the folder held, as Courier's
        // deletefolder does, rather than waiting for a recalculation.
        if name.counts_toward_quota() {
            let (bytes, messages) = counted_messages(&graveyard.path());
            crate::quota::add(&self.root, -bytes, -messages)?;
        }
        if let Err(e) = graveyard.remove_tree() {
            tracing::warn!(dir = %graveyard.path().display(), cause = %e, "could not remove deleted folder");
        }
        Ok(())
    }

    /// Renames a folder and all its children.
    ///
    /// # Errors
    /// [`MaildirError::NoSuchFolder`], [`MaildirError::FolderExists`], I/O errors.
    pub fn rename_folder(&self, from: &FolderName, to: &FolderName) -> Result<()> {
        if to == from || to.is_below(from) {
            return Err(MaildirError::NotAllowed(
                "cannot rename a folder into itself",
            ));
        }
        if self.folder_dir(Some(to)).exists() {
            return Err(MaildirError::FolderExists);
        }
        self.new_folder_dir(to)?;
        let all = self.list_folders()?;
        let mut moves: Vec<(FolderName, FolderName)> = Vec::new();
        let from_exists = self.folder_exists(Some(from));
        if from_exists {
            moves.push((from.clone(), to.clone()));
        }
        for f in &all {
            if f.name.is_below(from) {
                let target = f.name.rebase(from, to);
                if self.folder_dir(Some(&target)).exists() {
                    return Err(MaildirError::FolderExists);
                }
                self.new_folder_dir(&target)?;
                moves.push((f.name.clone(), target));
            }
        }
        if moves.is_empty() {
            return Err(MaildirError::NoSuchFolder);
        }
        for (a, b) in moves {
            let (pa, pb) = (self.folder_dir(Some(&a)), self.new_folder_dir(&b)?);
            std::fs::rename(&pa, &pb).map_err(|e| MaildirError::io("rename", pa, e))?;
        }
        Ok(())
    }

    /// RENAME INBOX: moves every message of INBOX into a new folder `to`;
    /// INBOX stays, empty (RFC 3501 §6.3.5).
    ///
    /// # Errors
    /// [`MaildirError::FolderExists`], I/O errors.
    pub fn rename_inbox(&self, to: &FolderName) -> Result<()> {
        self.create_folder(to)?;
        let inbox = Folder::new(self.root.clone());
        let target = Folder::new(self.folder_dir(Some(to)));
        // A message expunged by another session meanwhile fails the whole
        // batch (and adds nothing): the INBOX is listed again and the move
        // tried again, a few times.
        let mut attempts = 0;
        loop {
            let view = inbox.refresh(MoveNew::Yes)?;
            let mut batch = Vec::with_capacity(view.messages.len());
            for m in &view.messages {
                let size = inbox.stat(m).map(|st| st.len).unwrap_or(0);
                batch.push(NewMessage {
                    source: AppendSource::Existing(inbox.existing(m)?),
                    size,
                    crlf_size: inbox.crlf_size(m).unwrap_or(size),
                    flags: m.flags.clone(),
                    keywords: m.keywords.clone(),
                    internal_date: inbox.internal_date(m).ok(),
                });
            }
            match target.append(batch) {
                Ok(_) => {
                    let uids: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
                    inbox.expunge(&uids)?;
                    return Ok(());
                }
                Err(MaildirError::MessageGone) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The subscribed names: `INBOX`, or `INBOX.` and a folder's Unicode
    /// name, from Courier's and Dovecot's files ([`crate::subscriptions`]).
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        crate::subscriptions::read(&self.root, self.name_form())
    }

    /// Adds or removes a subscription (each file rewritten atomically).
    ///
    /// # Errors
    /// I/O errors.
    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<()> {
        crate::subscriptions::set(&self.root, self.name_form(), name, on)
    }
}

/// Bytes and messages that count toward the quota in a folder directory's
/// `new/` and `cur/`.
fn counted_messages(dir: &Path) -> (i64, i64) {
    let (mut bytes, mut messages) = (0i64, 0i64);
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !crate::quota::counts_file(&name) {
                continue;
            }
            if let Some(size) = crate::quota::file_size(&name, &e.path()) {
                bytes = bytes.saturating_add(i64::try_from(size).unwrap_or(i64::MAX));
                messages += 1;
            }
        }
    }
    (bytes, messages)
}
