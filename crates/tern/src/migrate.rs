//! `tern migrate check DIR...`: what a switch to tern keeps, read-only.
//!
//! For each Maildir (DIR itself, or every Maildir found below it): whose
//! files it holds, each folder's UIDVALIDITY and UIDs, keywords,
//! subscriptions, where POP3 UIDLs come from, how folder names are spelled
//! and which collide, and one verdict per thing a client sees: kept, will be
//! downloaded again, or needs a setting (named). Nothing is written: files
//! are read as they are, never through the storage layer that would number
//! messages or set a damaged list aside.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tern_maildir::name_form::{self, NameForm};
use tern_maildir::uiddb::{ParseOutcome, UidDb};
use tern_maildir::{mutf7, Maildir};

/// How deep below a DIR Maildirs are looked for.
const MAX_DEPTH: usize = 6;
/// Largest file read (a UID list of a million messages is ~50 MB).
const MAX_FILE: u64 = 256 << 20;

#[derive(Debug, Serialize)]
pub struct Report {
    pub path: PathBuf,
    /// Courier-IMAP's files found at the root.
    pub courier_files: Vec<String>,
    /// Dovecot's files found at the root.
    pub dovecot_files: Vec<String>,
    /// How the Maildir spells non-ASCII folder names.
    pub folder_names: &'static str,
    pub folders: Vec<FolderReport>,
    /// Two directories spelling one name: (name, served, left out).
    pub conflicts: Vec<(String, String, String)>,
    pub subscriptions: usize,
    pub subscription_files: Vec<String>,
    pub pop3_uidls: &'static str,
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
pub struct FolderReport {
    /// As clients see it under Courier's namespace.
    pub name: String,
    /// Its directory.
    pub dir: String,
    /// `ascii`, `utf8` or `mutf7`.
    pub spelling: &'static str,
    pub messages: usize,
    /// `courierimapuiddb`, `dovecot-uidlist`, `damaged` or `none`.
    pub uid_list: &'static str,
    pub uidvalidity: Option<u32>,
    pub lowest_uid: Option<u32>,
    pub highest_uid: Option<u32>,
    /// Messages no list numbers yet (new to every server).
    pub unnumbered: usize,
    pub keywords: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub item: String,
    /// `kept`, `downloaded again`, `needs a setting` or `needs attention`.
    pub verdict: &'static str,
    pub detail: String,
    pub setting: Option<String>,
}

fn verdict(item: &str, verdict: &'static str, detail: String, setting: Option<&str>) -> Verdict {
    Verdict {
        item: item.to_owned(),
        verdict,
        detail,
        setting: setting.map(str::to_owned),
    }
}

fn read(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.len() > MAX_FILE {
        return None;
    }
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Base names of the messages in a folder directory.
fn messages(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with('.') {
                out.push(tern_maildir::flags::split_name(&n).0.to_owned());
            }
        }
    }
    out
}

fn folder_report(name: String, dir: &Path, raw: &str, dir_name: String) -> FolderReport {
    let spelling = if raw.is_ascii() {
        if raw.contains('&') && name_form::decode_dir_name(raw, || NameForm::Utf8) != raw {
            "mutf7"
        } else {
            "ascii"
        }
    } else {
        "utf8"
    };
    let msgs = messages(dir);
    let (uid_list, db) = match read(&dir.join(tern_maildir::uiddb::FILE_NAME)) {
        Some(t) => match UidDb::parse_courier(&t) {
            ParseOutcome::Ok(db) => ("courierimapuiddb", Some(db)),
            ParseOutcome::Corrupt { .. } => ("damaged", None),
        },
        None => match read(&dir.join(tern_maildir::uiddb::DOVECOT_FILE_NAME)) {
            Some(t) => match UidDb::parse_dovecot(&t) {
                ParseOutcome::Ok(db) => ("dovecot-uidlist", Some(db)),
                ParseOutcome::Corrupt { .. } => ("damaged", None),
            },
            None => ("none", None),
        },
    };
    let numbered: Vec<u32> = db
        .as_ref()
        .map(|d| {
            msgs.iter()
                .filter_map(|b| d.uids.get(b.as_str()).copied())
                .collect()
        })
        .unwrap_or_default();
    let mut keywords: BTreeSet<String> = BTreeSet::new();
    if let Some(t) = read(
        &dir.join(tern_maildir::keywords::DIR_NAME)
            .join(tern_maildir::keywords::LIST_NAME),
    ) {
        for set in tern_maildir::keywords::KeywordDb::parse(&t)
            .by_base
            .values()
        {
            keywords.extend(set.iter().map(|k| k.to_string()));
        }
    }
    if let Some(t) = read(&dir.join(tern_maildir::dovecot_keywords::FILE_NAME)) {
        keywords.extend(
            tern_maildir::dovecot_keywords::DovecotKeywords::parse(&t)
                .render()
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(_, n)| n.to_owned())),
        );
    }
    FolderReport {
        name,
        dir: dir_name,
        spelling,
        messages: msgs.len(),
        uid_list,
        uidvalidity: db.as_ref().map(|d| d.uidvalidity),
        lowest_uid: numbered.iter().min().copied(),
        highest_uid: numbered.iter().max().copied(),
        unnumbered: msgs.len() - numbered.len(),
        keywords: keywords.into_iter().collect(),
    }
}

/// Checks one Maildir.
pub fn check(root: &Path) -> Report {
    let present = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| root.join(n).exists())
            .map(|n| (*n).to_owned())
            .collect()
    };
    let courier_files = present(&[
        "courierimapuiddb",
        "courierimapkeywords",
        "courierimapsubscribed",
        "courierpop3dsizelist",
        "maildirsize",
    ]);
    let dovecot_files = present(&[
        "dovecot-uidlist",
        "dovecot-keywords",
        "dovecot-uidvalidity",
        "dovecot.index",
        "dovecot.index.log",
        "dovecot.list.index.log",
        "subscriptions",
    ]);
    let md = Maildir::new(root);
    let form = md.name_form();
    let mut folders = vec![folder_report(
        "INBOX".to_owned(),
        root,
        "INBOX",
        ".".to_owned(),
    )];
    let (listed, conflicts) = md.scan_folders().unwrap_or_default();
    for f in &listed {
        let dir = md.folder_dir(Some(&f.name));
        let raw = dir
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches('.').to_owned())
            .unwrap_or_default();
        folders.push(folder_report(
            format!("INBOX.{}", mutf7::encode(f.name.as_str())),
            &dir,
            &raw,
            format!(".{raw}"),
        ));
    }
    let subs = md.subscriptions().unwrap_or_default();
    let subscription_files = present(&["courierimapsubscribed", "subscriptions"]);
    let dovecot_p = read(&root.join("dovecot-uidlist"))
        .is_some_and(|t| !tern_maildir::pop3list::dovecot_uidls(&t).is_empty());
    let pop3_uidls = if dovecot_p {
        "dovecot-uidlist"
    } else if root.join("courierpop3dsizelist").exists() {
        "courierpop3dsizelist"
    } else if !dovecot_files.is_empty() {
        "computed by Dovecot"
    } else {
        "computed as Courier does"
    };
    let mut verdicts = Vec::new();
    for f in &folders {
        let item = format!("UIDs of {}", f.name);
        match f.uid_list {
            "courierimapuiddb" | "dovecot-uidlist" => verdicts.push(verdict(
                &item,
                "kept",
                format!(
                    "UIDVALIDITY {} from {}; {} message(s) not numbered yet (new to every server)",
                    f.uidvalidity.unwrap_or(0),
                    f.uid_list,
                    f.unnumbered
                ),
                None,
            )),
            "damaged" => verdicts.push(verdict(
                &item,
                "downloaded again",
                "the UID list is damaged: it is set aside and the folder gets a new UIDVALIDITY"
                    .into(),
                None,
            )),
            _ if f.messages > 0 => verdicts.push(verdict(
                &item,
                "downloaded again",
                format!(
                    "{} message(s) and no UID list: numbered anew under a new UIDVALIDITY",
                    f.messages
                ),
                None,
            )),
            _ => {}
        }
    }
    let dovecot_only = dovecot_only(&courier_files, &dovecot_files);
    if dovecot_only {
        verdicts.push(verdict(
            "folder names",
            "needs a setting",
            "a Dovecot Maildir: with Dovecot's default namespace its clients know `Work`, not `INBOX.Work`".into(),
            Some("imap.namespace_prefix = \"\""),
        ));
    } else {
        verdicts.push(verdict(
            "folder names",
            "kept",
            "Courier's namespace, INBOX. and .".into(),
            None,
        ));
    }
    for (name, served, hidden) in conflicts
        .iter()
        .map(|c| (c.name.to_string(), c.listed.clone(), c.hidden.clone()))
    {
        verdicts.push(verdict(
            &format!("folder {name}"),
            "needs attention",
            format!("{served} and {hidden} spell one name; only {served} is served: rename or merge one"),
            None,
        ));
    }
    if pop3_uidls == "computed by Dovecot" {
        verdicts.push(verdict(
            "POP3 UIDLs",
            "needs a setting",
            "Dovecot computed them and saved none (pop3_save_uidl off): set its pop3_uidl_format, else POP3 clients download everything again".into(),
            Some("pop3.uidl_format = \"%08Xu%08Xv\""),
        ));
    } else {
        verdicts.push(verdict(
            "POP3 UIDLs",
            "kept",
            format!("from {pop3_uidls}"),
            None,
        ));
    }
    verdicts.push(verdict(
        "keywords",
        "kept",
        "courierimapkeywords and Dovecot's keyword letters are both read and kept in step".into(),
        None,
    ));
    verdicts.push(verdict(
        "subscriptions",
        "kept",
        format!(
            "{} from {}",
            subs.len(),
            if subscription_files.is_empty() {
                "no file".to_owned()
            } else {
                subscription_files.join(" and ")
            }
        ),
        None,
    ));
    Report {
        path: root.to_owned(),
        courier_files,
        dovecot_files,
        folder_names: match form {
            NameForm::Utf8 => "utf8",
            NameForm::Mutf7 => "mutf7",
        },
        folders,
        conflicts: conflicts
            .into_iter()
            .map(|c| (c.name.to_string(), c.listed, c.hidden))
            .collect(),
        subscriptions: subs.len(),
        subscription_files,
        pop3_uidls,
        verdicts,
    }
}

/// The Maildirs at or below `dir` (a Maildir's own folders are not
/// Maildirs of their own).
pub fn find_maildirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut queue = vec![(dir.to_owned(), 0usize)];
    while let Some((d, depth)) = queue.pop() {
        if d.join("cur").is_dir() && d.join("new").is_dir() {
            out.push(d);
            continue;
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push((e.path(), depth + 1));
            }
        }
    }
    out.sort();
    out
}

fn print_text(r: &Report) {
    println!("{}:", r.path.display());
    let files = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("  Courier-IMAP files: {}", files(&r.courier_files));
    println!("  Dovecot files: {}", files(&r.dovecot_files));
    println!("  folder names on disk: {}", r.folder_names);
    for f in &r.folders {
        let uids = match (f.lowest_uid, f.highest_uid) {
            (Some(a), Some(b)) => format!("UIDs {a}-{b}"),
            _ => "no UIDs".to_owned(),
        };
        println!(
            "  {} ({} {}): {} message(s), {}, UIDVALIDITY {}, list {}{}",
            f.name,
            f.dir,
            f.spelling,
            f.messages,
            uids,
            f.uidvalidity
                .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            f.uid_list,
            if f.keywords.is_empty() {
                String::new()
            } else {
                format!(", keywords {}", f.keywords.join(" "))
            }
        );
    }
    println!(
        "  subscriptions: {} ({})",
        r.subscriptions,
        files(&r.subscription_files)
    );
    println!("  POP3 UIDLs: {}", r.pop3_uidls);
    for v in &r.verdicts {
        match &v.setting {
            Some(s) => println!("  [{}] {}: {} (set {s})", v.verdict, v.item, v.detail),
            None => println!("  [{}] {}: {}", v.verdict, v.item, v.detail),
        }
    }
}

/// A Maildir only Dovecot served (Courier's `maildirsize` is shared by
/// both): its clients know Dovecot's namespace.
fn dovecot_only(courier_files: &[String], dovecot_files: &[String]) -> bool {
    !dovecot_files.is_empty() && !courier_files.iter().any(|f| f != "maildirsize")
}

/// The settings of a tern configuration the verdicts depend on.
#[derive(Debug, Clone)]
pub struct Planned {
    /// `imap.namespace_prefix`.
    pub namespace_prefix: String,
    /// `pop3.uidl_format`.
    pub uidl_format: Option<String>,
}

impl Planned {
    /// From the configuration tern will run with.
    pub fn of(cfg: &tern_server::config::Config) -> Planned {
        Planned {
            namespace_prefix: cfg.imap.namespace_prefix.clone(),
            uidl_format: cfg.pop3.uidl_format.clone(),
        }
    }
}

/// The verdicts of `r` for the configuration tern will run with: a
/// setting it already has is kept; one it contradicts (Courier's clients
/// know `INBOX.Work`, a configuration without the prefix shows `Work`) is
/// named.
fn against(r: &mut Report, planned: &Planned) {
    let dovecot_only = dovecot_only(&r.courier_files, &r.dovecot_files);
    let pop3_computed = r.pop3_uidls == "computed by Dovecot";
    for v in &mut r.verdicts {
        match v.item.as_str() {
            "folder names" => {
                let needed = if dovecot_only { "" } else { "INBOX." };
                if planned.namespace_prefix == needed {
                    v.verdict = "kept";
                    v.detail = format!(
                        "the configuration's imap.namespace_prefix {needed:?} is the one its clients know"
                    );
                    v.setting = None;
                } else {
                    v.verdict = "needs a setting";
                    v.detail = format!(
                        "its clients know the prefix {needed:?}; the configuration has {:?}, so they would see other folder names",
                        planned.namespace_prefix
                    );
                    v.setting = Some(format!("imap.namespace_prefix = {needed:?}"));
                }
            }
            "POP3 UIDLs" if pop3_computed => {
                if let Some(f) = &planned.uidl_format {
                    v.verdict = "kept";
                    v.detail = format!(
                        "Dovecot computed them; the configuration's pop3.uidl_format {f:?} must be Dovecot's pop3_uidl_format"
                    );
                    v.setting = None;
                }
            }
            _ => {}
        }
    }
}

/// `tern migrate check`: exit 0 when everything is kept, 1 when something
/// needs a setting or attention or would be downloaded again, 2 when no
/// Maildir was found. With `planned`, the verdicts are for that
/// configuration (`--config`), else for one that has no setting yet.
pub fn run_check(dirs: &[PathBuf], json: bool, planned: Option<&Planned>) -> i32 {
    let mut maildirs = Vec::new();
    for d in dirs {
        maildirs.extend(find_maildirs(d));
    }
    if maildirs.is_empty() {
        eprintln!("tern migrate check: no Maildir found");
        return 2;
    }
    let total = maildirs.len();
    let progress = total > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut all_kept = true;
    // One report at a time, also as JSON (an array written as it goes), so
    // a tree of a million Maildirs costs no more memory than one.
    if json {
        println!("[");
    }
    for (i, m) in maildirs.iter().enumerate() {
        let mut r = check(m);
        if let Some(p) = planned {
            against(&mut r, p);
        }
        all_kept &= r.verdicts.iter().all(|v| v.verdict == "kept");
        if json {
            match serde_json::to_string_pretty(&r) {
                Ok(s) => println!("{s}{}", if i + 1 < total { "," } else { "" }),
                Err(e) => {
                    eprintln!("tern migrate check: {e}");
                    return 1;
                }
            }
        } else {
            print_text(&r);
        }
        if progress {
            eprint!("\rchecked {}/{total}", i + 1);
        }
    }
    if json {
        println!("]");
    }
    if progress {
        eprintln!();
    }
    i32::from(!all_kept)
}
