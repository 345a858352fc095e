//! A user's Maildir++: the root (INBOX), its folders and subscriptions.

use std::path::{Path, PathBuf};

use crate::error::{MaildirError, Result};
use crate::folder::{AppendSource, Folder, MoveNew, NewMessage};
use crate::name::FolderName;
use crate::unique::{new_base, write_atomic};

/// Courier-IMAP's subscription list: one full IMAP name a line.
pub const SUBSCRIPTIONS: &str = "courierimapsubscribed";

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
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
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
    /// The Maildir at `root`; nothing is touched.
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    /// Creates the root's `cur/ new/ tmp/` if missing (first login).
    ///
    /// # Errors
    /// I/O errors.
    pub fn ensure(&self) -> Result<()> {
        make_maildir_dirs(&self.root)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a folder (`None` is INBOX).
    pub fn folder_dir(&self, name: Option<&FolderName>) -> PathBuf {
        match name {
            None => self.root.clone(),
            Some(n) => self.root.join(n.dir_name()),
        }
    }

    /// The root's `tmp/`, where incoming literals are streamed.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh file name in the root's `tmp/`.
    pub fn new_tmp_path(&self) -> PathBuf {
        self.tmp_dir().join(new_base())
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

    /// Every folder below INBOX, sorted by name.
    ///
    /// # Errors
    /// I/O errors reading the root.
    pub fn list_folders(&self) -> Result<Vec<FolderInfo>> {
        let rd = std::fs::read_dir(&self.root)
            .map_err(|e| MaildirError::io("readdir", &self.root, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| MaildirError::io("readdir", &self.root, e))?;
            let Some(dir) = ent.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(name) = FolderName::from_dir_name(&dir) else {
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
            out.push(FolderInfo { name });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a folder.
    ///
    /// # Errors
    /// [`MaildirError::FolderExists`], or I/O errors.
    pub fn create_folder(&self, name: &FolderName) -> Result<()> {
        let dir = self.folder_dir(Some(name));
        if dir.exists() {
            return Err(MaildirError::FolderExists);
        }
        // Build it under tmp/ and rename into place, so that no other process
        // sees a half-made folder.
        let staging = self.tmp_dir().join(format!("{}.newfolder", new_base()));
        make_maildir_dirs(&staging)?;
        std::fs::File::create(staging.join("maildirfolder"))
            .map_err(|e| MaildirError::io("create", staging.join("maildirfolder"), e))?;
        match std::fs::rename(&staging, &dir) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
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
        // Atomically out of sight first, then removed at leisure.
        let graveyard = self.tmp_dir().join(format!("{}.deleted", new_base()));
        std::fs::rename(&dir, &graveyard).map_err(|e| MaildirError::io("rename", &dir, e))?;
        // The quota usage drops by what the folder held, as Courier's
        // deletefolder does, rather than waiting for a recalculation.
        if crate::quota::counts_folder(&name.dir_name()) {
            let (bytes, messages) = counted_messages(&graveyard);
            crate::quota::add(&self.root, -bytes, -messages)?;
        }
        if let Err(e) = std::fs::remove_dir_all(&graveyard) {
            tracing::warn!(dir = %graveyard.display(), cause = %e, "could not remove deleted folder");
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
                moves.push((f.name.clone(), target));
            }
        }
        if moves.is_empty() {
            return Err(MaildirError::NoSuchFolder);
        }
        for (a, b) in moves {
            let (pa, pb) = (self.folder_dir(Some(&a)), self.folder_dir(Some(&b)));
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
        let view = inbox.refresh(MoveNew::Yes)?;
        let target = Folder::new(self.folder_dir(Some(to)));
        let mut batch = Vec::with_capacity(view.messages.len());
        for m in &view.messages {
            let size = std::fs::metadata(m.path(inbox.dir()))
                .map(|md| md.len())
                .unwrap_or(0);
            batch.push(NewMessage {
                source: AppendSource::Existing(m.path(inbox.dir())),
                size,
                crlf_size: inbox.crlf_size(m).unwrap_or(size),
                flags: m.flags.clone(),
                keywords: m.keywords.clone(),
                internal_date: inbox.internal_date(m).ok(),
            });
        }
        target.append(batch)?;
        let uids: Vec<u32> = view.messages.iter().map(|m| m.uid).collect();
        inbox.expunge(&uids)?;
        Ok(())
    }

    /// The subscribed names (full IMAP names, e.g. `INBOX.Work`).
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        let path = self.root.join(SUBSCRIPTIONS);
        match crate::unique::read_nofollow(&path) {
            Ok(b) => Ok(String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(MaildirError::io("read", path, e)),
        }
    }

    /// Adds or removes a subscription (rewritten atomically).
    ///
    /// # Errors
    /// I/O errors.
    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<()> {
        let mut subs = self.subscriptions()?;
        let had = subs.iter().any(|s| s == name);
        if on == had {
            return Ok(());
        }
        if on {
            subs.push(name.to_owned());
        } else {
            subs.retain(|s| s != name);
        }
        let mut text = subs.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_atomic(&self.root.join(SUBSCRIPTIONS), text.as_bytes())
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
