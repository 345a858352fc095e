//! `maildirmake --checkutf8` and `--convutf8`, as Courier's: converting a
//! Maildir from modified UTF-7 folder names (Courier-IMAP 4) to UTF-8
//! (Courier-IMAP 5 and later).
//!
//! Every folder directory `.R&AOk-sum&AOk-` is renamed `.Résumé`, and every
//! line of `courierimapsubscribed` converted likewise. A name that is not
//! valid modified UTF-7 (a directory already in UTF-8, say) stops the whole
//! conversion before anything changes, as Courier's does: that is what makes
//! `--checkutf8` a safe rehearsal. Courier's tool also creates an empty
//! `courierimapsubscribed` when there is none, in either mode; so does this
//! one, so the two leave the same tree. What it prints is what Courier's
//! prints, line for line.
//!
//! Unlike [`crate::name_form`], which reads either spelling, this is the
//! operator's one-shot conversion: tern itself never renames a folder.

use std::io::Write as _;
use std::path::Path;

use crate::mutf7;

/// What a run printed and how it ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Lines for standard output.
    pub out: Vec<String>,
    /// Lines for standard error.
    pub err: Vec<String>,
    /// Whether it failed (exit status 1).
    pub failed: bool,
}

/// A full name (`INBOX.R&AOk-sum&AOk-`) converted level by level.
fn convert(name: &str) -> Option<String> {
    let levels: Option<Vec<String>> = name.split('.').map(|l| mutf7::decode(l).ok()).collect();
    levels.map(|l| l.join("."))
}

/// Checks (`doit` false) or converts (`doit` true) the Maildir `root`.
/// `mailfilter`, SqWebMail's filter recipe, is refused when it exists:
/// tern does not rewrite maildrop recipes (use Courier's tool for those).
pub fn run(root: &Path, mailfilter: Option<&Path>, doit: bool) -> Report {
    let mut r = Report::default();
    r.out.push(format!("Checking {}:", root.display()));
    let mut renames: Vec<(String, String)> = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) => {
            r.err.push(format!("{}: {e}", root.display()));
            r.failed = true;
            return r;
        }
    };
    for ent in rd.flatten() {
        // A name that is not UTF-8 is certainly not modified UTF-7 either:
        // its replacement characters fail the conversion below.
        let fname = ent.file_name().to_string_lossy().into_owned();
        if !fname.starts_with('.') || fname == "." || fname == ".." {
            continue;
        }
        if !ent.path().join("cur").is_dir() {
            continue;
        }
        let name = format!("INBOX{fname}");
        match convert(&name) {
            None => {
                r.err.push(format!(
                    "Error: {name}: does not appear to be valid modified-UTF7"
                ));
                r.failed = true;
            }
            Some(c) if c != name => renames.push((name, c)),
            Some(_) => {}
        }
    }
    if r.failed {
        return r;
    }
    if let Some(mf) = mailfilter.filter(|m| m.exists()) {
        r.err.push(format!(
            "Error: {}: tern does not convert maildrop recipes; convert it with Courier's maildirmake or by hand",
            mf.display()
        ));
        r.failed = true;
        return r;
    }
    let subs = root.join(crate::subscriptions::COURIER_FILE);
    let subs_new = root.join("courierimapsubscribed.new");
    let verified = match std::fs::read(&subs) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut new = String::with_capacity(text.len());
            for line in text.lines() {
                match convert(line) {
                    Some(c) => {
                        if c != line {
                            r.out.push(format!("Subscription to {line} changed to {c}"));
                        }
                        new.push_str(&c);
                    }
                    None => {
                        r.err.push(format!(
                            "Error: {}: {line}: does not appear to be valid modified-UTF7",
                            subs.display()
                        ));
                        r.failed = true;
                        new.push_str(line);
                    }
                }
                new.push('\n');
            }
            if r.failed {
                return r;
            }
            if doit {
                let written = std::fs::File::create(&subs_new)
                    .and_then(|mut f| {
                        f.write_all(new.as_bytes())?;
                        f.sync_all()
                    })
                    .and_then(|()| {
                        let perm = std::fs::metadata(&subs)?.permissions();
                        std::fs::set_permissions(&subs_new, perm)
                    });
                if let Err(e) = written {
                    r.err.push(format!("{}: {e}", subs_new.display()));
                    r.failed = true;
                    return r;
                }
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Err(e) = std::fs::File::create(&subs) {
                r.err.push(format!("{}: {e}", subs.display()));
                r.failed = true;
                return r;
            }
            false
        }
        Err(e) => {
            r.err.push(format!("{}: {e}", subs.display()));
            r.failed = true;
            return r;
        }
    };
    for (from, to) in &renames {
        r.out.push(format!("Rename {from} to {to}"));
        if doit {
            let (f, t) = (root.join(&from[5..]), root.join(&to[5..]));
            if let Err(e) = std::fs::rename(&f, &t) {
                r.err.push(format!(
                    "FATAL ERROR RENAMING {} to {}: {e}",
                    f.display(),
                    t.display()
                ));
                r.failed = true;
            }
        }
    }
    if verified {
        if doit {
            r.out.push(format!("Updating {}", subs.display()));
            if let Err(e) = std::fs::rename(&subs_new, &subs) {
                r.err.push(format!(
                    "FATAL ERROR RENAMING {} to {}: {e}",
                    subs_new.display(),
                    subs.display()
                ));
                r.failed = true;
            }
        } else {
            r.out.push(format!("Verified {}", subs.display()));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(root: &Path, d: &str) {
        std::fs::create_dir_all(root.join(d).join("cur")).unwrap();
    }

    #[test]
    fn check_then_convert() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        folder(root, "cur");
        folder(root, ".R&AOk-sum&AOk-");
        folder(root, ".Work.Tom&-Jerry");
        folder(root, ".Plain");
        std::fs::write(
            root.join("courierimapsubscribed"),
            "INBOX.R&AOk-sum&AOk-\nINBOX.Plain\n",
        )
        .unwrap();
        let r = run(root, None, false);
        assert!(!r.failed, "{r:?}");
        assert!(r
            .out
            .contains(&"Subscription to INBOX.R&AOk-sum&AOk- changed to INBOX.Résumé".to_owned()));
        assert!(r
            .out
            .contains(&"Rename INBOX.R&AOk-sum&AOk- to INBOX.Résumé".to_owned()));
        assert!(r
            .out
            .contains(&"Rename INBOX.Work.Tom&-Jerry to INBOX.Work.Tom&Jerry".to_owned()));
        assert!(r.out.last().unwrap().starts_with("Verified "));
        assert!(
            root.join(".R&AOk-sum&AOk-").is_dir(),
            "a check changes nothing"
        );
        let r = run(root, None, true);
        assert!(!r.failed, "{r:?}");
        assert!(root.join(".Résumé").is_dir() && root.join(".Work.Tom&Jerry").is_dir());
        assert_eq!(
            std::fs::read_to_string(root.join("courierimapsubscribed")).unwrap(),
            "INBOX.Résumé\nINBOX.Plain\n"
        );
        // A second conversion finds UTF-8 names: not modified UTF-7.
        let r = run(root, None, false);
        assert!(r.failed);
        assert!(
            r.err[0].contains("does not appear to be valid modified-UTF7"),
            "{r:?}"
        );
    }

    #[test]
    fn a_missing_subscription_file_is_created_empty_as_courier_does() {
        let t = tempfile::tempdir().unwrap();
        folder(t.path(), ".A");
        let r = run(t.path(), None, false);
        assert!(!r.failed);
        assert_eq!(r.out.len(), 1);
        assert_eq!(
            std::fs::read(t.path().join("courierimapsubscribed")).unwrap(),
            b""
        );
    }
}
