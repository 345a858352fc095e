//! `tern deliver`, Maildir++ quotas (delivery, IMAP QUOTA, OVERQUOTA) and
//! trash expiry.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

/// dave has Courier's quota field: 20 KiB, 3 messages.
const DAVE: &str = "dave:{PLAIN}davepw::::::quota=20480S,3C";

/// Runs `tern deliver ARGS` with `msg` on stdin; returns the exit code.
fn deliver(s: &Server, args: &[&str], msg: &[u8]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("deliver")
        .args(args)
        .current_dir(s.path())
        .env_remove("TERN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal (unknown user, no configuration) may come before the
    // message is read: the pipe may be closed already.
    let _ = child.stdin.take().unwrap().write_all(msg);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(s: &Server) -> String {
    s.path().join("tern.toml").display().to_string()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn quota_total(root: &Path) -> (i64, i64) {
    let text = std::fs::read_to_string(root.join("maildirsize")).unwrap();
    let mut lines = text.lines();
    lines.next();
    lines.fold((0, 0), |(b, c), l| {
        let mut it = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
        (b + it.next().unwrap(), c + it.next().unwrap())
    })
}

#[test]
fn deliver_exit_codes_folders_and_imap_sees_it() {
    let s = server().users(DAVE).start();
    let cfg = config(&s);
    let msg = b"From: x@example.org\nSubject: delivered\n\nhello\n";
    let (code, err) = deliver(&s, &["--config", &cfg, "--user", "alice"], msg);
    assert_eq!(code, 0, "{err}");
    let new = files(&s.maildir("alice").join("new"));
    assert_eq!(new.len(), 1);
    assert!(new[0].contains(&format!(",S={},W=", msg.len())), "{new:?}");
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    let r = c.cmd("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(r.has("Subject: delivered"), "{r:?}");

    // Unknown user: 67 (the MTA bounces); no configuration: 75 (it retries).
    let (code, err) = deliver(&s, &["--config", &cfg, "--user", "nobody"], msg);
    assert_eq!(code, 67, "{err}");
    let (code, _) = deliver(
        &s,
        &["--config", "/nonexistent.toml", "--user", "alice"],
        msg,
    );
    assert_eq!(code, 75);
    // A missing folder means INBOX; --create makes it (as Maildir++ does).
    let (code, _) = deliver(
        &s,
        &["--config", &cfg, "--user", "alice", "--folder", "Spam"],
        msg,
    );
    assert_eq!(code, 0);
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 2"), "{r:?}");
    let (code, _) = deliver(
        &s,
        &[
            "--config",
            &cfg,
            "--user",
            "alice",
            "--folder",
            "INBOX.Spam",
            "--create",
        ],
        msg,
    );
    assert_eq!(code, 0);
    let spam = s.maildir("alice").join(".Spam");
    assert!(spam.join("maildirfolder").exists());
    assert_eq!(files(&spam.join("new")).len(), 1);
    let r = c.cmd("STATUS INBOX.Spam (MESSAGES)");
    assert!(r.has("MESSAGES 1"), "{r:?}");
    // Straight into a Maildir, without any configuration.
    let other = s.path().join("other");
    let (code, err) = deliver(&s, &["--maildir", other.to_str().unwrap()], msg);
    assert_eq!(code, 0, "{err}");
    assert_eq!(files(&other.join("new")).len(), 1);
}

#[test]
fn deliver_honours_the_quota_and_keeps_maildirsize_exact() {
    let s = server().users(DAVE).start();
    let cfg = config(&s);
    let root = s.maildir("dave");
    let small = b"Subject: s\n\nsmall\n";
    for _ in 0..3 {
        let (code, err) = deliver(&s, &["--config", &cfg, "--user", "dave"], small);
        assert_eq!(code, 0, "{err}");
    }
    let text = std::fs::read_to_string(root.join("maildirsize")).unwrap();
    assert!(text.starts_with("20480S,3C\n"), "{text}");
    assert_eq!(quota_total(&root), (3 * small.len() as i64, 3));
    // The fourth message exceeds the message count: 77, nothing added.
    let (code, err) = deliver(&s, &["--config", &cfg, "--user", "dave"], small);
    assert_eq!(code, 77, "{err}");
    assert_eq!(files(&root.join("new")).len(), 3);
    assert!(files(&root.join("tmp")).is_empty());
    assert_eq!(quota_total(&root), (3 * small.len() as i64, 3));

    // A big one exceeds the size for a user with room in the count.
    let big = vec![b'x'; 30_000];
    let (code, _) = deliver(&s, &["--config", &cfg, "--user", "alice"], &big);
    assert_eq!(code, 0, "alice has no quota");
}

#[test]
fn concurrent_deliveries_and_expunges_keep_the_totals() {
    let s = server().users(DAVE).start();
    let cfg = config(&s);
    let root = s.maildir("alice");
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    // A quota in the Maildir itself (maildirmake -q), no quota in the entry.
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["maildirmake", "-q", "100000000S"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let cfg = cfg.clone();
            let dir = s.path().to_owned();
            std::thread::spawn(move || {
                for j in 0..5 {
                    let body = format!("Subject: m{i}.{j}\n\n{}\n", "y".repeat(i * 100 + j));
                    let st = Command::new(env!("CARGO_BIN_EXE_tern"))
                        .args(["deliver", "--config", &cfg, "--user", "alice"])
                        .current_dir(&dir)
                        .stdin(Stdio::piped())
                        .spawn()
                        .and_then(|mut c| {
                            c.stdin.take().unwrap().write_all(body.as_bytes())?;
                            c.wait()
                        })
                        .unwrap();
                    assert!(st.success());
                }
            })
        })
        .collect();
    // Meanwhile an IMAP session deletes what it sees.
    let mut c = s.alice();
    for _ in 0..10 {
        c.cmd("SELECT INBOX");
        c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)");
        c.cmd("EXPUNGE");
    }
    for t in threads {
        t.join().unwrap();
    }
    c.cmd("SELECT INBOX");
    c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)");
    c.cmd("EXPUNGE");
    // The deltas written by every writer add up to what is on disk.
    let mut bytes = 0i64;
    let mut count = 0i64;
    for sub in ["new", "cur"] {
        for f in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
            bytes += f.metadata().unwrap().len() as i64;
            count += 1;
        }
    }
    assert_eq!(quota_total(&root), (bytes, count));
}

#[test]
fn imap_quota_commands_and_overquota() {
    let s = server().users(DAVE).start();
    let mut c = s.login("dave", "davepw");
    let caps = c.cmd("CAPABILITY");
    assert!(caps.has("QUOTA"), "{caps:?}");
    assert!(caps.has("QUOTA=RES-STORAGE"), "{caps:?}");
    // Only registered names (RFC 9208): no QUOTASET unless SETQUOTA works.
    assert!(!caps.has("QUOTASET") && !caps.has("GETQUOTA"), "{caps:?}");
    let r = c.cmd("GETQUOTAROOT INBOX");
    assert!(r.ok(), "{r:?}");
    assert!(r.has("* QUOTAROOT \"INBOX\" \"ROOT\""), "{r:?}");
    assert!(
        r.has("* QUOTA \"ROOT\" (STORAGE 0 20 MESSAGE 0 3)"),
        "{r:?}"
    );
    for i in 0..3 {
        assert!(c
            .append("INBOX", "()", &message(&format!("m{i}"), "x"))
            .ok());
    }
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 3 3"), "{r:?}");
    // APPEND and COPY over the quota change nothing.
    let r = c.append("INBOX", "()", &message("m4", "x"));
    assert!(r.no() && r.tagged().contains("[OVERQUOTA]"), "{r:?}");
    assert!(c.cmd("CREATE INBOX.Work").ok());
    c.cmd("SELECT INBOX");
    let r = c.cmd("COPY 1 INBOX.Work");
    assert!(r.no() && r.tagged().contains("[OVERQUOTA]"), "{r:?}");
    let r = c.cmd("STATUS INBOX.Work (MESSAGES)");
    assert!(r.has("MESSAGES 0"), "{r:?}");
    // A MOVE between folders that count changes no total: allowed.
    assert!(c.cmd("MOVE 1 INBOX.Work").ok());
    // Trash does not count (Courier's default): a move there frees room,
    // moving it back needs room again.
    assert!(c.cmd("CREATE INBOX.Trash").ok());
    assert!(c.cmd("MOVE 1 INBOX.Trash").ok());
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 2 3"), "{r:?}");
    assert!(c.append("INBOX", "()", &message("m5", "x")).ok());
    c.cmd("SELECT INBOX.Trash");
    let r = c.cmd("MOVE 1 INBOX");
    assert!(r.no() && r.tagged().contains("[OVERQUOTA]"), "{r:?}");
    // EXPUNGE always works and makes room.
    c.cmd("SELECT INBOX");
    c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert!(c.cmd("EXPUNGE").ok());
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 2 3"), "{r:?}");
    assert!(c.append("INBOX", "()", &message("m6", "x")).ok());
    // DELETE of a folder gives its room back at once (INBOX.Work holds one
    // message), not at the next recalculation.
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 3 3"), "{r:?}");
    assert!(c.cmd("DELETE INBOX.Work").ok());
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 2 3"), "{r:?}");
    // Deleting Trash, which does not count, changes nothing.
    assert!(c.cmd("DELETE INBOX.Trash").ok());
    let r = c.cmd("GETQUOTA \"ROOT\"");
    assert!(r.has("MESSAGE 2 3"), "{r:?}");
    // Users may not change their quota unless the operator allows it.
    let r = c.cmd("SETQUOTA \"ROOT\" (STORAGE 100000)");
    assert!(r.no() && r.tagged().contains("[NOPERM]"), "{r:?}");
    let r = c.cmd("GETQUOTA \"other\"");
    assert!(r.no(), "{r:?}");

    // A user without a quota has no quota root.
    let mut a = s.alice();
    let r = a.cmd("GETQUOTAROOT INBOX");
    assert!(r.ok() && r.has("* QUOTAROOT \"INBOX\""), "{r:?}");
    assert!(r.untagged("QUOTA ").is_empty(), "{r:?}");
    assert!(a.cmd("GETQUOTA \"ROOT\"").no());
    assert!(a.cmd("GETQUOTAROOT INBOX.Nope").no());
}

#[test]
fn setquota_when_allowed_writes_maildirsize() {
    let s = server().config("[quota]\nallow_setquota = true").start();
    let mut c = s.alice();
    assert!(c.cmd("CAPABILITY").has("QUOTASET"));
    assert!(c.append("INBOX", "()", &message("a", "x")).ok());
    let r = c.cmd("SETQUOTA \"ROOT\" (STORAGE 50 MESSAGE 10)");
    assert!(r.ok(), "{r:?}");
    assert!(
        r.has("* QUOTA \"ROOT\" (STORAGE 0 50 MESSAGE 1 10)"),
        "{r:?}"
    );
    let text = std::fs::read_to_string(s.maildir("alice").join("maildirsize")).unwrap();
    assert!(text.starts_with("51200S,10C\n"), "{text}");
    assert!(c.cmd("SETQUOTA \"ROOT\" ()").ok());
    assert!(!s.maildir("alice").join("maildirsize").exists());
}

#[test]
fn old_trash_is_emptied_at_login_at_most_hourly() {
    let s = server().mail("empty_trash = \"Trash:0,Junk:3650\"").start();
    let mut c = s.alice();
    for f in ["INBOX.Trash", "INBOX.Junk"] {
        assert!(c.cmd(&format!("CREATE {f}")).ok());
        assert!(c.append(f, "()", &message("old", "x")).ok());
    }
    c.cmd("LOGOUT");
    // Ages are whole seconds: let the messages be older than "0 days".
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut c = s.alice();
    let r = c.cmd("STATUS INBOX.Trash (MESSAGES)");
    assert!(r.has("MESSAGES 0"), "{r:?}");
    let r = c.cmd("STATUS INBOX.Junk (MESSAGES)");
    assert!(r.has("MESSAGES 1"), "{r:?}");
    // The next sweep waits an hour: a login now costs one stat.
    assert!(c.append("INBOX.Trash", "()", &message("new", "x")).ok());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut p = s.pop_alice();
    p.cmd("QUIT");
    let mut c = s.alice();
    let r = c.cmd("STATUS INBOX.Trash (MESSAGES)");
    assert!(r.has("MESSAGES 1"), "{r:?}");
}
