//! Subscriptions, as Courier-IMAP and Dovecot keep them at a Maildir root.
//!
//! Courier's `courierimapsubscribed` lists one full name a line,
//! `INBOX.Work`, spelled as the Maildir spells folder directories (UTF-8 in
//! Courier 5, modified UTF-7 before). Dovecot's `subscriptions` lists names
//! without a namespace prefix; from its version 2 on, the file starts with
//! `V<TAB>2` and an empty line, and each name's hierarchy levels are
//! separated by a TAB, each level escaped with `\x01` (`\x011` for `\x01`,
//! `\x01t` for a TAB, `\x01r`, `\x01n`).
//!
//! tern reads both and keeps both: a change is written to Courier's file,
//! and to Dovecot's when the Maildir has one, so a switch back to either
//! server finds the same subscriptions. Lines tern does not change are
//! written back byte for byte.

use std::path::Path;

use crate::error::{MaildirError, Result};
use crate::name_form::{self, NameForm};
use crate::unique::{read_head_nofollow, write_atomic};

/// Courier-IMAP's subscription list.
pub const COURIER_FILE: &str = "courierimapsubscribed";
/// Dovecot's subscription list.
pub const DOVECOT_FILE: &str = "subscriptions";

const DOVECOT_V2_HEADER: &str = "V\t2\n\n";

/// Files longer than this are read no further: a subscription list is a
/// few kilobytes, and a planted huge file must not cost a session gigabytes.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// A subscribed name: `INBOX`, or `INBOX.` and a folder's Unicode name.
pub type FullName = String;

fn read_limited(path: &Path) -> Result<Option<Vec<u8>>> {
    match read_head_nofollow(path, MAX_FILE_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

/// The Unicode full name a Courier line spells.
fn courier_line(line: &str, form: NameForm) -> FullName {
    if line.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    match line.strip_prefix("INBOX.") {
        Some(rest) => format!("INBOX.{}", name_form::decode_dir_name(rest, || form)),
        None => line.to_owned(),
    }
}

/// The Courier line for a Unicode full name.
fn courier_spelling(name: &str, form: NameForm) -> String {
    match name.strip_prefix("INBOX.") {
        Some(rest) => format!(
            "INBOX.{}",
            name_form::encode_dir_name(rest, form).unwrap_or_else(|| crate::mutf7::encode(rest))
        ),
        None => name.to_owned(),
    }
}

fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            '\0' => out.push_str("\x010"),
            c => out.push(c),
        }
    }
    out
}

/// Dovecot's file: its version, and its lines after the header.
struct DovecotFile {
    v2: bool,
    lines: Vec<String>,
}

impl DovecotFile {
    fn parse(bytes: &[u8]) -> DovecotFile {
        let text = String::from_utf8_lossy(bytes);
        let (v2, body) = match text.strip_prefix(DOVECOT_V2_HEADER) {
            Some(rest) => (true, rest),
            None => (false, &*text),
        };
        DovecotFile {
            v2,
            lines: body
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The Unicode full name a line spells.
    fn name(&self, line: &str, form: NameForm) -> FullName {
        let storage = if self.v2 {
            line.split('\t')
                .map(tab_unescape)
                .collect::<Vec<_>>()
                .join(".")
        } else {
            line.to_owned()
        };
        let storage = storage.strip_suffix('.').unwrap_or(&storage);
        if storage.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_owned()
        } else {
            format!("INBOX.{}", name_form::decode_dir_name(storage, || form))
        }
    }

    fn spelling(&self, name: &str, form: NameForm) -> String {
        let Some(rest) = name.strip_prefix("INBOX.") else {
            return name.to_owned();
        };
        let raw =
            name_form::encode_dir_name(rest, form).unwrap_or_else(|| crate::mutf7::encode(rest));
        if self.v2 {
            raw.split('.')
                .map(tab_escape)
                .collect::<Vec<_>>()
                .join("\t")
        } else {
            raw
        }
    }

    fn render(&self) -> String {
        let mut text = if self.v2 {
            DOVECOT_V2_HEADER.to_owned()
        } else {
            String::new()
        };
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        text
    }
}

/// Every subscribed name in either file, each once, in file order.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn read(root: &Path, form: NameForm) -> Result<Vec<FullName>> {
    let mut out: Vec<FullName> = Vec::new();
    let mut push = |n: FullName| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    if let Some(b) = read_limited(&root.join(COURIER_FILE))? {
        for line in String::from_utf8_lossy(&b)
            .lines()
            .filter(|l| !l.is_empty())
        {
            push(courier_line(line, form));
        }
    }
    if let Some(b) = read_limited(&root.join(DOVECOT_FILE))? {
        let d = DovecotFile::parse(&b);
        for line in &d.lines {
            push(d.name(line, form));
        }
    }
    Ok(out)
}

/// Subscribes or unsubscribes `name` (a Unicode full name) in Courier's
/// file, and in Dovecot's if there is one. Each file is rewritten
/// atomically, and only when it changes.
///
/// # Errors
/// I/O errors.
pub fn set(root: &Path, form: NameForm, name: &str, on: bool) -> Result<()> {
    let cpath = root.join(COURIER_FILE);
    let mut lines: Vec<String> = match read_limited(&cpath)? {
        Some(b) => String::from_utf8_lossy(&b)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    if edit(
        &mut lines,
        |l| courier_line(l, form) == name,
        on,
        || courier_spelling(name, form),
    ) {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_atomic(&cpath, text.as_bytes())?;
    }
    let dpath = root.join(DOVECOT_FILE);
    if let Some(b) = read_limited(&dpath)? {
        let mut d = DovecotFile::parse(&b);
        let mut lines = std::mem::take(&mut d.lines);
        let changed = edit(
            &mut lines,
            |l| d.name(l, form) == name,
            on,
            || d.spelling(name, form),
        );
        d.lines = lines;
        if changed {
            write_atomic(&dpath, d.render().as_bytes())?;
        }
    }
    Ok(())
}

/// Adds (`on`) or removes the lines `is_it` picks; true if anything changed.
fn edit(
    lines: &mut Vec<String>,
    is_it: impl Fn(&str) -> bool,
    on: bool,
    spelling: impl FnOnce() -> String,
) -> bool {
    let had = lines.iter().any(|l| is_it(l));
    if on == had {
        return false;
    }
    if on {
        lines.push(spelling());
    } else {
        lines.retain(|l| !is_it(l));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_and_both_spellings_are_read() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(COURIER_FILE),
            "INBOX.Entwürfe\nINBOX.R&AOk-sum&AOk-\nINBOX.Sent\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join(DOVECOT_FILE),
            "V\t2\n\nINBOX\nWork\tSub\nSent\nTab\x01tName\n",
        )
        .unwrap();
        assert_eq!(
            read(t.path(), NameForm::Utf8).unwrap(),
            [
                "INBOX.Entwürfe",
                "INBOX.Résumé",
                "INBOX.Sent",
                "INBOX",
                "INBOX.Work.Sub",
                "INBOX.Tab\tName"
            ]
        );
    }

    #[test]
    fn changes_reach_both_files_in_their_own_formats() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(COURIER_FILE), "INBOX.Entw&APw-rfe\n").unwrap();
        std::fs::write(t.path().join(DOVECOT_FILE), "V\t2\n\nEntw&APw-rfe\n").unwrap();
        set(t.path(), NameForm::Mutf7, "INBOX.Work.Größe", true).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join(COURIER_FILE)).unwrap(),
            "INBOX.Entw&APw-rfe\nINBOX.Work.Gr&APYA3w-e\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join(DOVECOT_FILE)).unwrap(),
            "V\t2\n\nEntw&APw-rfe\nWork\tGr&APYA3w-e\n"
        );
        // Unsubscribing by the Unicode name removes either spelling.
        set(t.path(), NameForm::Mutf7, "INBOX.Entwürfe", false).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join(DOVECOT_FILE)).unwrap(),
            "V\t2\n\nWork\tGr&APYA3w-e\n"
        );
        assert_eq!(
            read(t.path(), NameForm::Mutf7).unwrap(),
            ["INBOX.Work.Größe"]
        );
    }

    #[test]
    fn a_courier_5_maildir_gets_utf8_and_no_dovecot_file() {
        let t = tempfile::tempdir().unwrap();
        set(t.path(), NameForm::Utf8, "INBOX.Entwürfe", true).unwrap();
        set(t.path(), NameForm::Utf8, "INBOX.Entwürfe", true).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join(COURIER_FILE)).unwrap(),
            "INBOX.Entwürfe\n"
        );
        assert!(!t.path().join(DOVECOT_FILE).exists());
    }

    proptest::proptest! {
        #[test]
        fn any_file_reads_without_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let t = tempfile::tempdir().unwrap();
            std::fs::write(t.path().join(DOVECOT_FILE), &b).unwrap();
            std::fs::write(t.path().join(COURIER_FILE), &b).unwrap();
            for form in [NameForm::Utf8, NameForm::Mutf7] {
                let names = read(t.path(), form).unwrap();
                proptest::prop_assert!(names.iter().all(|n| !n.contains('\n')));
            }
        }
    }

    #[test]
    fn escaping_round_trips() {
        for s in ["a\tb", "\x01", "x\x011", "plain"] {
            assert_eq!(tab_unescape(&tab_escape(s)), s);
        }
    }
}
