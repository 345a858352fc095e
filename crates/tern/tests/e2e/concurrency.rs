//! Sessions sharing a folder, outside deliveries, IDLE, restarts, kill -9,
//! and two server processes on one Maildir.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::*;

fn uids_of(r: &Resp) -> Vec<u64> {
    r.untagged("")
        .iter()
        .filter(|l| l.contains("FETCH"))
        .filter_map(|l| number_after(l, "UID "))
        .collect()
}

#[test]
fn two_sessions_see_each_others_changes() {
    let s = server().start();
    let mut a = s.alice();
    let mut b = s.alice();
    for i in 0..3 {
        a.append("INBOX", "()", &message(&format!("m{i}"), "x"));
    }
    a.cmd("SELECT INBOX");
    let r = b.cmd("SELECT INBOX");
    assert!(r.has("* 3 EXISTS"));
    assert!(
        r.has("* 0 RECENT"),
        "only the first session sees \\Recent: {r:?}"
    );
    a.cmd("STORE 2 +FLAGS (\\Flagged)");
    let r = b.cmd("NOOP");
    assert!(r.has("* 2 FETCH (UID 2 FLAGS (\\Flagged))"), "{r:?}");
    a.cmd("STORE 1 +FLAGS (\\Deleted)");
    a.cmd("EXPUNGE");
    // No EXPUNGE during FETCH/STORE/SEARCH by sequence number (RFC 3501 §7.4.1).
    let r = b.cmd("FETCH 1:* (UID)");
    assert!(!r.lines.iter().any(|l| l.ends_with(" EXPUNGE")), "{r:?}");
    let r = b.cmd("SEARCH ALL");
    assert!(!r.lines.iter().any(|l| l.ends_with(" EXPUNGE")), "{r:?}");
    let r = b.cmd("NOOP");
    assert!(r.has("* 1 EXPUNGE"), "{r:?}");
    let r = b.cmd("FETCH 1:* (UID)");
    assert_eq!(uids_of(&r), vec![2, 3]);
    a.append("INBOX", "()", &message("new", "x"));
    let r = b.cmd("NOOP");
    assert!(r.has("* 3 EXISTS"), "{r:?}");
}

#[test]
fn outside_delivery_is_seen_and_recent() {
    let s = server().start();
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 0 EXISTS"));
    let new = s.maildir("alice").join("new");
    std::fs::write(
        new.join("1700000000.M1P1.mta"),
        "Subject: delivered\n\nhi\n",
    )
    .unwrap();
    let r = c.cmd("NOOP");
    assert!(r.has("* 1 EXISTS") && r.has("* 1 RECENT"), "{r:?}");
    let r = c.cmd("FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[HEADER])");
    assert!(
        r.has("FLAGS (\\Recent)") && r.has("RFC822.SIZE 26"),
        "{r:?}"
    );
    assert!(s
        .maildir("alice")
        .join("cur/1700000000.M1P1.mta:2,")
        .exists());
    // Another program changes flags and removes a message.
    std::fs::rename(
        s.maildir("alice").join("cur/1700000000.M1P1.mta:2,"),
        s.maildir("alice").join("cur/1700000000.M1P1.mta:2,FS"),
    )
    .unwrap();
    let r = c.cmd("NOOP");
    assert!(r.has("FLAGS (\\Seen \\Flagged \\Recent)"), "{r:?}");
    std::fs::remove_file(s.maildir("alice").join("cur/1700000000.M1P1.mta:2,FS")).unwrap();
    let r = c.cmd("NOOP");
    assert!(r.has("* 1 EXPUNGE"), "{r:?}");
}

#[test]
fn idle_reports_deliveries_from_sessions_and_programs() {
    let s = server().config("[limits]\npoll_interval_ms = 100").start();
    let mut a = s.alice();
    let mut b = s.alice();
    a.cmd("SELECT INBOX");
    a.send(b"i1 IDLE\r\n");
    assert!(a.read_line().starts_with('+'));
    b.append("INBOX", "()", &message("pushed", "x"));
    let start = Instant::now();
    assert_eq!(a.read_line(), "* 1 EXISTS");
    assert!(start.elapsed() < Duration::from_secs(5));
    let _recent = a.read_line();
    std::fs::write(
        s.maildir("alice").join("new/1700000001.M2P2.mta"),
        "Subject: x\n\ny\n",
    )
    .unwrap();
    let l = a.read_line();
    assert_eq!(l, "* 2 EXISTS");
    let _recent = a.read_line();
    a.send(b"DONE\r\n");
    let r = a.read_until_tag("i1");
    assert!(r.ok(), "{r:?}");
    let r = a.cmd("NOOP");
    assert!(r.ok());
}

#[test]
fn restart_keeps_uids_flags_and_uidvalidity() {
    let mut s = server().start();
    let mut c = s.alice();
    c.cmd("CREATE INBOX.Keep");
    for i in 0..4 {
        c.append("INBOX.Keep", "()", &message(&format!("m{i}"), "x"));
    }
    let r = c.cmd("SELECT INBOX.Keep");
    let v = number_after(r.untagged("OK [UIDVALIDITY")[0], "UIDVALIDITY");
    c.cmd("STORE 2 +FLAGS (\\Seen $Kw)");
    c.cmd("STORE 1 +FLAGS (\\Deleted)");
    c.cmd("EXPUNGE");
    drop(c);
    s.restart();
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX.Keep");
    assert_eq!(
        number_after(r.untagged("OK [UIDVALIDITY")[0], "UIDVALIDITY"),
        v
    );
    assert!(r.has("[UIDNEXT 5]"), "{r:?}");
    let r = c.cmd("FETCH 1:* (UID FLAGS)");
    assert!(r.has("* 1 FETCH (UID 2 FLAGS (\\Seen $Kw))"), "{r:?}");
    assert_eq!(uids_of(&r), vec![2, 3, 4]);
    let r = c.append("INBOX.Keep", "()", &message("after", "x"));
    assert!(r.tagged().contains(" 5]"), "UIDs are never reused: {r:?}");
}

/// Appends until killed; returns the UIDs the server acknowledged.
fn append_loop(addr: std::net::SocketAddr, n: usize) -> Vec<u64> {
    let mut c = Client::plain(addr);
    assert!(c.cmd("LOGIN alice secret").ok());
    let mut acked = Vec::new();
    for i in 0..n {
        let msg = message(&format!("crash{i}"), &"x".repeat(2000));
        let tag = c.next_tag();
        let mut data = format!("{tag} APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
        data.extend_from_slice(&msg);
        data.extend_from_slice(b"\r\n");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.send(&data))).is_err() {
            break;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.read_until_tag(&tag))) {
            Ok(r) if r.ok() => {
                let uid = r
                    .tagged()
                    .split(' ')
                    .nth(4)
                    .and_then(|u| u.trim_end_matches(']').parse().ok())
                    .unwrap();
                acked.push(uid);
            }
            _ => break,
        }
    }
    acked
}

#[test]
fn kill9_during_append_copy_store_expunge_loses_nothing() {
    let mut s = server().start();
    let addr = s.imap;
    let h = std::thread::spawn(move || append_loop(addr, 100_000));
    // Meanwhile one client copies and stores in INBOX, another expunges in
    // the copy folder, so that the crash lands in the middle of every kind
    // of write.
    let addr2 = s.imap;
    let h2 = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| {
            let mut c = Client::plain(addr2);
            c.cmd("LOGIN alice secret");
            c.cmd("CREATE INBOX.Copies");
            c.cmd("SELECT INBOX");
            for _ in 0..10_000 {
                c.cmd("COPY 1:3 INBOX.Copies");
                c.cmd("STORE 1:* +FLAGS.SILENT (\\Seen)");
            }
        });
    });
    let addr3 = s.imap;
    let h3 = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| {
            let mut c = Client::plain(addr3);
            c.cmd("LOGIN alice secret");
            std::thread::sleep(Duration::from_millis(200));
            c.cmd("SELECT INBOX.Copies");
            for _ in 0..10_000 {
                c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)");
                c.cmd("EXPUNGE");
            }
        });
    });
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    let acked = h.join().unwrap();
    let _ = h2.join();
    let _ = h3.join();
    assert!(
        acked.len() > 5,
        "too few appends before the kill: {}",
        acked.len()
    );
    s.restart();
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX");
    assert!(r.ok());
    let r = c.cmd("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let mut by_subject: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen_uids = BTreeSet::new();
    for l in r.untagged("") {
        if !l.contains("FETCH") {
            continue;
        }
        let uid = number_after(l, "UID ").unwrap();
        assert!(seen_uids.insert(uid), "duplicate UID {uid}");
        let subj = l
            .split("Subject: ")
            .nth(1)
            .unwrap()
            .split('\r')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        by_subject.insert(subj, uid);
    }
    // Every acknowledged APPEND is there, with the UID it was given.
    for (i, uid) in acked.iter().enumerate() {
        assert_eq!(
            by_subject.get(&format!("crash{i}")),
            Some(uid),
            "message crash{i} lost or renumbered"
        );
    }
    let uidnext = {
        let r = c.cmd("STATUS INBOX (UIDNEXT)");
        number_after(r.untagged("STATUS")[0], "UIDNEXT").unwrap()
    };
    assert!(uidnext > *acked.iter().max().unwrap());
    let r = c.cmd("SELECT INBOX.Copies");
    assert!(r.ok(), "{r:?}");
    // No stray files are left where they would be taken for mail.
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(s.maildir("alice").join(sub)).unwrap() {
            let len = e.unwrap().metadata().unwrap().len();
            assert!(len > 0, "empty message file in {sub}");
        }
    }
}

#[test]
fn renames_by_other_programs_never_look_like_expunges() {
    let s = server().start();
    let mut c = s.alice();
    for i in 0..50 {
        c.append("INBOX", "()", &message(&format!("r{i}"), "x"));
    }
    c.cmd("SELECT INBOX");
    let cur = s.maildir("alice").join("cur");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let renamer = std::thread::spawn(move || {
        let mut flip = false;
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            for e in std::fs::read_dir(&cur).unwrap().flatten() {
                let name = e.file_name().into_string().unwrap();
                let (base, _) = name.split_once(":2,").unwrap();
                let to = format!("{base}:2,{}", if flip { "S" } else { "" });
                let _ = std::fs::rename(e.path(), cur.join(to));
            }
            flip = !flip;
        }
    });
    for _ in 0..200 {
        let r = c.cmd("NOOP");
        assert!(
            !r.has("EXPUNGE"),
            "a renamed message was reported expunged: {r:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renamer.join().unwrap();
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 50"));
}

#[test]
fn two_servers_on_one_maildir_agree() {
    let s1 = server().start();
    // The second server shares the first one's mail directory.
    let s2 = server().config("").start();
    std::fs::create_dir_all(s2.path().join("mail")).unwrap();
    std::fs::remove_dir_all(s2.path().join("mail")).unwrap();
    std::os::unix::fs::symlink(s1.path().join("mail"), s2.path().join("mail")).unwrap();
    s1.alice().cmd("SELECT INBOX");
    let mut handles = Vec::new();
    for (k, addr) in [s1.imap, s2.imap, s1.imap, s2.imap].into_iter().enumerate() {
        handles.push(std::thread::spawn(move || {
            let mut c = Client::plain(addr);
            c.cmd("LOGIN alice secret");
            let mut uids = Vec::new();
            for i in 0..40 {
                let r = c.append("INBOX", "()", &message(&format!("s{k}-{i}"), "x"));
                assert!(r.ok(), "{r:?}");
                uids.push(
                    r.tagged()
                        .split(' ')
                        .nth(4)
                        .unwrap()
                        .trim_end_matches(']')
                        .parse::<u64>()
                        .unwrap(),
                );
                if i % 10 == 9 {
                    c.cmd("SELECT INBOX");
                    c.cmd("STORE 1:* +FLAGS.SILENT (\\Seen)");
                    c.cmd(&format!(
                        "UID STORE {} +FLAGS.SILENT (\\Deleted)",
                        uids[i - 5]
                    ));
                    c.cmd(&format!("UID EXPUNGE {}", uids[i - 5]));
                }
            }
            uids
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a UID was given twice");
    let view = |addr| {
        let mut c = Client::plain(addr);
        c.cmd("LOGIN alice secret");
        c.cmd("SELECT INBOX");
        let r = c.cmd("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
        let mut v: Vec<(u64, String)> = r
            .untagged("")
            .iter()
            .filter(|l| l.contains("FETCH"))
            .map(|l| {
                (
                    number_after(l, "UID ").unwrap(),
                    l.split("Subject: ")
                        .nth(1)
                        .unwrap()
                        .split('\r')
                        .next()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let v1 = view(s1.imap);
    let v2 = view(s2.imap);
    assert_eq!(v1, v2);
    assert_eq!(v1.len(), 4 * 40 - 4 * 4, "appends minus expunges");
}

#[test]
fn deleting_the_selected_mailbox_ends_the_other_session() {
    let s = server().start();
    let mut a = s.alice();
    let mut b = s.alice();
    a.cmd("CREATE INBOX.Gone");
    assert!(b.cmd("SELECT INBOX.Gone").ok());
    assert!(a.cmd("DELETE INBOX.Gone").ok());
    b.send(b"n1 NOOP\r\n");
    let l = b.read_line();
    assert!(l.starts_with("* BYE"), "{l}");
}

#[test]
fn idle_is_woken_by_inotify_not_only_by_polling() {
    // Rescans every ten minutes: only inotify can deliver this within seconds.
    let s = server()
        .config("[limits]\nidle_check_interval_secs = 600\npoll_interval_ms = 600000")
        .start();
    let mut a = s.alice();
    a.cmd("SELECT INBOX");
    a.send(b"i1 IDLE\r\n");
    assert!(a.read_line().starts_with('+'));
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    std::fs::write(
        s.maildir("alice").join("tmp/1700000003.M3P3.mta"),
        "Subject: x\n\ny\n",
    )
    .unwrap();
    std::fs::rename(
        s.maildir("alice").join("tmp/1700000003.M3P3.mta"),
        s.maildir("alice").join("new/1700000003.M3P3.mta"),
    )
    .unwrap();
    assert_eq!(a.read_line(), "* 1 EXISTS");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    a.send(b"DONE\r\n");
    let _ = a.read_until_tag("i1");
}

#[test]
fn idle_on_more_folders_than_inotify_instances_allows() {
    // The kernel allows 128 inotify instances per user by default: one
    // instance per folder would leave most of these sessions deaf.
    let n = 150;
    let s = server()
        .config(
            "[limits]\nidle_check_interval_secs = 600\npoll_interval_ms = 600000\nmax_connections_per_ip = 1000\nmax_connections_per_user_ip = 1000\nmax_connections_per_user = 1000",
        )
        .start();
    let md = s.maildir("alice");
    let mut first = s.alice();
    first.cmd("NOOP");
    for i in 0..n {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["maildirmake", "-f", &format!("f{i}")])
            .arg(&md)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut clients: Vec<_> = (0..n)
        .map(|i| {
            let mut c = s.alice();
            assert!(c.cmd(&format!("SELECT INBOX.f{i}")).ok());
            c.send(b"i1 IDLE\r\n");
            assert!(c.read_line().starts_with('+'));
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for i in [0, n / 2, n - 1] {
        let dir = md.join(format!(".f{i}"));
        std::fs::write(dir.join("tmp/1700000009.M9P9.mta"), "Subject: x\n\ny\n").unwrap();
        std::fs::rename(
            dir.join("tmp/1700000009.M9P9.mta"),
            dir.join("new/1700000009.M9P9.mta"),
        )
        .unwrap();
        let start = Instant::now();
        assert_eq!(clients[i].read_line(), "* 1 EXISTS", "folder f{i}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    for c in &mut clients {
        c.send(b"DONE\r\n");
    }
}

#[test]
fn another_sessions_expunge_of_a_recent_message_announces_the_new_recent_count() {
    let s = server().start();
    let mut a = s.alice();
    assert!(a.append("INBOX", "()", &message("old", "x")).ok());
    // The first message is \Recent for a, which selects first.
    assert!(a.cmd("SELECT INBOX").has("* 1 RECENT"));
    let mut b = s.alice();
    assert!(b.cmd("SELECT INBOX").has("* 0 RECENT"));
    // Two new messages from a session without INBOX selected: \Recent for
    // the selected session that sees them first, b.
    let mut c = s.alice();
    assert!(c.append("INBOX", "()", &message("new1", "x")).ok());
    assert!(c.append("INBOX", "()", &message("new2", "x")).ok());
    let r = b.cmd("NOOP");
    assert!(r.has("* 3 EXISTS") && r.has("* 2 RECENT"), "{r:?}");
    let r = a.cmd("NOOP");
    assert!(r.has("* 3 EXISTS") && r.has("* 1 RECENT"), "{r:?}");
    assert!(a.cmd("STORE 3 +FLAGS.SILENT (\\Deleted)").ok());
    assert!(a.cmd("EXPUNGE").ok());
    let r = b.cmd("NOOP");
    assert!(r.has("* 3 EXPUNGE"), "{r:?}");
    assert!(r.has("* 1 RECENT"), "the RECENT count fell: {r:?}");
    // The expunge of a message that was not \Recent for b changes nothing
    // of its count, and says nothing of it (as Dovecot).
    assert!(a.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").ok());
    assert!(a.cmd("EXPUNGE").ok());
    let r = b.cmd("NOOP");
    assert!(r.has("* 1 EXPUNGE") && !r.has("RECENT"), "{r:?}");
}

#[test]
fn clients_that_log_out_and_reconnect_at_once_find_their_places_free() {
    // Five places per address, five clients each logging out and
    // reconnecting the moment it reads the answer, 100 times: every
    // reconnection is let in (the place is given back before the answer
    // goes out, not when the session's task ends some time after).
    let s = server()
        .config("[limits]\nmax_connections_per_ip = 5")
        .log("warn")
        .start();
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..5 {
            scope.spawn(|| {
                let mut c = s.alice();
                for _ in 0..100 {
                    assert!(c.cmd("LOGOUT").ok());
                    c = s.connect();
                    if !c.greeting.starts_with("* OK") {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    assert!(c.cmd("LOGIN alice secret").ok());
                }
            });
        }
    });
    assert_eq!(refused.into_inner(), 0, "reconnections refused");
    // With the five open, a sixth is refused, and the refusal is logged
    // with the address and the limit.
    let _open: Vec<Client> = (0..5).map(|_| s.alice()).collect();
    let extra = s.connect();
    assert!(
        extra.greeting.contains("Too many connections"),
        "{}",
        extra.greeting
    );
    let log = s.log();
    assert!(
        log.contains("max_connections_per_ip")
            && log.contains("127.0.0.1")
            && log.contains("limit=5"),
        "{log}"
    );
}

/// One account's storage stuck (here: a lock another program holds on its
/// INBOX, which tern waits up to 45 s for) takes at most its share of the
/// storage threads: another account logs in and works at once, the stuck
/// account's sessions get `NO [UNAVAILABLE]` after the configured wait,
/// and SIGTERM still ends the process within its documented time. With 4
/// threads and 6 stuck APPENDs, without the per-account bound bob's login
/// would wait for a thread until the lock waits gave up.
#[test]
fn one_accounts_stuck_storage_leaves_the_others_served() {
    let mut s = server()
        .config(
            "[limits]\nblocking_threads = 4\nmax_storage_jobs_per_account = 2\nstorage_timeout_secs = 3",
        )
        .start();
    let mut alices: Vec<Client> = (0..6).map(|_| s.alice()).collect();
    // Courier's lock of alice's INBOX, held by a live process (this one).
    let lock = s.maildir("alice").join("tmp/courier.lock");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(&lock, format!("{}:{}", std::process::id(), host.trim())).unwrap();
    let stuck_since = Instant::now();
    let msg = message("stuck", "x");
    // One more session has begun an APPEND while the storage answers: its
    // message is being written to tmp/ when the storage gets stuck.
    let mut late = s.alice();
    let (head, tail) = (
        &b"Subject: late\r\n\r\nfirst\r\n"[..],
        &b"then a bare\nLF\r\n"[..],
    );
    let late_tag = late.next_tag();
    late.send(
        format!(
            "{late_tag} APPEND INBOX {{{}}}\r\n",
            head.len() + tail.len()
        )
        .as_bytes(),
    );
    assert!(late.read_line().starts_with('+'));
    late.send(head);
    // Two APPENDs first, which take alice's two storage permits and stay in
    // the lock wait; the four after them wait for a permit from their very
    // first storage call (the message's file in tmp/), and must get the
    // same `UNAVAILABLE` from there.
    for (i, a) in alices.iter_mut().enumerate() {
        let tag = a.next_tag();
        let mut cmd = format!("{tag} APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
        cmd.extend_from_slice(&msg);
        cmd.extend_from_slice(b"\r\n");
        a.send(&cmd);
        if i == 1 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    // The rest of the late message has a bare LF after CRLFs: what it has
    // written so far is copied to a file kept as sent, a storage call that
    // waits for one of the permits the stuck APPENDs hold.
    late.send(tail);
    late.send(b"\r\n");
    // bob is served while alice's storage is stuck.
    let mut bob = s.login("bob", "bobpw");
    assert!(bob.cmd("SELECT INBOX").ok());
    assert!(bob.append("INBOX", "()", &message("fine", "y")).ok());
    let r = bob.cmd("FETCH 1 BODY.PEEK[TEXT]");
    assert!(r.ok() && r.has("y"), "{r:?}");
    assert!(
        stuck_since.elapsed() < Duration::from_secs(40),
        "bob was served only after alice's lock waits ended"
    );
    // alice's APPENDs end with NO [UNAVAILABLE], none with OK (the lock is
    // still held), and her sessions go on.
    for a in &mut alices {
        let tag = format!("t{}", a.tag);
        let r = a.read_until_tag(&tag);
        assert!(r.no() && r.tagged().contains("[UNAVAILABLE]"), "{r:?}");
    }
    let r = late.read_until_tag(&late_tag);
    assert!(r.no() && r.tagged().contains("[UNAVAILABLE]"), "{r:?}");
    assert!(alices[0].cmd("NOOP").ok());
    // SIGTERM while alice's calls are still stuck in their lock waits.
    let asked = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "SIGTERM took {:?}: the process waited for stuck storage calls",
        asked.elapsed()
    );
    std::fs::remove_file(&lock).unwrap();
}
