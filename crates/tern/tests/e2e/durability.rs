//! Acknowledged means durable: before APPEND or COPY answers OK with the
//! UIDs it gave, the new names and the UID list are on disk, directories
//! included (a rename survives a power loss only once its directory is
//! synced). Power loss cannot be simulated here, so the server runs under
//! strace and the order of its system calls is checked.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The traced system calls, one a line, once `done` holds for them.
fn trace(path: &Path, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if done(&lines) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Index of the first line after `from` that holds every needle.
fn find(lines: &[String], from: usize, needles: &[&str]) -> Option<usize> {
    (from..lines.len()).find(|&i| needles.iter().all(|n| lines[i].contains(n)))
}

/// rename into `<dir>/cur/`, then fsync of `<dir>/cur`, then the rename of
/// the UID list into place, then fsync of `<dir>`.
fn assert_durable_order(lines: &[String], dir: &str) {
    let cur = format!("{dir}/cur");
    // A path into cur/, or (renameat) the descriptor of cur/ itself.
    let moved = find(lines, 0, &["rename", &format!("{cur}/")])
        .or_else(|| find(lines, 0, &["rename", &format!("<{cur}>")]))
        .unwrap_or_else(|| panic!("no rename into {cur}: {lines:#?}"));
    let synced = find(lines, moved, &["fsync(", &format!("<{cur}>")])
        .unwrap_or_else(|| panic!("{cur} not synced after the rename: {lines:#?}"));
    let uiddb = find(
        lines,
        synced,
        &["rename", &format!("{dir}/courierimapuiddb\"")],
    )
    .unwrap_or_else(|| panic!("no UID list written after the sync: {lines:#?}"));
    find(lines, uiddb, &["fsync(", &format!("<{dir}>")])
        .unwrap_or_else(|| panic!("{dir} not synced after the UID list: {lines:#?}"));
}

#[test]
fn append_and_copy_sync_their_directories_before_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("strace.log");
    let log_s = log.to_str().unwrap().to_owned();
    let s = server()
        .under(&[
            "strace",
            "-f",
            "-qq",
            "-yy",
            "-e",
            "trace=rename,renameat,renameat2,fsync,fdatasync,pwrite64",
            "-o",
            &log_s,
        ])
        .start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Archive").ok());
    let r = c.append("INBOX", "()", &message("durable", "body"));
    assert!(r.ok() && r.tagged().contains("APPENDUID"), "{r:?}");
    let inbox = std::fs::canonicalize(s.maildir("alice")).unwrap();
    let inbox = inbox.to_str().unwrap().to_owned();
    let lines = trace(&log, |l| {
        find(l, 0, &["fsync(", &format!("<{inbox}>")]).is_some()
    });
    assert_durable_order(&lines, &inbox);
    let before = lines.len();
    c.cmd("SELECT INBOX");
    let r = c.cmd("COPY 1 INBOX.Archive");
    assert!(r.ok() && r.tagged().contains("COPYUID"), "{r:?}");
    let archive = format!("{inbox}/.Archive");
    let lines = trace(&log, |l| {
        find(l, before, &["fsync(", &format!("<{archive}>")]).is_some()
    });
    assert_durable_order(&lines[before..], &archive);

    // The next APPEND to INBOX adds a line to the list tern wrote: the
    // header's next UID rewritten in place and synced before the line is
    // written and synced (Courier numbers from the header alone); the
    // list is not written again whole.
    let before = lines.len();
    let r = c.append("INBOX", "()", &message("appended in place", "body"));
    assert!(r.ok() && r.tagged().contains("APPENDUID"), "{r:?}");
    let db = format!("{inbox}/courierimapuiddb>");
    let lines = trace(&log, |l| {
        l.len() > before
            && find(l, before, &["pwrite64(", &db]).is_some_and(|h| {
                find(l, h + 1, &["fdatasync(", &db])
                    .and_then(|s| find(l, s + 1, &["fdatasync(", &db]))
                    .is_some()
            })
    });
    let lines = &lines[before..];
    let cur = format!("{inbox}/cur");
    let moved = find(lines, 0, &["rename", &format!("<{cur}>")])
        .unwrap_or_else(|| panic!("no rename into {cur}: {lines:#?}"));
    let synced = find(lines, moved, &["fsync(", &format!("<{cur}>")])
        .unwrap_or_else(|| panic!("{cur} not synced: {lines:#?}"));
    let header = find(lines, synced, &["pwrite64(", &db, ", 0)"])
        .unwrap_or_else(|| panic!("no header rewritten at offset 0: {lines:#?}"));
    let header_synced = find(lines, header, &["fdatasync(", &db])
        .unwrap_or_else(|| panic!("header not synced: {lines:#?}"));
    let line = find(lines, header_synced, &["pwrite64(", &db])
        .unwrap_or_else(|| panic!("no line appended after the header's sync: {lines:#?}"));
    assert!(!lines[line].ends_with(", 0) = 24"), "{lines:#?}");
    find(lines, line, &["fdatasync(", &db])
        .unwrap_or_else(|| panic!("the line not synced: {lines:#?}"));
    assert!(
        find(
            lines,
            0,
            &["rename", &format!("{inbox}/courierimapuiddb\"")]
        )
        .is_none(),
        "the list was written whole: {lines:#?}"
    );
}
