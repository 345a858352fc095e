//! Access control lists (RFC 4314) as Courier-IMAP keeps them, so that a
//! site moving between Courier and tern keeps every folder's ACL.
//!
//! Courier writes a folder's list into `courierimapacl` in the folder's
//! directory (INBOX's in the Maildir's root), one `identifier rights` line
//! each: `owner aceilrstwx`, `user=bob lr`, `group=staff lrs`,
//! `-user=eve r` (a negative entry takes rights away), `anyone lr`,
//! `administrators aceilrstwx`. Courier's letters are RFC 4314's except
//! that Courier's `c` is the right to create subfolders (RFC 4314's `k`).
//!
//! A folder without its own file has its nearest ancestor's list, and
//! INBOX without one has the default: all rights for the owner and for the
//! `administrators` group. The walk up is a loop over the name's
//! components, never recursion. Rights are the union of every matching
//! positive entry minus the union of every matching negative one (Courier's
//! `ACL2=UNION`); the owner always keeps `a` (administer) and members of
//! `administrators` have every right, as in Courier.

use std::path::Path;
use std::sync::Arc;

use crate::error::{MaildirError, Result};
use crate::unique::{read_head_nofollow, write_atomic};
use crate::{FolderName, Maildir};

/// Courier's file name.
pub const ACL_FILE: &str = "courierimapacl";

/// A list larger than this is not read (a folder's list is a few lines;
/// the bound keeps an odd file from costing a session memory or time).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// At most this many entries are kept from a file or added by SETACL.
pub const MAX_ENTRIES: usize = 256;

/// The rights in RFC 4314's order, one bit each.
const LETTERS: &[u8; 11] = b"lrswipkxtea";

/// A set of rights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rights(u16);

impl Rights {
    /// No right.
    pub const NONE: Rights = Rights(0);
    /// Every right.
    pub const ALL: Rights = Rights((1 << LETTERS.len()) - 1);

    fn bit(letter: u8) -> Option<u16> {
        LETTERS.iter().position(|&l| l == letter).map(|i| 1u16 << i)
    }

    /// The set holding one right, by its RFC 4314 letter.
    pub fn of(letter: u8) -> Rights {
        Rights(Self::bit(letter).unwrap_or(0))
    }

    /// Parses RFC 4314 letters as a client sends them: the obsolete `c`
    /// stands for `k` and `x`, `d` for `t` and `e` (RFC 4314 §2.1.1, as
    /// Dovecot reads them).
    ///
    /// # Errors
    /// The first letter that names no right (RFC 4314 §3.1: an
    /// unrecognised right must fail the command).
    pub fn parse_rfc4314(s: &str) -> std::result::Result<Rights, char> {
        let mut r = Rights::NONE;
        for c in s.bytes() {
            r = r.union(match c {
                b'c' => Rights::of(b'k').union(Rights::of(b'x')),
                b'd' => Rights::of(b't').union(Rights::of(b'e')),
                _ => match Self::bit(c) {
                    Some(b) => Rights(b),
                    None => return Err(char::from(c)),
                },
            });
        }
        Ok(r)
    }

    /// Reads Courier's letters (its `c` is RFC 4314's `k`); letters that
    /// name no right are ignored, as Courier keeps them without meaning.
    pub fn from_courier(s: &str) -> Rights {
        s.bytes()
            .map(|c| if c == b'c' { b'k' } else { c })
            .fold(Rights::NONE, |r, c| r.union(Rights::of(c)))
    }

    /// Courier's spelling, letters sorted as Courier writes them.
    pub fn courier(self) -> String {
        let mut out: Vec<u8> = LETTERS
            .iter()
            .filter(|&&l| self.contains(Rights::of(l)))
            .map(|&l| if l == b'k' { b'c' } else { l })
            .collect();
        out.sort_unstable();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The RFC 4314 spelling for a response, with the obsolete `c` when
    /// `k` or `x` is granted and `d` when `t` or `e` is (RFC 4314 §2.1.1;
    /// Dovecot does the same, so RFC 2086 clients see what they know).
    pub fn rfc4314(self) -> String {
        let mut out: String = LETTERS
            .iter()
            .filter(|&&l| self.contains(Rights::of(l)))
            .map(|&l| char::from(l))
            .collect();
        if self.intersects(Rights::of(b'k').union(Rights::of(b'x'))) {
            out.push('c');
        }
        if self.intersects(Rights::of(b't').union(Rights::of(b'e'))) {
            out.push('d');
        }
        out
    }

    /// Both sets.
    pub fn union(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }

    /// This set without `o`.
    pub fn minus(self, o: Rights) -> Rights {
        Rights(self.0 & !o.0)
    }

    /// Every right of `o` is here.
    pub fn contains(self, o: Rights) -> bool {
        self.0 & o.0 == o.0
    }

    /// Some right of `o` is here.
    pub fn intersects(self, o: Rights) -> bool {
        self.0 & o.0 != 0
    }

    /// Holds no right.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Who asks: the logged-in user, their account groups (`group=` options,
/// as courier-authlib has them) and whether the mailbox is theirs.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The login name (Courier's `user=` identifier).
    pub user: &'a str,
    /// The account's groups.
    pub groups: &'a [String],
    /// The mailbox belongs to this user.
    pub owner: bool,
}

impl Identity<'_> {
    fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "administrators")
    }

    /// Whether a stored identifier (without its `-`) names this user.
    fn matches(&self, id: &str) -> bool {
        match id {
            "anyone" | "anonymous" | "authuser" => true,
            "owner" => self.owner,
            "administrators" => self.is_admin(),
            _ => {
                if let Some(u) = id.strip_prefix("user=") {
                    u == self.user
                } else if let Some(g) = id.strip_prefix("group=") {
                    self.groups.iter().any(|m| m == g)
                } else {
                    false
                }
            }
        }
    }
}

/// One line of a list: a stored identifier (`-` first for a negative
/// entry) and its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As Courier stores it: `owner`, `user=bob`, `group=staff`, `-user=eve`.
    pub identifier: String,
    /// Its rights.
    pub rights: Rights,
}

/// A folder's access control list, in the order of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Default for Acl {
    /// INBOX's list when it has no file: all rights for the owner and for
    /// administrators (Courier's default).
    fn default() -> Acl {
        Acl {
            entries: vec![
                Entry {
                    identifier: "owner".to_owned(),
                    rights: Rights::ALL,
                },
                Entry {
                    identifier: "administrators".to_owned(),
                    rights: Rights::ALL,
                },
            ],
        }
    }
}

impl Acl {
    /// Reads Courier's format: `identifier rights` a line. Lines without
    /// an identifier, or with bytes that are not UTF-8, are skipped; at
    /// most [`MAX_ENTRIES`] are kept.
    pub fn parse(bytes: &[u8]) -> Acl {
        let mut entries = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let line = line.trim_end_matches('\r');
            let (id, rights) = line.split_once(' ').unwrap_or((line, ""));
            if id.is_empty() || entries.len() >= MAX_ENTRIES {
                continue;
            }
            entries.push(Entry {
                identifier: id.to_owned(),
                rights: Rights::from_courier(rights.trim_start_matches(' ')),
            });
        }
        Acl { entries }
    }

    /// Courier's format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.identifier);
            out.push(' ');
            out.push_str(&e.rights.courier());
            out.push('\n');
        }
        out
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The rights stored for `identifier` (exactly as stored).
    pub fn get(&self, identifier: &str) -> Option<Rights> {
        self.entries
            .iter()
            .find(|e| e.identifier == identifier)
            .map(|e| e.rights)
    }

    /// Sets `identifier`'s rights (empty rights remove the entry).
    ///
    /// # Errors
    /// [`MaildirError::InvalidName`] for an identifier that cannot be a
    /// line of the file, or when the list already holds [`MAX_ENTRIES`].
    pub fn set(&mut self, identifier: &str, rights: Rights) -> Result<()> {
        if identifier.is_empty()
            || identifier.len() > 300
            || identifier.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            return Err(MaildirError::InvalidName(
                "an identifier holds no spaces or controls",
            ));
        }
        match self
            .entries
            .iter_mut()
            .position(|e| e.identifier == identifier)
        {
            Some(i) if rights.is_empty() => {
                self.entries.remove(i);
            }
            Some(i) => self.entries[i].rights = rights,
            None if rights.is_empty() => {}
            None if self.entries.len() >= MAX_ENTRIES => {
                return Err(MaildirError::InvalidName("the access control list is full"));
            }
            None => self.entries.push(Entry {
                identifier: identifier.to_owned(),
                rights,
            }),
        }
        Ok(())
    }

    /// Removes `identifier`'s entry; whether there was one.
    pub fn remove(&mut self, identifier: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.identifier != identifier);
        before != self.entries.len()
    }

    /// What `who` may do: the union of the matching entries' rights minus
    /// the union of the matching negative entries'; the owner always keeps
    /// `a`, members of `administrators` have everything.
    pub fn rights_of(&self, who: &Identity<'_>) -> Rights {
        if who.is_admin() {
            return Rights::ALL;
        }
        let r = self.stored_rights(who);
        if who.owner {
            r.union(Rights::of(b'a'))
        } else {
            r
        }
    }

    /// The rights the entries give `who`, nothing implied.
    fn stored_rights(&self, who: &Identity<'_>) -> Rights {
        let (mut plus, mut minus) = (Rights::NONE, Rights::NONE);
        for e in &self.entries {
            match e.identifier.strip_prefix('-') {
                Some(id) if who.matches(id) => minus = minus.union(e.rights),
                None if who.matches(&e.identifier) => plus = plus.union(e.rights),
                _ => {}
            }
        }
        plus.minus(minus)
    }

    /// Whether the owner keeps the rights Courier never lets them lose:
    /// `l` and `a` (its irrevocable rights; a list without them is refused
    /// on writing, by Courier and here).
    pub fn owner_keeps_minimum(&self, owner: &str, groups: &[String]) -> bool {
        let me = Identity {
            user: owner,
            groups,
            owner: true,
        };
        // Without the owner's implicit `a`: what is stored.
        let r = self.stored_rights(&me);
        me.is_admin() || r.contains(Rights::of(b'l').union(Rights::of(b'a')))
    }
}

/// Reads of folders' own files, kept for a while: a LIST of 2,000 folders
/// otherwise looks for 2,000 files each time (Dovecot keeps its lists
/// `acl_cache_secs`, 30 s by default, the same way). What tern writes is
/// forgotten at once; a file another program (Courier, `maildiracl`)
/// changes is seen within the lifetime. At most [`CACHE_ENTRIES`] are
/// kept; a full cache starts again empty.
#[derive(Debug, Default)]
pub struct Cache {
    ttl: std::time::Duration,
    map: std::sync::Mutex<CacheMap>,
}

type CacheMap =
    std::collections::HashMap<std::path::PathBuf, (std::time::Instant, Option<Arc<Acl>>)>;

/// The most entries a [`Cache`] holds (about 100 bytes each for a folder
/// without a list of its own).
pub const CACHE_ENTRIES: usize = 65_536;

impl Cache {
    /// A cache keeping each read for `ttl` (zero: nothing is kept).
    pub fn new(ttl: std::time::Duration) -> Cache {
        Cache {
            ttl,
            map: Default::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, CacheMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The own file at `path`, from the cache while it is fresh.
    fn read(&self, path: &Path) -> Result<Option<Arc<Acl>>> {
        if self.ttl.is_zero() {
            return Ok(read_file(path)?.map(Arc::new));
        }
        if let Some((at, acl)) = self.map().get(path) {
            if at.elapsed() < self.ttl {
                return Ok(acl.clone());
            }
        }
        let acl = read_file(path)?.map(Arc::new);
        let mut map = self.map();
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(path.to_owned(), (std::time::Instant::now(), acl.clone()));
        Ok(acl)
    }

    fn forget(&self, path: &Path) {
        self.map().remove(path);
    }
}

/// The directory whose `courierimapacl` holds `folder`'s own list.
fn acl_path(maildir: &Maildir, folder: Option<&FolderName>) -> std::path::PathBuf {
    maildir.folder_dir(folder).join(ACL_FILE)
}

/// The list in `dir`'s file, if it has one. Never follows a link.
///
/// # Errors
/// I/O errors other than the file's absence.
fn read_file(path: &Path) -> Result<Option<Acl>> {
    match read_head_nofollow(path, MAX_FILE_BYTES) {
        Ok(b) => Ok(Some(Acl::parse(&b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A link in its place is not followed and not a list: the folder
        // keeps its inherited one, as if the file were absent.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!(path = %path.display(), "a link stands for an access control list; ignored");
            Ok(None)
        }
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

/// The list that applies to `folder` (`None` is INBOX): its own file, else
/// its nearest ancestor's, else INBOX's, else the default.
///
/// # Errors
/// I/O errors reading a file that exists.
pub fn effective(
    maildir: &Maildir,
    folder: Option<&FolderName>,
    cache: &Cache,
) -> Result<Arc<Acl>> {
    let mut at = folder.cloned();
    loop {
        if let Some(acl) = cache.read(&acl_path(maildir, at.as_ref()))? {
            return Ok(acl);
        }
        match at {
            None => return Ok(Arc::new(Acl::default())),
            Some(f) => at = f.parent(),
        }
    }
}

/// The lists of many folders at once (a LIST of every folder): one look
/// at each folder's own file, the inherited ones shared, parents before
/// children. Returns each folder's list, in the order of `folders`.
///
/// # Errors
/// I/O errors reading a file that exists.
pub fn effective_all(
    maildir: &Maildir,
    folders: &[&FolderName],
    cache: &Cache,
) -> Result<Vec<Arc<Acl>>> {
    let mut order: Vec<usize> = (0..folders.len()).collect();
    order.sort_by(|&a, &b| folders[a].as_str().cmp(folders[b].as_str()));
    let inbox = effective(maildir, None, cache)?;
    let mut out: Vec<Arc<Acl>> = vec![inbox.clone(); folders.len()];
    let mut by_name: std::collections::HashMap<&str, Arc<Acl>> =
        std::collections::HashMap::with_capacity(folders.len());
    for i in order {
        let f = folders[i];
        let acl = match cache.read(&acl_path(maildir, Some(f)))? {
            Some(own) => own,
            None => {
                // "A" sorts before "A.B": a listed parent is already here.
                let mut at = f.parent();
                loop {
                    match at {
                        None => break inbox.clone(),
                        Some(p) => match by_name.get(p.as_str()) {
                            Some(a) => break a.clone(),
                            None => at = p.parent(),
                        },
                    }
                }
            }
        };
        by_name.insert(f.as_str(), acl.clone());
        out[i] = acl;
    }
    Ok(out)
}

/// Writes `folder`'s own list, atomically (a temporary file and a rename:
/// a crash leaves the old list or the new one).
///
/// # Errors
/// I/O errors.
pub fn write(
    maildir: &Maildir,
    folder: Option<&FolderName>,
    acl: &Acl,
    cache: &Cache,
) -> Result<()> {
    let path = acl_path(maildir, folder);
    let res = write_atomic(&path, acl.render().as_bytes());
    cache.forget(&path);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me<'a>(user: &'a str, groups: &'a [String], owner: bool) -> Identity<'a> {
        Identity {
            user,
            groups,
            owner,
        }
    }

    #[test]
    fn courier_letters_round_trip_with_c_as_k() {
        let r = Rights::from_courier("aceilrstwx");
        assert!(r.contains(Rights::of(b'k')));
        assert!(!r.contains(Rights::of(b'p')));
        assert_eq!(r.courier(), "aceilrstwx");
        assert_eq!(r.rfc4314(), "lrswikxteacd");
        assert_eq!(Rights::from_courier("lqr").courier(), "lr");
    }

    #[test]
    fn obsolete_c_and_d_expand_and_unknown_letters_fail() {
        let r = Rights::parse_rfc4314("lrcd").unwrap();
        assert_eq!(r.rfc4314(), "lrkxtecd");
        assert_eq!(Rights::parse_rfc4314("lrq"), Err('q'));
        assert_eq!(Rights::parse_rfc4314(""), Ok(Rights::NONE));
    }

    #[test]
    fn union_minus_negatives_and_groups() {
        let acl = Acl::parse(
            b"owner aceilrstwx\nanyone lr\nuser=john w\n-user=mary r\ngroup=staff is\n-group=interns i\n",
        );
        let none: Vec<String> = vec![];
        let staff = vec!["staff".to_owned()];
        let interns = vec!["staff".to_owned(), "interns".to_owned()];
        assert_eq!(acl.rights_of(&me("john", &none, false)).rfc4314(), "lrw");
        assert_eq!(acl.rights_of(&me("mary", &none, false)).rfc4314(), "l");
        assert_eq!(acl.rights_of(&me("sue", &staff, false)).rfc4314(), "lrsi");
        assert_eq!(acl.rights_of(&me("tim", &interns, false)).rfc4314(), "lrs");
        assert_eq!(
            acl.rights_of(&me("x", &none, true)),
            Rights::ALL.minus(Rights::of(b'p'))
        );
        let admin = vec!["administrators".to_owned()];
        assert_eq!(acl.rights_of(&me("root", &admin, false)), Rights::ALL);
    }

    #[test]
    fn the_owner_keeps_administer_even_when_a_negative_entry_takes_it() {
        let acl = Acl::parse(b"owner lr\n-owner a\n");
        let none: Vec<String> = vec![];
        assert!(acl
            .rights_of(&me("x", &none, true))
            .contains(Rights::of(b'a')));
        assert!(!acl.owner_keeps_minimum("x", &none));
        assert!(Acl::default().owner_keeps_minimum("x", &none));
    }

    #[test]
    fn set_replaces_removes_and_refuses_spaces() {
        let mut acl = Acl::default();
        acl.set("user=bob", Rights::parse_rfc4314("lr").unwrap())
            .unwrap();
        acl.set("user=bob", Rights::parse_rfc4314("lrs").unwrap())
            .unwrap();
        assert_eq!(
            acl.render(),
            "owner aceilprstwx\nadministrators aceilprstwx\nuser=bob lrs\n"
        );
        acl.set("user=bob", Rights::NONE).unwrap();
        assert!(acl.get("user=bob").is_none());
        assert!(acl.set("user=a b", Rights::ALL).is_err());
        assert!(acl.set("user=a\nowner", Rights::ALL).is_err());
        assert!(acl.remove("owner"));
        assert!(!acl.remove("owner"));
    }

    #[test]
    fn a_folder_without_a_file_has_its_nearest_ancestors_list() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("Maildir"));
        md.ensure().unwrap();
        let a = FolderName::new("A").unwrap();
        let ab = FolderName::new("A.B").unwrap();
        md.create_folder(&a).unwrap();
        md.create_folder(&ab).unwrap();
        let none = Cache::default();
        assert_eq!(*effective(&md, Some(&ab), &none).unwrap(), Acl::default());
        let mut inbox = Acl::default();
        inbox.set("anyone", Rights::of(b'l')).unwrap();
        write(&md, None, &inbox, &none).unwrap();
        assert_eq!(*effective(&md, Some(&ab), &none).unwrap(), inbox);
        let mut own = Acl::default();
        own.set("user=bob", Rights::of(b'r')).unwrap();
        write(&md, Some(&a), &own, &none).unwrap();
        assert_eq!(*effective(&md, Some(&ab), &none).unwrap(), own);
        assert_eq!(*effective(&md, None, &none).unwrap(), inbox);
        let text = std::fs::read_to_string(dir.path().join("Maildir/.A/courierimapacl")).unwrap();
        assert!(text.contains("user=bob r\n"), "{text}");
        let all = effective_all(&md, &[&ab, &a], &none).unwrap();
        assert_eq!(*all[0], own);
        assert_eq!(*all[1], own);
        let c = FolderName::new("C").unwrap();
        md.create_folder(&c).unwrap();
        assert_eq!(*effective_all(&md, &[&c], &none).unwrap()[0], inbox);
        // A kept read stays until its lifetime ends or tern writes the file.
        let kept = Cache::new(std::time::Duration::from_secs(3600));
        assert_eq!(*effective(&md, Some(&c), &kept).unwrap(), inbox);
        std::fs::write(dir.path().join("Maildir/.C/courierimapacl"), "owner al\n").unwrap();
        assert_eq!(*effective(&md, Some(&c), &kept).unwrap(), inbox);
        assert_eq!(
            effective(&md, Some(&c), &none).unwrap().render(),
            "owner al\n"
        );
        write(&md, Some(&c), &own, &kept).unwrap();
        assert_eq!(*effective(&md, Some(&c), &kept).unwrap(), own);
        // A planted link is not followed: the folder has its parent's list.
        let cd = dir.path().join("Maildir/.C/courierimapacl");
        std::fs::remove_file(&cd).unwrap();
        std::os::unix::fs::symlink(dir.path().join("Maildir/.A/courierimapacl"), &cd).unwrap();
        assert_eq!(*effective(&md, Some(&c), &none).unwrap(), inbox);
    }
}
