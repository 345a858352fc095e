//! Whose files: tern runs as the mail user, never as root unless told to,
//! and what it creates in a Maildir is the account's, 0700/0600.
//! These run as root, as CI does.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::harness::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

/// (path, uid, gid, mode) of everything below `root`.
fn entries(root: &Path) -> Vec<(String, u32, u32, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            out.push((
                e.path().display().to_string(),
                m.uid(),
                m.gid(),
                m.permissions().mode() & 0o777,
            ));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

fn exercise(c: &mut Client) {
    assert!(c.cmd("CREATE INBOX.Work").ok());
    assert!(c.cmd("SUBSCRIBE INBOX.Work").ok());
    assert!(c.append("INBOX.Work", "($Label1)", &message("m", "x")).ok());
    assert!(c.append("INBOX", "()", &message("n", "y")).ok());
    assert!(c.cmd("SELECT INBOX.Work").ok());
    assert!(c.cmd("STORE 1 +FLAGS (\\Seen project-x)").ok());
    assert!(c.cmd("FETCH 1 BODY[]").ok());
    assert!(c.cmd("GETQUOTAROOT INBOX").ok());
}

fn assert_private_and_owned(md: &Path, uid: u32) {
    assert_private_and_owned_by(md, uid, uid);
}

fn assert_private_and_owned_by(md: &Path, uid: u32, gid: u32) {
    let all = entries(md);
    assert!(all.len() > 10, "{all:?}");
    for (p, u, g, mode) in all {
        assert_eq!((u, g), (uid, gid), "{p} has owner {u}:{g}");
        let is_dir = Path::new(&p).is_dir();
        assert_eq!(
            mode,
            if is_dir { 0o700 } else { 0o600 },
            "{p} has mode {mode:o}"
        );
    }
}

#[test]
fn as_root_without_a_mail_user_tern_refuses_to_serve() {
    assert!(is_root(), "the ownership tests run as root, as CI does");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "a:{PLAIN}x::::::\n").unwrap();
    std::fs::write(
        dir.path().join("tern.toml"),
        "[imap]\nlisten = [\"127.0.0.1:0\"]\n[auth]\npasswd_file = \"users\"\n[mail]\nmaildir = \"m/{user}\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(dir.path().join("tern.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve mail as root") && err.contains("mail.user"),
        "{err}"
    );
}

#[test]
fn allowed_to_run_as_root_tern_gives_what_it_creates_to_the_maildirs_owner() {
    assert!(is_root(), "the ownership tests run as root, as CI does");
    let s = server()
        .before_start(|dir| {
            let md = dir.join("mail/alice/Maildir");
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(md.join(sub)).unwrap();
            }
            for d in [md.clone(), md.join("cur"), md.join("new"), md.join("tmp")] {
                std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
        })
        .start();
    let mut c = s.alice();
    exercise(&mut c);
    let r = c.cmd("UID FETCH 1:* (FLAGS)");
    let tern_uids: Vec<u64> = r
        .untagged("")
        .iter()
        .filter_map(|l| number_after(l, "UID "))
        .collect();
    drop(c);
    let md = s.maildir("alice");
    assert_private_and_owned(&md, NOBODY);
    // Courier's imapd, run as the account (nobody), keeps serving it: it
    // reads tern's UIDs and can rewrite its own files to add a message.
    courier_keeps_serving(&md, NOBODY, NOBODY, &tern_uids);
}

/// Courier's imapd, run as the account (`uid`:`gid`), keeps serving `md`:
/// it reads tern's UIDs of INBOX.Work and can rewrite its own files to add
/// a message.
fn courier_keeps_serving(md: &Path, uid: u32, gid: u32, tern_uids: &[u64]) {
    let msg = message("courier as the account", "z");
    let mut script = b"a SELECT INBOX.Work\r\nb UID FETCH 1:* (FLAGS)\r\n".to_vec();
    script.extend_from_slice(format!("c APPEND INBOX.Work {{{}}}\r\n", msg.len()).as_bytes());
    script.extend_from_slice(&msg);
    script.extend_from_slice(b"\r\nz LOGOUT\r\n");
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "bash"])
        .arg(crate::compat::oracle("courier.sh"))
        .arg("imapd")
        .arg(md)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &script).unwrap();
    let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    assert!(out.starts_with("* PREAUTH"), "{out}");
    let courier_uids: Vec<u64> = out
        .lines()
        .filter(|l| l.contains(" FETCH ("))
        .filter_map(|l| number_after(l, "UID "))
        .collect();
    assert_eq!(courier_uids, tern_uids, "{out}");
    assert!(
        out.contains("c OK [APPENDUID"),
        "Courier, as the account, could not append: {out}"
    );
}

#[test]
fn as_root_each_account_works_with_its_own_uid_and_a_planted_link_leads_nowhere() {
    assert!(is_root(), "the ownership tests run as root, as CI does");
    let pid = std::process::id() % 100_000;
    let (a, b) = (format!("ternua{pid}"), format!("ternub{pid}"));
    let _ua = crate::accounts::SystemUser::create(&a, "apw", &[]);
    let _ub = crate::accounts::SystemUser::create(&b, "bpw", &[]);
    let ids = |u: &str| {
        let m = std::fs::metadata(format!("/home/{u}")).unwrap();
        (m.uid(), m.gid())
    };
    let ((ua, ga), (ub, _)) = (ids(&a), ids(&b));
    assert!(ua != 0 && ub != 0 && ua != ub);
    for u in [&a, &b] {
        std::fs::set_permissions(format!("/home/{u}"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }
    let s = server()
        .auth("system_users = true\n")
        .mail("maildir = \"{home}/Maildir\"\n")
        .start();
    // Everything a's sessions create is a's, private, though tern is root.
    let mut c = s.connect();
    assert!(c.cmd(&format!("LOGIN {a} apw")).ok());
    exercise(&mut c);
    let r = c.cmd("UID FETCH 1:* (FLAGS)");
    let tern_uids: Vec<u64> = r
        .untagged("")
        .iter()
        .filter_map(|l| number_after(l, "UID "))
        .collect();
    drop(c);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "tern itself stays root: {status}"
    );
    let amd = Path::new("/home").join(&a).join("Maildir");
    assert_private_and_owned_by(&amd, ua, ga);
    // b has mail of his own.
    let mut c = s.connect();
    assert!(c.cmd(&format!("LOGIN {b} bpw")).ok());
    assert!(c
        .append("INBOX", "()", &message("for b", "B-SECRET body"))
        .ok());
    drop(c);
    let bmd = Path::new("/home").join(&b).join("Maildir");
    // a (who has a shell) plants links in his own Maildir: a folder whose
    // cur/ and new/ are b's, where every path tern opens is a's own folder
    // and a plain file name. Only the kernel, seeing a's credentials, can
    // tell that the way there crosses b's 0700 home.
    let deep = amd.join(".Deep");
    std::fs::create_dir_all(deep.join("tmp")).unwrap();
    std::fs::write(deep.join("maildirfolder"), "").unwrap();
    std::os::unix::fs::symlink(bmd.join("cur"), deep.join("cur")).unwrap();
    std::os::unix::fs::symlink(bmd.join("new"), deep.join("new")).unwrap();
    std::os::unix::fs::symlink(&bmd, amd.join(".Stolen")).unwrap();
    let mut c = s.connect();
    assert!(c.cmd(&format!("LOGIN {a} apw")).ok());
    for folder in ["INBOX.Deep", "INBOX.Stolen"] {
        let r = c.cmd(&format!("SELECT {folder}"));
        assert!(!r.has(" 1 EXISTS"), "b's mail seen from {folder}: {r:?}");
        let r = c.cmd("FETCH 1:* BODY.PEEK[]");
        assert!(!r.has("B-SECRET"), "b's mail read through {folder}: {r:?}");
        let r = c.cmd(&format!("STATUS {folder} (MESSAGES)"));
        assert!(!r.has("MESSAGES 1"), "{r:?}");
    }
    assert!(c.cmd("NOOP").ok(), "a's session goes on");
    drop(c);
    std::fs::remove_dir_all(&deep).unwrap();
    std::fs::remove_file(amd.join(".Stolen")).unwrap();
    // Courier's imapd as a keeps serving what tern served as a.
    courier_keeps_serving(&amd, ua, ga, &tern_uids);
}

#[test]
fn with_a_mail_user_tern_drops_root_and_the_kernel_keeps_accounts_apart() {
    assert!(is_root(), "the ownership tests run as root, as CI does");
    let s = server()
        .mail("user = \"nobody\"")
        .before_start(|dir| {
            // The mail user reaches the config directory and the passwd-file
            // (the TLS key stays root's: it is read before the drop).
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(dir.join("users"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let mail = dir.join("mail");
            std::fs::create_dir(&mail).unwrap();
            std::os::unix::fs::chown(&mail, Some(NOBODY), Some(NOBODY)).unwrap();
            // bob's Maildir belongs to another account, root, 0700.
            let bob = mail.join("bob/Maildir");
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(bob.join(sub)).unwrap();
            }
            std::fs::write(bob.join("cur/1.M1.h:2,S"), "Subject: secret\n\nbob's\n").unwrap();
            std::fs::set_permissions(mail.join("bob"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        })
        .start();
    // "listening" is printed before the drop; a served login comes after it.
    let mut c = s.alice();
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "real, effective, saved and filesystem uid: {uid_line}"
    );
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(
        groups.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"],
        "{groups}"
    );
    exercise(&mut c);
    assert_private_and_owned(&s.maildir("alice"), NOBODY);
    // bob's password is right, but the kernel keeps the server out of his
    // Maildir: the login is refused as a storage failure, nothing leaks.
    let mut b = s.connect();
    let r = b.cmd("LOGIN bob bobpw");
    assert!(r.no() && r.tagged().contains("[UNAVAILABLE]"), "{r:?}");
    assert!(!r.has("secret"));
    // And alice's session goes on.
    assert!(c.cmd("NOOP").ok());
}

#[test]
fn the_login_time_work_runs_as_the_account_too() {
    assert!(is_root(), "the ownership tests run as root, as CI does");
    let pid = std::process::id() % 100_000;
    let (a, b) = (format!("terntla{pid}"), format!("terntlb{pid}"));
    let _ua = crate::accounts::SystemUser::create(&a, "apw", &[]);
    let _ub = crate::accounts::SystemUser::create(&b, "bpw", &[]);
    for u in [&a, &b] {
        std::fs::set_permissions(format!("/home/{u}"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }
    let s = server()
        .auth("system_users = true\n")
        .mail("maildir = \"{home}/Maildir\"\nempty_trash = \"Trash:0\"\n")
        .start();
    // b keeps a message in his Trash (the login-time sweep empties
    // messages older than 0 days: b's own logins would).
    let bmd = Path::new("/home").join(&b).join("Maildir");
    let mut c = s.connect();
    assert!(c.cmd(&format!("LOGIN {b} bpw")).ok());
    assert!(c.cmd("CREATE INBOX.Trash").ok());
    assert!(c
        .append("INBOX.Trash", "()", &message("b's trash", "x"))
        .ok());
    drop(c);
    let in_trash = || {
        ["cur", "new"]
            .iter()
            .map(|d| std::fs::read_dir(bmd.join(".Trash").join(d)).map_or(0, |r| r.count()))
            .sum::<usize>()
    };
    assert_eq!(in_trash(), 1);
    // a points his ~/Maildir at b's: his login's Maildir check and trash
    // sweep run as a, so they cannot reach b's files.
    std::os::unix::fs::symlink(&bmd, Path::new("/home").join(&a).join("Maildir")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = s.connect().cmd(&format!("LOGIN {a} apw"));
    assert!(!r.ok(), "a logged in to b's Maildir: {r:?}");
    assert_eq!(in_trash(), 1, "a's login swept b's trash");
}
