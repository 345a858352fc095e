//! How a Maildir spells folder names on disk.
//!
//! A folder name is Unicode; the directory that holds it spells it one of
//! two ways. Courier-IMAP 5 and later write UTF-8 (`.Entwürfe`), which is
//! what `maildirmake --convutf8` converts a Maildir to; Courier-IMAP 4 and
//! Dovecot (unless `mailbox_list_utf8` is set) write IMAP's modified UTF-7
//! (`.Entw&APw-rfe`). tern reads both in one Maildir, so a half-converted
//! Maildir loses nothing, and creates folders the way the Maildir already
//! does.
//!
//! The two spellings agree on every ASCII name without `&`. A directory
//! name with 8-bit bytes can only be UTF-8. An ASCII name holding a
//! modified UTF-7 shift that stands for non-ASCII characters (`&APw-`) is
//! read as modified UTF-7: no one types that as a folder name. What is left
//! is `&-`: in modified UTF-7 it is `&`, in UTF-8 it is those two
//! characters; only there does the Maildir's form decide.

use std::path::Path;

use crate::mutf7;

/// The spelling of folder names in one Maildir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameForm {
    /// UTF-8, as Courier-IMAP 5 and 6 write.
    Utf8,
    /// Modified UTF-7 (RFC 3501 §5.1.3), as Courier-IMAP 4 and Dovecot write.
    Mutf7,
}

/// What the configuration asks for (`mail.folder_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameSetting {
    /// The form the Maildir already uses ([`detect`]).
    #[default]
    Auto,
    /// Always UTF-8.
    Utf8,
    /// Always modified UTF-7.
    Mutf7,
}

/// Whether `raw` (ASCII) holds a modified UTF-7 shift for non-ASCII text.
fn has_wide_shift(raw: &str) -> bool {
    raw.contains('&') && mutf7::decode(raw).is_ok_and(|d| !d.is_ascii())
}

/// The Unicode name a directory spells (the directory name without its
/// leading dot). `form` is asked only for the one case it decides (an ASCII
/// name with `&-`), because finding it out reads the Maildir root.
pub fn decode_dir_name(raw: &str, form: impl FnOnce() -> NameForm) -> String {
    if !raw.is_ascii() || !raw.contains('&') {
        return raw.to_owned();
    }
    match mutf7::decode(raw) {
        Ok(d) if !d.is_ascii() => d,
        Ok(d) if form() == NameForm::Mutf7 => d,
        _ => raw.to_owned(),
    }
}

/// The directory name (without its leading dot) that spells `name` in
/// `form`, or `None` when that spelling would read back as another name
/// (a UTF-8 name that happens to look like modified UTF-7).
pub fn encode_dir_name(name: &str, form: NameForm) -> Option<String> {
    let raw = match form {
        NameForm::Mutf7 => mutf7::encode(name),
        NameForm::Utf8 => name.to_owned(),
    };
    (decode_dir_name(&raw, || form) == name).then_some(raw)
}

/// The spellings of `name` to look for on disk, the Maildir's own first.
/// A name that is the same in both forms has one.
pub fn candidates(name: &str, form: NameForm) -> Vec<String> {
    let other = match form {
        NameForm::Utf8 => NameForm::Mutf7,
        NameForm::Mutf7 => NameForm::Utf8,
    };
    let mut out = Vec::with_capacity(2);
    for f in [form, other] {
        if let Some(raw) = encode_dir_name(name, f) {
            if !out.contains(&raw) {
                out.push(raw);
            }
        }
    }
    out
}

/// Whether a name needs the Maildir's form to be spelled or read at all.
pub fn form_matters(name: &str) -> bool {
    !name.is_ascii() || name.contains('&')
}

/// Files at a Maildir root that only Dovecot writes.
const DOVECOT_FILES: [&str; 6] = [
    "dovecot-uidvalidity",
    "dovecot.index.log",
    "dovecot-uidlist",
    "dovecot-keywords",
    "dovecot.index",
    "dovecot.list.index",
];

/// Finds the form a Maildir uses: UTF-8 if any folder directory has 8-bit
/// bytes; modified UTF-7 if any has a shift for non-ASCII text; otherwise,
/// with nothing to tell by, modified UTF-7 for a Maildir that Dovecot and not
/// Courier keeps (Dovecot's default), UTF-8 (Courier 5's) for any other.
pub fn detect(root: &Path) -> NameForm {
    let mut wide_shift = false;
    if let Ok(rd) = std::fs::read_dir(root) {
        for ent in rd.flatten() {
            let name = ent.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.first() != Some(&b'.') {
                continue;
            }
            if !bytes.is_ascii() {
                return NameForm::Utf8;
            }
            if !wide_shift {
                wide_shift = name.to_str().is_some_and(|s| has_wide_shift(&s[1..]));
            }
        }
    }
    if wide_shift {
        return NameForm::Mutf7;
    }
    let dovecot = DOVECOT_FILES.iter().any(|f| root.join(f).exists());
    let courier = root.join(crate::uiddb::FILE_NAME).exists()
        || root.join(crate::maildir::SUBSCRIPTIONS).exists();
    if dovecot && !courier {
        NameForm::Mutf7
    } else {
        NameForm::Utf8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_spelling_reads_as_the_same_name() {
        let never = || panic!("form asked for an unambiguous name");
        assert_eq!(decode_dir_name("Entwürfe", never), "Entwürfe");
        assert_eq!(decode_dir_name("Entw&APw-rfe", never), "Entwürfe");
        assert_eq!(decode_dir_name("Work.2024", never), "Work.2024");
        assert_eq!(decode_dir_name("R&AOk-sum&AOk-.a&-b", never), "Résumé.a&b");
        // Only `&-` alone depends on the Maildir.
        assert_eq!(
            decode_dir_name("Tom&-Jerry", || NameForm::Utf8),
            "Tom&-Jerry"
        );
        assert_eq!(
            decode_dir_name("Tom&-Jerry", || NameForm::Mutf7),
            "Tom&Jerry"
        );
        // Not modified UTF-7 at all: the bytes as they are.
        assert_eq!(decode_dir_name("A&B", never), "A&B");
    }

    #[test]
    fn spelling_round_trips_or_is_refused() {
        for form in [NameForm::Utf8, NameForm::Mutf7] {
            for name in ["Entwürfe", "Work", "Tom&Jerry", "日本語.Sub", "a&-b"] {
                let raw = encode_dir_name(name, form).unwrap();
                assert_eq!(decode_dir_name(&raw, || form), name, "{form:?} {name}");
            }
        }
        assert_eq!(
            encode_dir_name("Entwürfe", NameForm::Mutf7).unwrap(),
            "Entw&APw-rfe"
        );
        // In a UTF-8 Maildir this name would read back as "Ré".
        assert_eq!(encode_dir_name("R&AOk-", NameForm::Utf8), None);
        assert_eq!(
            candidates("Entwürfe", NameForm::Utf8),
            ["Entwürfe", "Entw&APw-rfe"]
        );
        assert_eq!(candidates("Work", NameForm::Mutf7), ["Work"]);
    }

    #[test]
    fn detection() {
        let t = tempfile::tempdir().unwrap();
        let mk = |d: &str| std::fs::create_dir(t.path().join(d)).unwrap();
        assert_eq!(detect(t.path()), NameForm::Utf8);
        std::fs::write(t.path().join("dovecot-uidlist"), "3 V1 N1\n").unwrap();
        assert_eq!(detect(t.path()), NameForm::Mutf7);
        std::fs::write(t.path().join("courierimapuiddb"), "1 1 1\n").unwrap();
        assert_eq!(detect(t.path()), NameForm::Utf8);
        mk(".Entw&APw-rfe");
        assert_eq!(detect(t.path()), NameForm::Mutf7);
        mk(".Résumé");
        assert_eq!(detect(t.path()), NameForm::Utf8);
    }

    proptest::proptest! {
        #[test]
        fn any_name_round_trips_in_mutf7(s in "\\PC{1,16}") {
            let raw = encode_dir_name(&s, NameForm::Mutf7).unwrap();
            proptest::prop_assert!(raw.is_ascii());
            proptest::prop_assert_eq!(decode_dir_name(&raw, || NameForm::Mutf7), s);
        }
    }
}
