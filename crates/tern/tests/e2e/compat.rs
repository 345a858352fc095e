//! Compatibility with Courier-IMAP and Dovecot files, and `tern imapd`.
//!
//! The Courier round trip runs Courier-IMAP's own `imapd` from Debian's
//! package through `shared/oracle/courier.sh`; it fails (never skips) when
//! the oracle cannot run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs `tern imapd DIR` with a script on stdin; returns its output.
pub fn tern_imapd(maildir: &Path, script: &[u8]) -> String {
    run_stdio(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("imapd")
            .arg(maildir),
        script,
    )
}

pub fn oracle(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/oracle")
        .join(name);
    assert!(
        p.exists(),
        "the oracle {} is missing: the Courier round trip cannot run",
        p.display()
    );
    p
}

/// Runs one of Courier's servers (`imapd`, `pop3d`) on `maildir` with a
/// script on stdin; fails unless its greeting starts with `greeting`.
fn courier(server: &str, greeting: &str, maildir: &Path, script: &[u8]) -> String {
    let out = run_stdio(
        Command::new("bash")
            .arg(oracle("courier.sh"))
            .arg(server)
            .arg(maildir),
        script,
    );
    assert!(
        out.starts_with(greeting),
        "Courier's {server} did not start: {out}"
    );
    out
}

pub fn courier_imapd(maildir: &Path, script: &[u8]) -> String {
    courier("imapd", "* PREAUTH", maildir, script)
}

fn run_stdio(cmd: &mut Command, script: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(script).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn append_cmd(tag: &str, flags: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("{tag} APPEND INBOX ({flags}) {{{}+}}\r\n", msg.len()).into_bytes();
    v.extend_from_slice(msg);
    v.extend_from_slice(b"\r\n");
    v
}

pub fn append_sync(tag: &str, flags: &str, msg: &[u8]) -> Vec<u8> {
    // Courier's imapd has no LITERAL+; it reads the literal after its "+".
    let mut v = format!("{tag} APPEND INBOX ({flags}) {{{}}}\r\n", msg.len()).into_bytes();
    v.extend_from_slice(msg);
    v.extend_from_slice(b"\r\n");
    v
}

/// `* n FETCH (UID u FLAGS (...))` lines, normalised to "uid:sorted flags".
pub fn uid_flags(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.contains(" FETCH (") && l.contains("UID "))
        .map(|l| {
            let uid = number_after(l, "UID ").unwrap();
            let flags = l
                .split("FLAGS (")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap();
            let mut f: Vec<&str> = flags
                .split(' ')
                .filter(|f| !f.is_empty() && *f != "\\Recent")
                .collect();
            f.sort_unstable();
            format!("{uid}:{}", f.join(" "))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn courier_imapd_sees_what_tern_wrote_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    let mut script = Vec::new();
    for i in 0..4 {
        script.extend(append_cmd(
            &format!("a{i}"),
            "\\Seen $Work",
            &message(&format!("m{i}"), "body"),
        ));
    }
    script.extend_from_slice(b"b1 SELECT INBOX\r\nb2 STORE 2 FLAGS (\\Flagged Junk)\r\nb3 STORE 1 +FLAGS (\\Deleted)\r\nb4 EXPUNGE\r\nb5 CREATE INBOX.Sub\r\nb6 FETCH 1:* (UID FLAGS)\r\nb7 LOGOUT\r\n");
    let tern_out = tern_imapd(&md, &script);
    let tern_view = uid_flags(&tern_out);
    assert_eq!(
        tern_view,
        vec!["2:Junk \\Flagged", "3:$Work \\Seen", "4:$Work \\Seen"],
        "{tern_out}"
    );

    let mut script = b"c1 SELECT INBOX\r\nc2 FETCH 1:* (UID FLAGS)\r\nc3 LIST \"\" *\r\n".to_vec();
    script.extend(append_sync(
        "c4",
        "\\Answered $Courier",
        &message("fromcourier", "x"),
    ));
    script.extend_from_slice(b"c5 STORE 1 +FLAGS (Extra)\r\nc6 LOGOUT\r\n");
    let courier_out = courier_imapd(&md, &script);
    assert_eq!(
        uid_flags(&courier_out),
        tern_view,
        "Courier sees other UIDs/flags: {courier_out}"
    );
    assert!(courier_out.contains("INBOX.Sub"), "{courier_out}");
    assert!(courier_out.contains("[APPENDUID "), "{courier_out}");
    let courier_uid = courier_out
        .lines()
        .find(|l| l.contains("APPENDUID"))
        .and_then(|l| l.split("APPENDUID ").nth(1))
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|u| u.trim_end_matches(']').parse::<u64>().ok())
        .unwrap();
    assert_eq!(courier_uid, 5, "Courier continues tern's UID sequence");

    let tern_out = tern_imapd(
        &md,
        b"d1 SELECT INBOX\r\nd2 FETCH 1:* (UID FLAGS)\r\nd3 LOGOUT\r\n",
    );
    assert_eq!(
        uid_flags(&tern_out),
        vec![
            "2:Extra Junk \\Flagged",
            "3:$Work \\Seen",
            "4:$Work \\Seen",
            "5:$Courier \\Answered"
        ],
        "{tern_out}"
    );
    let uidv_tern = tern_out
        .lines()
        .find(|l| l.contains("UIDVALIDITY"))
        .and_then(|l| number_after(l, "UIDVALIDITY"));
    let uidv_courier = courier_out
        .lines()
        .find(|l| l.contains("UIDVALIDITY"))
        .and_then(|l| number_after(l, "UIDVALIDITY"));
    assert_eq!(uidv_tern, uidv_courier);
}

pub fn write_msg(dir: &Path, name: &str, subject: &str) {
    std::fs::write(dir.join(name), format!("Subject: {subject}\n\nbody\n")).unwrap();
}

#[test]
fn prepared_courier_files_keep_uids_and_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for d in ["cur", "new", "tmp", "courierimapkeywords"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    write_msg(&md.join("cur"), "1000.M1P1.host:2,S", "ten");
    write_msg(&md.join("cur"), "1001.M2P2.host:2,RF", "twenty");
    write_msg(&md.join("new"), "1002.M3P3.host", "new one");
    std::fs::write(
        md.join("courierimapuiddb"),
        "1 424242 21\n10 1000.M1P1.host\n20 1001.M2P2.host\n",
    )
    .unwrap();
    std::fs::write(
        md.join("courierimapkeywords/:list"),
        "$Important\n\n1001.M2P2.host:0\n",
    )
    .unwrap();
    let out = tern_imapd(
        &md,
        b"a SELECT INBOX\r\nb FETCH 1:* (UID FLAGS)\r\nc LOGOUT\r\n",
    );
    assert!(out.contains("[UIDVALIDITY 424242]"), "{out}");
    assert_eq!(
        uid_flags(&out),
        vec!["10:\\Seen", "20:$Important \\Answered \\Flagged", "21:"],
        "{out}"
    );
    assert!(out.contains("* 1 RECENT"), "{out}");
    let db = std::fs::read_to_string(md.join("courierimapuiddb")).unwrap();
    assert!(db.starts_with("1 424242 22\n"), "{db}");
    assert!(
        md.join("cur/1002.M3P3.host:2,").exists(),
        "moved from new/ to cur/"
    );
}

#[test]
fn dovecot_uidlist_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    write_msg(&md.join("cur"), "2000.M1.h,S=20:2,S", "a");
    write_msg(&md.join("cur"), "2001.M2.h,S=20:2,", "b");
    std::fs::write(md.join("dovecot-uidlist"), "3 V777 N90 G3085f01b7f11094c501100008c4a11c1\n55 :2000.M1.h,S=20\n89 W21 :2001.M2.h,S=20\n").unwrap();
    let out = tern_imapd(
        &md,
        b"a SELECT INBOX\r\nb FETCH 1:* (UID FLAGS)\r\nc LOGOUT\r\n",
    );
    assert!(
        out.contains("[UIDVALIDITY 777]") && out.contains("[UIDNEXT 90]"),
        "{out}"
    );
    assert_eq!(uid_flags(&out), vec!["55:\\Seen", "89:"], "{out}");
}

#[test]
fn damaged_uiddb_gets_a_new_uidvalidity_and_no_mail_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    write_msg(&md.join("cur"), "3000.M1.h:2,S", "a");
    std::fs::write(md.join("courierimapuiddb"), "garbage\x00\x01\n").unwrap();
    let out = tern_imapd(&md, b"a SELECT INBOX\r\nb FETCH 1:* (UID)\r\nc LOGOUT\r\n");
    assert!(out.contains("* 1 EXISTS"), "{out}");
    assert!(md.join("courierimapuiddb.corrupt").exists());
}

#[test]
fn imapd_greets_preauth() {
    let dir = tempfile::tempdir().unwrap();
    let out = tern_imapd(&dir.path().join("Maildir"), b"a NAMESPACE\r\nb LOGOUT\r\n");
    assert!(out.starts_with("* PREAUTH"), "{out}");
    assert!(out.contains("a OK") && out.contains("* BYE"), "{out}");
    assert!(dir.path().join("Maildir/cur").is_dir());
}

/// Every path below `root` with its mode, sorted.
pub fn tree(root: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let m = std::fs::metadata(&p).unwrap();
        out.push(format!(
            "{} {:o}",
            p.strip_prefix(root).unwrap().display(),
            m.permissions().mode() & 0o7777
        ));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn maildirmake_matches_courier() {
    let dir = tempfile::tempdir().unwrap();
    let run = |prog: &[&str], args: &[&str]| -> i32 {
        let mut cmd = Command::new(prog[0]);
        cmd.args(&prog[1..])
            .args(args)
            .current_dir(dir.path())
            .stderr(Stdio::null());
        cmd.status().unwrap().code().unwrap()
    };
    let courier = oracle("courier.sh");
    let courier = ["bash", courier.to_str().unwrap(), "maildirmake"];
    let tern = [env!("CARGO_BIN_EXE_tern"), "maildirmake"];
    for (prog, d) in [(&courier[..], "C"), (&tern[..], "T")] {
        assert_eq!(run(prog, &[d]), 0);
        assert_eq!(run(prog, &[d]), 1, "an existing Maildir is an error");
        assert_eq!(run(prog, &["-f", "Sent", d]), 0);
        assert_eq!(run(prog, &["-f", "Work.2024", d]), 0);
        assert_eq!(run(prog, &["-f", "Sent", d]), 1);
        assert_eq!(run(prog, &["-q", "10000000S,1000C", d]), 0);
        assert_eq!(
            run(prog, &["-q", "5000S", &format!("{d}2")]),
            0,
            "-q creates the Maildir"
        );
    }
    assert_eq!(tree(&dir.path().join("T")), tree(&dir.path().join("C")));
    assert_eq!(tree(&dir.path().join("T2")), tree(&dir.path().join("C2")));
    assert_eq!(
        std::fs::read(dir.path().join("T/maildirsize")).unwrap(),
        std::fs::read(dir.path().join("C/maildirsize")).unwrap()
    );
    assert_eq!(
        std::fs::read(dir.path().join("T2/maildirsize")).unwrap(),
        std::fs::read(dir.path().join("C2/maildirsize")).unwrap()
    );
}

fn courier_pop3d(maildir: &Path, script: &[u8]) -> String {
    courier("pop3d", "+OK", maildir, script)
}

/// The lines between `+OK` and `.` of the n-th multi-line answer.
fn courier_listing(out: &str, nth: usize) -> Vec<String> {
    out.split("\r\n.\r\n")
        .nth(nth)
        .unwrap_or_default()
        .lines()
        .skip_while(|l| !l.starts_with("+OK") || l.starts_with("+OK logged"))
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// The lines of a multi-line POP3 answer from tern.
fn listing(p: &mut Pop, cmd: &str) -> Vec<String> {
    let (status, body) = p.multi(cmd);
    assert!(status.starts_with("+OK"), "{status}");
    String::from_utf8_lossy(&body)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn pop3_uidls_agree_with_courier_pop3d_both_ways() {
    let s = server().start();
    let md = s.maildir("alice");
    s.deliver_raw("alice", "1000000000.A1.host", b"Subject: a\n\nx\n");
    s.deliver_raw("alice", "1000000001.A2.host", b"Subject: b\n\ny\n.z\n");
    // Courier's pop3d serves the Maildir first.
    let out = courier_pop3d(&md, b"UIDL\r\nLIST\r\nQUIT\r\n");
    let c_uidl = courier_listing(&out, 0);
    let c_list = courier_listing(&out, 1);
    assert_eq!(c_uidl.len(), 2, "{out}");
    // tern shows the same UIDLs and sizes.
    let mut p = s.pop_alice();
    let t_uidl = listing(&mut p, "UIDL");
    assert_eq!(t_uidl, c_uidl);
    let t_list = listing(&mut p, "LIST");
    assert_eq!(t_list, c_list);
    p.cmd("QUIT");
    // A message that tern numbers first keeps its UIDL in Courier too.
    s.deliver_raw("alice", "1000000002.A3.host", b"Subject: c\n\nz\n");
    let mut p = s.pop_alice();
    let t_uidl = listing(&mut p, "UIDL");
    assert_eq!(t_uidl.len(), 3);
    p.cmd("QUIT");
    let out = courier_pop3d(&md, b"UIDL\r\nQUIT\r\n");
    assert_eq!(courier_listing(&out, 0), t_uidl, "{out}");
}

/// Runs a delivery agent with `msg` on stdin; returns its exit code.
fn run_with_input(cmd: &mut Command, msg: &[u8]) -> i32 {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A refusal may come before the message is read.
    let _ = child.stdin.take().unwrap().write_all(msg);
    child.wait().unwrap().code().unwrap()
}

#[test]
fn maildirsize_is_shared_with_courier_deliverquota() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("M");
    let courier = oracle("courier.sh");
    let courier_deliver = |msg: &[u8]| {
        run_with_input(
            Command::new("bash")
                .arg(&courier)
                .arg("deliverquota")
                .arg(&md),
            msg,
        )
    };
    let tern_deliver = |msg: &[u8]| {
        run_with_input(
            Command::new(env!("CARGO_BIN_EXE_tern"))
                .args(["deliver", "--maildir"])
                .arg(&md),
            msg,
        )
    };
    let st = Command::new("bash")
        .arg(&courier)
        .args(["maildirmake", "-q", "300S,4C"])
        .arg(&md)
        .status()
        .unwrap();
    assert!(st.success());
    // Both deliver in turn into the Maildir Courier made.
    assert_eq!(courier_deliver(b"Subject: a\n\nfrom courier\n"), 0);
    assert_eq!(tern_deliver(b"Subject: b\n\nfrom tern\n"), 0);
    assert_eq!(courier_deliver(b"Subject: c\n\nfrom courier again\n"), 0);
    let text = std::fs::read_to_string(md.join("maildirsize")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("300S,4C"));
    let (mut bytes, mut count) = (0i64, 0i64);
    for l in lines {
        assert_eq!(l.len(), 25, "a 12-column line: {l:?}");
        let mut it = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
        bytes += it.next().unwrap();
        count += it.next().unwrap();
    }
    let on_disk: Vec<u64> = std::fs::read_dir(md.join("new"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(count, 3);
    assert_eq!(bytes, on_disk.iter().sum::<u64>() as i64);
    // A message that does not fit is refused by both, and left nowhere.
    let big = format!("Subject: big\n\n{}\n", "x".repeat(300));
    assert_eq!(tern_deliver(big.as_bytes()), 77);
    // Debian's deliverquota exits 75 here (its manual says 77): refused either way.
    assert_ne!(courier_deliver(big.as_bytes()), 0);
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 3);
    // The count limit: one more small message fits, the next does not.
    assert_eq!(tern_deliver(b"Subject: d\n\nd\n"), 0);
    assert_eq!(tern_deliver(b"Subject: e\n\ne\n"), 77);
    assert_ne!(courier_deliver(b"Subject: e\n\ne\n"), 0);
}

/// The APPENDUIDs in `out`, in order.
fn appenduids(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.split("[APPENDUID ").nth(1))
        .filter_map(|r| r.split([' ', ']']).nth(1)?.parse().ok())
        .collect()
}

#[test]
fn tern_and_courier_imapd_append_to_one_folder_at_once() {
    // During a migration both servers may serve one Maildir. Courier's
    // imapd numbers under tmp/courier.lock; tern takes that lock too, so no
    // UID is given twice and none is lost.
    const EACH: usize = 40;
    let s = server().start();
    let md = s.maildir("alice");
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    let mut script = Vec::new();
    for i in 0..EACH {
        script.extend(append_sync(
            &format!("c{i}"),
            "",
            &message(&format!("courier {i}"), "x"),
        ));
    }
    script.extend_from_slice(b"z LOGOUT\r\n");
    let md2 = md.clone();
    let courier = std::thread::spawn(move || courier_imapd(&md2, &script));
    let mut tern_uids = Vec::new();
    for i in 0..EACH {
        let r = c.append("INBOX", "()", &message(&format!("tern {i}"), "x"));
        assert!(r.ok(), "{r:?}");
        tern_uids.extend(appenduids(r.tagged()));
    }
    let courier_out = courier.join().unwrap();
    let courier_uids = appenduids(&courier_out);
    assert_eq!(courier_uids.len(), EACH, "{courier_out}");
    assert_eq!(tern_uids.len(), EACH);
    let mut all: Vec<u32> = tern_uids.iter().chain(&courier_uids).copied().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(
        all.len(),
        before,
        "a UID was given twice: tern {tern_uids:?} courier {courier_uids:?}"
    );
    // Every message is there, under the UID its server reported (SELECT
    // again: it shows everything stored before it began, where a NOOP
    // may look at a directory changed within the second only later).
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let mut seen: Vec<(u32, String)> = r
        .lines
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let uid = number_after(l, "UID ").unwrap() as u32;
            let subject = l.split("Subject: ").nth(1).unwrap();
            let subject = subject.split('\r').next().unwrap().to_owned();
            (uid, subject)
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 2 * EACH, "{r:?}");
    for (i, uid) in tern_uids.iter().enumerate() {
        assert!(
            seen.contains(&(*uid, format!("tern {i}"))),
            "tern {i} uid {uid}: {seen:?}"
        );
    }
    for (i, uid) in courier_uids.iter().enumerate() {
        assert!(
            seen.contains(&(*uid, format!("courier {i}"))),
            "courier {i} uid {uid}: {seen:?}"
        );
    }
    // And Courier reads the same numbering back.
    let out = courier_imapd(
        &md,
        b"a SELECT INBOX\r\nb UID FETCH 1:* (UID)\r\nc LOGOUT\r\n",
    );
    let mut courier_view: Vec<u32> = out
        .lines()
        .filter(|l| l.contains(" FETCH ("))
        .filter_map(|l| number_after(l, "UID ").map(|u| u as u32))
        .collect();
    courier_view.sort_unstable();
    assert_eq!(courier_view, all);
}
