//! Dovecot's `dovecot-uidlist`, kept in step with tern's UIDs.
//!
//! A folder that Dovecot served has a `dovecot-uidlist` (version 3:
//! `3 V<uidvalidity> N<next uid> G<guid>`, then `<uid> [fields] :<file>` a
//! message; version 1 is Courier's format). tern numbers messages in
//! `courierimapuiddb` and takes the list over the first time
//! ([`crate::uiddb`]); while the folder still has Dovecot's list, every UID
//! tern gives is written there too, and a message Dovecot numbered that tern
//! has not keeps Dovecot's UID, so a switch back to Dovecot, or both serving
//! one Maildir during a migration, shows every message under one UID.
//!
//! Lines tern did not write are kept byte for byte (Dovecot's extension
//! fields, GUIDs, POP3 UIDLs). The list is rewritten atomically under
//! Dovecot's own lock, `dovecot-uidlist.lock`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::error::{MaildirError, Result};
use crate::lock::DotLock;
use crate::uiddb::{ParseOutcome, UidDb, DOVECOT_FILE_NAME};
use crate::unique::{read_nofollow, write_atomic};

/// The dot-lock Dovecot takes to rewrite the list.
pub const LOCK_NAME: &str = "dovecot-uidlist.lock";

/// The folder's Dovecot list, parsed, if it has one that parses.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read(dir: &Path) -> Result<Option<UidDb>> {
    let path = dir.join(DOVECOT_FILE_NAME);
    match read_nofollow(&path) {
        Ok(b) => match UidDb::parse_dovecot(&String::from_utf8_lossy(&b)) {
            ParseOutcome::Ok(db) => Ok(Some(db)),
            ParseOutcome::Corrupt { .. } => Ok(None),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

/// The folder's Dovecot list, read once under Dovecot's own lock, held
/// from before tern gives UIDs until it has written them in: Dovecot can
/// give none meanwhile, so no UID is given twice, and the list is read
/// once per assignment, not once to adopt and again to follow.
#[derive(Debug)]
pub struct Locked {
    path: std::path::PathBuf,
    text: String,
    _lock: DotLock,
}

/// Locks and reads the folder's Dovecot list; `None` when it has none.
///
/// # Errors
/// I/O errors other than a missing file, or Dovecot's lock that could not
/// be had.
pub fn lock(dir: &Path) -> Result<Option<Locked>> {
    let path = dir.join(DOVECOT_FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let lock = DotLock::acquire_dovecot(&dir.join(LOCK_NAME))?;
    match read_nofollow(&path) {
        Ok(b) => Ok(Some(Locked {
            path,
            text: String::from_utf8_lossy(&b).into_owned(),
            _lock: lock,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

impl Locked {
    /// Takes into `db` the UIDs Dovecot gave that tern has not seen: each
    /// message Dovecot numbered at or above `db`'s next UID keeps its UID,
    /// and the next UID passes Dovecot's. Nothing happens when the list is
    /// of another UIDVALIDITY or does not parse. Returns what was taken, in
    /// UID order.
    pub fn adopt(&self, db: &mut UidDb) -> Vec<(u32, Arc<str>)> {
        let ParseOutcome::Ok(dovecot) = UidDb::parse_dovecot(&self.text) else {
            return Vec::new();
        };
        if dovecot.uidvalidity != db.uidvalidity {
            return Vec::new();
        }
        let mut taken: Vec<(u32, Arc<str>)> = dovecot
            .uids
            .iter()
            .filter(|(b, u)| **u >= db.next_uid && **u < u32::MAX && !db.uids.contains_key(*b))
            .map(|(b, u)| (*u, b.clone()))
            .collect();
        taken.sort_unstable();
        for (u, b) in &taken {
            db.uids.insert(b.clone(), *u);
            db.next_uid = db.next_uid.max(u + 1);
        }
        db.next_uid = db.next_uid.max(dovecot.next_uid);
        taken
    }

    /// Writes `db`'s UIDs into the list, then lets Dovecot's lock go.
    ///
    /// # Errors
    /// I/O errors writing it.
    pub fn follow(self, db: &UidDb) -> Result<()> {
        if let Some(new) = merged(&self.text, db) {
            write_atomic(&self.path, new.as_bytes())?;
        }
        Ok(())
    }
}

/// The list's text with `db`'s UIDs in it: lines for the messages it does
/// not number yet, and a next UID no lower than `db`'s. A list of another
/// UIDVALIDITY (tern renumbered the folder) is written anew from `db`.
/// `None` when nothing changes.
pub fn merged(text: &str, db: &UidDb) -> Option<String> {
    let v3 = !text.starts_with("1 ");
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let same_validity = match UidDb::parse_dovecot(text) {
        ParseOutcome::Ok(d) => d.uidvalidity == db.uidvalidity,
        ParseOutcome::Corrupt { .. } => false,
    };
    let body: Vec<&str> = if same_validity {
        lines.filter(|l| !l.is_empty()).collect()
    } else {
        Vec::new()
    };
    let mut known_uids: HashSet<u32> = HashSet::new();
    let mut known_names: HashSet<&str> = HashSet::new();
    for l in &body {
        if let Some(uid) = l
            .split_ascii_whitespace()
            .next()
            .and_then(|u| u.parse().ok())
        {
            known_uids.insert(uid);
        }
        let name = if v3 {
            l.split_once(" :").map(|(_, n)| n)
        } else {
            l.split_once(' ').map(|(_, n)| n)
        };
        if let Some(n) = name {
            known_names.insert(crate::flags::split_name(n).0);
        }
    }
    let mut added: Vec<(u32, &Arc<str>)> = db
        .uids
        .iter()
        .filter(|(b, u)| !known_uids.contains(u) && !known_names.contains(&***b))
        .filter(|(b, _)| !b.contains(['\r', '\n']))
        .map(|(b, u)| (*u, b))
        .collect();
    added.sort_unstable();
    let old_next = header
        .split_ascii_whitespace()
        .find_map(|f| f.strip_prefix('N').and_then(|n| n.parse::<u32>().ok()))
        .unwrap_or(0);
    if same_validity && added.is_empty() && (!v3 || old_next >= db.next_uid) {
        return None;
    }
    let next = if same_validity {
        old_next.max(db.next_uid)
    } else {
        db.next_uid
    };
    let mut out = String::with_capacity(text.len() + added.len() * 48);
    if v3 {
        out.push_str(&format!("3 V{} N{next}", db.uidvalidity));
        if same_validity {
            // Dovecot's other header fields (the mailbox GUID) stay.
            for f in header.split_ascii_whitespace().skip(1) {
                if !f.starts_with('V') && !f.starts_with('N') {
                    out.push(' ');
                    out.push_str(f);
                }
            }
        }
    } else {
        out.push_str(&format!("1 {} {next}", db.uidvalidity));
    }
    out.push('\n');
    for l in &body {
        out.push_str(l);
        out.push('\n');
    }
    for (uid, base) in added {
        if v3 {
            out.push_str(&format!("{uid} :{base}\n"));
        } else {
            out.push_str(&format!("{uid} {base}\n"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecots_lock_is_held_from_the_adoption_to_the_write() {
        let t = tempfile::tempdir().unwrap();
        let list = t.path().join(DOVECOT_FILE_NAME);
        std::fs::write(&list, "3 V7 N5\n4 :4.M4.h\n").unwrap();
        let held = lock(t.path()).unwrap().expect("a list");
        assert!(t.path().join(LOCK_NAME).exists(), "Dovecot's lock taken");
        let mut d = db(7, 1, &[]);
        assert_eq!(held.adopt(&mut d), vec![(4, Arc::from("4.M4.h"))]);
        d.uids.insert(Arc::from("5.M5.h"), 5);
        d.next_uid = 6;
        // Dovecot, wanting to number a message now, waits for the lock.
        let dir = t.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let dovecot = std::thread::spawn(move || {
            let _l = DotLock::acquire_dovecot(&dir.join(LOCK_NAME)).unwrap();
            tx.send(std::fs::read_to_string(dir.join(DOVECOT_FILE_NAME)).unwrap())
                .unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(rx.try_recv().is_err(), "Dovecot got in between");
        held.follow(&d).unwrap();
        let seen = rx.recv().unwrap();
        dovecot.join().unwrap();
        assert!(
            seen.contains(" :5.M5.h"),
            "Dovecot reads tern's UID 5: {seen}"
        );
        assert!(lock(&t.path().join("none")).unwrap().is_none());
    }

    fn db(validity: u32, next: u32, entries: &[(&str, u32)]) -> UidDb {
        let mut d = UidDb::with_validity(validity);
        d.next_uid = next;
        for (b, u) in entries {
            d.uids.insert(Arc::from(*b), *u);
        }
        d
    }

    #[test]
    fn new_uids_are_added_and_dovecots_lines_kept() {
        let text = "3 V777 N90 G3085f01b\n55 :2000.M1.h,S=20\n89 W21 P1a2b :2001.M2.h,S=20\n";
        let d = db(
            777,
            92,
            &[
                ("2000.M1.h,S=20", 55),
                ("2001.M2.h,S=20", 89),
                ("2002.M3.h", 90),
                ("2003.M4.h", 91),
            ],
        );
        assert_eq!(
            merged(text, &d).unwrap(),
            "3 V777 N92 G3085f01b\n55 :2000.M1.h,S=20\n89 W21 P1a2b :2001.M2.h,S=20\n90 :2002.M3.h\n91 :2003.M4.h\n"
        );
        let again = merged(&merged(text, &d).unwrap(), &d);
        assert_eq!(again, None, "nothing to do the second time");
        let parsed = match UidDb::parse_dovecot(&merged(text, &d).unwrap()) {
            ParseOutcome::Ok(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(parsed.uids, d.uids);
    }

    #[test]
    fn another_validity_is_written_anew_and_version_1_stays_version_1() {
        let d = db(900, 3, &[("a.M1.h", 1), ("b.M2.h", 2)]);
        assert_eq!(
            merged("3 V777 N90 Gx\n55 :old.M9.h\n", &d).unwrap(),
            "3 V900 N3\n1 :a.M1.h\n2 :b.M2.h\n"
        );
        assert_eq!(
            merged("1 900 2\n1 a.M1.h\n", &d).unwrap(),
            "1 900 3\n1 a.M1.h\n2 b.M2.h\n"
        );
    }

    #[test]
    fn uids_dovecot_gave_are_taken_and_never_given_again() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(DOVECOT_FILE_NAME),
            "3 V7 N40\n1 :a.M1.h\n20 :d.M4.h\n30 :e.M5.h\n",
        )
        .unwrap();
        let mut d = db(7, 25, &[("a.M1.h", 1), ("x.M9.h", 24)]);
        let held = lock(t.path()).unwrap().unwrap();
        let taken = held.adopt(&mut d);
        assert_eq!(
            taken,
            [(30, Arc::from("e.M5.h"))],
            "20 is below tern's next UID"
        );
        assert_eq!(d.next_uid, 40);
        let mut other = db(8, 2, &[]);
        assert!(held.adopt(&mut other).is_empty());
        assert_eq!(other.next_uid, 2);
    }

    #[test]
    fn a_folder_without_dovecot_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        assert!(lock(t.path()).unwrap().is_none());
        assert!(!t.path().join(DOVECOT_FILE_NAME).exists());
        std::fs::write(t.path().join(DOVECOT_FILE_NAME), "3 V1 N1\n").unwrap();
        let held = lock(t.path()).unwrap().unwrap();
        held.follow(&db(1, 2, &[("a", 1)])).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join(DOVECOT_FILE_NAME)).unwrap(),
            "3 V1 N2\n1 :a\n"
        );
        assert!(!t.path().join(LOCK_NAME).exists());
    }
}
