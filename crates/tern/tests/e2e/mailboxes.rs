//! CREATE, DELETE, RENAME, LIST, LSUB, SUBSCRIBE, STATUS, and name safety.

use crate::harness::*;

fn list_names(r: &Resp) -> Vec<String> {
    r.untagged("LIST ")
        .iter()
        .map(|l| {
            l.rsplit_once("\".\" ")
                .unwrap()
                .1
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[test]
fn create_list_hierarchy() {
    let s = server().start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Work").ok());
    assert!(c.cmd("CREATE INBOX.Work.2024").ok());
    assert!(
        c.cmd("CREATE INBOX.Deep.Child").ok(),
        "parent need not exist"
    );
    let r = c.cmd("CREATE INBOX.Work");
    assert!(r.no() && r.tagged().contains("[ALREADYEXISTS]"), "{r:?}");
    assert!(c.cmd("CREATE INBOX").no());
    assert!(
        c.cmd("CREATE INBOX.Trailing.").ok(),
        "trailing separator is allowed"
    );
    let r = c.cmd("LIST \"\" \"*\"");
    let names = list_names(&r);
    for n in [
        "INBOX",
        "INBOX.Work",
        "INBOX.Work.2024",
        "INBOX.Deep",
        "INBOX.Deep.Child",
        "INBOX.Trailing",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} missing in {names:?}");
    }
    assert!(r.has("(\\HasChildren) \".\" \"INBOX\""), "{r:?}");
    assert!(r.has("(\\HasChildren) \".\" \"INBOX.Work\""));
    assert!(r.has("(\\HasNoChildren) \".\" \"INBOX.Work.2024\""));
    assert!(
        r.has("(\\Noselect \\HasChildren) \".\" \"INBOX.Deep\""),
        "{r:?}"
    );
    let r = c.cmd("LIST \"\" \"INBOX.%\"");
    let names = list_names(&r);
    assert!(
        names.contains(&"INBOX.Work".to_owned()) && !names.contains(&"INBOX.Work.2024".to_owned()),
        "{names:?}"
    );
    let r = c.cmd("LIST \"\" %");
    assert_eq!(list_names(&r), vec!["INBOX"]);
    let r = c.cmd("LIST \"INBOX.\" %");
    assert!(list_names(&r).contains(&"INBOX.Work".to_owned()));
    let r = c.cmd("LIST \"\" \"\"");
    assert!(r.has("LIST (\\Noselect) \".\" \"\""), "{r:?}");
    let r = c.cmd("list \"\" inbox");
    assert_eq!(list_names(&r), vec!["INBOX"]);
    assert!(c.cmd("LIST \"\" ~foo").ok(), "atoms may contain ~");
    // On disk: Maildir++.
    let md = s.maildir("alice");
    assert!(md.join(".Work.2024/cur").is_dir());
    assert!(md.join(".Work/maildirfolder").is_file());
}

#[test]
fn names_cannot_escape_the_maildir() {
    let s = server().start();
    let mut c = s.alice();
    for bad in [
        "INBOX../x",
        "\"INBOX.a/b\"",
        "\"INBOX..\"",
        "\"INBOX.a..b\"",
        "\"INBOX.&Jjo\"",
        "\"/etc\"",
        "\"../x\"",
        "Outside",
    ] {
        let r = c.cmd(&format!("CREATE {bad}"));
        assert!(r.no() || r.bad(), "{bad} was accepted: {r:?}");
    }
    // Modified UTF-7 names work; a new Maildir spells them in UTF-8 on
    // disk, as Courier-IMAP 5 does.
    assert!(c.cmd("CREATE \"INBOX.Entw&APw-rfe\"").ok());
    assert!(s.maildir("alice").join(".Entwürfe").is_dir());
    // A symlink planted in the Maildir is not listed as a folder.
    std::os::unix::fs::symlink("/etc", s.maildir("alice").join(".Evil")).unwrap();
    let r = c.cmd("LIST \"\" *");
    assert!(!r.has("Evil"), "{r:?}");
    assert!(c.cmd("SELECT INBOX.Nothing").no());
    // Nor does a symlink to another user's Maildir lead anywhere.
    let mut bob = s.login("bob", "bobpw");
    bob.append("INBOX", "()", &message("private", "bob's mail"));
    std::os::unix::fs::symlink(s.maildir("bob"), s.maildir("alice").join(".Bob")).unwrap();
    for cmd in [
        "SELECT INBOX.Bob",
        "EXAMINE INBOX.Bob",
        "STATUS INBOX.Bob (MESSAGES)",
        "DELETE INBOX.Bob",
    ] {
        let r = c.cmd(cmd);
        assert!(r.no(), "{cmd}: {r:?}");
        assert!(!r.has("MESSAGES 1"), "{cmd}: {r:?}");
    }
    let r = c.cmd("APPEND INBOX.Bob {3}");
    assert!(r.no() && r.tagged().contains("TRYCREATE"), "{r:?}");
    let r = bob.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 1"), "bob's mailbox untouched: {r:?}");
    let parent = s.path().join("mail").join("alice");
    let entries: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "nothing created beside the Maildir: {entries:?}"
    );
}

#[test]
fn delete_and_rename() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("CREATE INBOX.A");
    c.cmd("CREATE INBOX.A.B");
    c.append("INBOX.A.B", "()", &message("m1", "x"));
    assert!(c.cmd("RENAME INBOX.A INBOX.Z").ok());
    let r = c.cmd("LIST \"\" *");
    let names = list_names(&r);
    assert!(
        names.contains(&"INBOX.Z.B".to_owned()) && !names.iter().any(|n| n.starts_with("INBOX.A")),
        "{names:?}"
    );
    let r = c.cmd("STATUS INBOX.Z.B (MESSAGES)");
    assert!(r.has("MESSAGES 1"), "{r:?}");
    let r = c.cmd("RENAME INBOX.Nope INBOX.Y");
    assert!(r.no() && r.tagged().contains("NONEXISTENT"), "{r:?}");
    c.cmd("CREATE INBOX.Other");
    assert!(c.cmd("RENAME INBOX.Z INBOX.Other").no());
    assert!(c.cmd("DELETE INBOX.Z").ok());
    let r = c.cmd("LIST \"\" *");
    assert!(
        r.has("(\\Noselect \\HasChildren) \".\" \"INBOX.Z\""),
        "children stay: {r:?}"
    );
    let r = c.cmd("DELETE INBOX.Missing");
    assert!(r.no() && r.tagged().contains("NONEXISTENT"));
    assert!(c.cmd("DELETE INBOX").no());
    assert!(c.cmd("SELECT INBOX.Z").no());
}

#[test]
fn rename_inbox_moves_its_messages() {
    let s = server().start();
    let mut c = s.alice();
    c.append("INBOX", "(\\Seen)", &message("a", "1"));
    c.append("INBOX", "()", &message("b", "2"));
    assert!(c.cmd("RENAME INBOX INBOX.Old").ok());
    let r = c.cmd("STATUS INBOX (MESSAGES)");
    assert!(r.has("MESSAGES 0"), "{r:?}");
    let r = c.cmd("STATUS INBOX.Old (MESSAGES UNSEEN)");
    assert!(r.has("MESSAGES 2") && r.has("UNSEEN 1"), "{r:?}");
}

#[test]
fn subscriptions_in_courier_file() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("CREATE INBOX.Sub");
    c.cmd("CREATE INBOX.Unsub");
    assert!(c.cmd("SUBSCRIBE INBOX.Sub").ok());
    assert!(c.cmd("SUBSCRIBE INBOX").ok());
    let r = c.cmd("LSUB \"\" *");
    let lsub: Vec<&str> = r.untagged("LSUB");
    assert_eq!(lsub.len(), 2, "{r:?}");
    assert!(r.has("\"INBOX.Sub\""));
    let file = std::fs::read_to_string(s.maildir("alice").join("courierimapsubscribed")).unwrap();
    assert!(file.lines().any(|l| l == "INBOX.Sub"), "{file}");
    assert!(c.cmd("UNSUBSCRIBE INBOX.Sub").ok());
    let r = c.cmd("LSUB \"\" INBOX.*");
    assert!(r.untagged("LSUB").is_empty(), "{r:?}");
}

#[test]
fn status_items() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("CREATE INBOX.S");
    c.append("INBOX.S", "(\\Seen)", &message("a", "1"));
    c.append("INBOX.S", "()", &message("b", "2"));
    let r = c.cmd("STATUS INBOX.S (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)");
    let line = r.untagged("STATUS")[0];
    assert!(
        line.contains("MESSAGES 2") && line.contains("UIDNEXT 3") && line.contains("UNSEEN 1"),
        "{line}"
    );
    assert!(line.contains("RECENT 2"), "{line}");
    let v = number_after(line, "UIDVALIDITY").unwrap();
    let r = c.cmd("SELECT INBOX.S");
    assert_eq!(
        number_after(r.untagged("OK [UIDVALIDITY")[0], "UIDVALIDITY"),
        Some(v)
    );
    assert!(c.cmd("STATUS INBOX.None (MESSAGES)").no());
}

#[test]
fn a_symlinked_message_file_is_not_followed() {
    let s = server().start();
    let mut c = s.alice();
    c.cmd("SELECT INBOX");
    let secret = s.path().join("secret.txt");
    std::fs::write(&secret, "Subject: secret\n\nTOP SECRET\n").unwrap();
    std::os::unix::fs::symlink(
        &secret,
        s.maildir("alice").join("cur/1700000004.M4P4.evil:2,"),
    )
    .unwrap();
    let r = c.cmd("NOOP");
    assert!(r.has("* 1 EXISTS"), "{r:?}");
    let r = c.cmd("FETCH 1 (BODY.PEEK[])");
    assert!(!r.has("TOP SECRET"), "{r:?}");
    assert!(c.cmd("NOOP").ok());
}

/// Virtual users share one system account, so the kernel cannot keep
/// them apart: a user who can write into her Maildir (a shell, FTP, an
/// upload) plants `cur/` and `new/` links to another's. tern reaches
/// messages only through the directories a scan opened without following
/// links, so neither a planted link nor one swapped in under an open
/// folder reads, flags or removes the other user's mail.
#[test]
fn planted_links_to_another_users_cur_reach_nothing() {
    let s = server().start();
    let mut bob = s.login("bob", "bobpw");
    bob.append("INBOX", "()", &message("bob's", "B-SECRET body"));
    drop(bob);
    let bmd = s.maildir("bob");
    let snapshot = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = ["cur", "new"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(d.join(sub)).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&bmd);
    assert_eq!(before.len(), 1);
    let mut c = s.alice();
    let amd = s.maildir("alice");
    // A folder whose cur/ and new/ are bob's from the start.
    let deep = amd.join(".Deep");
    std::fs::create_dir_all(deep.join("tmp")).unwrap();
    std::fs::write(deep.join("maildirfolder"), "").unwrap();
    std::os::unix::fs::symlink(bmd.join("cur"), deep.join("cur")).unwrap();
    std::os::unix::fs::symlink(bmd.join("new"), deep.join("new")).unwrap();
    let r = c.cmd("SELECT INBOX.Deep");
    assert!(!r.has(" 1 EXISTS"), "{r:?}");
    let r = c.cmd("FETCH 1:* BODY.PEEK[]");
    assert!(!r.has("B-SECRET"), "{r:?}");
    let r = c.cmd("STATUS INBOX.Deep (MESSAGES)");
    assert!(!r.has("MESSAGES 1"), "{r:?}");
    // A folder of her own, open in three sessions, whose cur/ is swapped
    // for a link to bob's while they have it selected. The first command
    // of each after the swap still works on the directory they opened
    // (hers); the look at the disk after it finds the link and ends the
    // session as for a deleted folder.
    assert!(c.cmd("CREATE INBOX.Swap").ok());
    assert!(c
        .append("INBOX.Swap", "()", &message("hers", "A-OWN body"))
        .ok());
    let mut sessions: Vec<Client> = (0..3).map(|_| s.alice()).collect();
    for x in &mut sessions {
        assert!(x.cmd("SELECT INBOX.Swap").ok());
    }
    assert!(sessions[2].cmd("STORE 1 +FLAGS (\\Deleted)").ok());
    let swap = amd.join(".Swap");
    std::fs::rename(swap.join("cur"), swap.join("cur.old")).unwrap();
    std::os::unix::fs::symlink(bmd.join("cur"), swap.join("cur")).unwrap();
    let r = sessions[0].cmd("FETCH 1 BODY.PEEK[]");
    assert!(r.has("A-OWN") && !r.has("B-SECRET"), "{r:?}");
    assert!(r.has("* BYE"), "the folder is no longer one: {r:?}");
    let r = sessions[1].cmd("STORE 1 +FLAGS (\\Seen \\Flagged)");
    assert!(!r.has("B-SECRET"), "{r:?}");
    let r = sessions[2].cmd("EXPUNGE");
    assert!(!r.has("B-SECRET"), "{r:?}");
    // The STORE and EXPUNGE found the link before they changed anything
    // (writers look at what cur/ names first): her message is still in the
    // directory she moved aside, as it was.
    let old: Vec<String> = std::fs::read_dir(swap.join("cur.old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        old.len() == 1 && old[0].ends_with(":2,T"),
        "her message as it was: {old:?}"
    );
    assert!(
        c.cmd("SELECT INBOX.Swap").no(),
        "a folder with a linked cur/"
    );
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("FETCH 1:* BODY.PEEK[]");
    assert!(!r.has("B-SECRET"), "{r:?}");
    assert_eq!(
        snapshot(&bmd),
        before,
        "bob's files were renamed or removed"
    );
    let mut bob = s.login("bob", "bobpw");
    bob.cmd("SELECT INBOX");
    let r = bob.cmd("FETCH 1 (FLAGS BODY.PEEK[])");
    assert!(r.has("B-SECRET") && !r.has("\\Deleted"), "{r:?}");
    assert!(c.cmd("NOOP").ok(), "alice's session goes on");
}

/// Everything of a directory tree, names and contents, to compare.
fn tree(d: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![d.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                todo.push(p.clone());
                out.push((p.display().to_string(), Vec::new()));
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_tmp_that_is_a_link_leads_nowhere() {
    // tmp/ is where APPEND, COPY, a new maildirsize and CREATE/DELETE
    // write: alice makes hers a link to bob's Maildir, which must stay
    // byte for byte as it was.
    let s = server().start();
    let mut bob = s.login("bob", "bobpw");
    bob.append("INBOX", "()", &message("bob's", "B-SECRET body"));
    assert!(bob.cmd("CREATE INBOX.Bobs").ok());
    drop(bob);
    let (amd, bmd) = (s.maildir("alice"), s.maildir("bob"));
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Work").ok());
    assert!(c.append("INBOX", "()", &message("hers", "A-OWN body")).ok());
    let before = tree(&bmd);
    // The Work folder's tmp/ first: a COPY into it is refused.
    let work = amd.join(".Work");
    std::fs::remove_dir(work.join("tmp")).unwrap();
    std::os::unix::fs::symlink(bmd.join("tmp"), work.join("tmp")).unwrap();
    assert!(c.cmd("SELECT INBOX").ok());
    let r = c.cmd("COPY 1 INBOX.Work");
    assert!(r.no(), "{r:?}");
    // Then the root's: APPEND, CREATE and DELETE are refused.
    std::fs::rename(amd.join("tmp"), amd.join("tmp.old")).unwrap();
    std::os::unix::fs::symlink(&bmd, amd.join("tmp")).unwrap();
    // Refused before the continuation request, and as a LITERAL+ APPEND
    // after the literal.
    let tag = "ap1";
    let msg = message("more", "A-MORE body");
    c.send(format!("{tag} APPEND INBOX () {{{}}}\r\n", msg.len()).as_bytes());
    let r = c.read_line();
    assert!(r.starts_with(&format!("{tag} NO")), "{r}");
    let r = c.cmd(&format!(
        "APPEND INBOX () {{{}+}}\r\n{}",
        msg.len(),
        String::from_utf8_lossy(&msg)
    ));
    assert!(r.no(), "{r:?}");
    assert!(c.cmd("CREATE INBOX.New").no());
    assert!(c.cmd("DELETE INBOX.Work").no());
    assert_eq!(tree(&bmd), before, "bob's Maildir changed");
    // The session goes on, and with tmp/ back all works again.
    std::fs::remove_file(amd.join("tmp")).unwrap();
    std::fs::rename(amd.join("tmp.old"), amd.join("tmp")).unwrap();
    assert!(c
        .append("INBOX", "()", &message("more", "A-MORE body"))
        .ok());
    assert!(c.cmd("CREATE INBOX.New").ok());
    assert!(c.cmd("DELETE INBOX.New").ok());
    let mut bob = s.login("bob", "bobpw");
    assert!(bob.cmd("SELECT INBOX").ok());
    let r = bob.cmd("FETCH 1:* BODY.PEEK[]");
    assert!(
        r.has("B-SECRET") && !r.has("A-OWN") && !r.has("A-MORE"),
        "{r:?}"
    );
}

#[test]
fn a_linked_maildir_is_served_only_where_the_operator_allows() {
    // alice's Maildir is a link to a directory elsewhere.
    for allowed in [false, true] {
        let mut b = server();
        if allowed {
            b = b.mail("linked_maildir = true");
        }
        let s = b.start();
        let amd = s.maildir("alice");
        let real = s.path().join("elsewhere");
        std::fs::create_dir_all(amd.parent().unwrap()).unwrap();
        if amd.exists() {
            std::fs::rename(&amd, &real).unwrap();
        } else {
            std::fs::create_dir_all(&real).unwrap();
        }
        std::os::unix::fs::symlink(&real, &amd).unwrap();
        let mut c = s.connect();
        let r = c.cmd(&format!("LOGIN alice {ALICE_PW}"));
        if allowed {
            assert!(r.ok(), "{r:?}");
            assert!(c
                .append("INBOX", "()", &message("m", "through the link"))
                .ok());
            assert!(c.cmd("SELECT INBOX").ok());
            let r = c.cmd("FETCH 1 BODY.PEEK[TEXT]");
            assert!(r.has("through the link"), "{r:?}");
        } else {
            assert!(r.no() && r.has("[UNAVAILABLE]"), "{r:?}");
        }
    }
}

#[test]
fn hostile_list_patterns_neither_crash_nor_stall() {
    // 30,000 wildcards overflowed the recursive matcher's stack and aborted
    // the process; `*` runs before a miss backtracked for seconds per name.
    let s = server().start();
    let mut c = s.alice();
    for i in 0..20 {
        assert!(c.cmd(&format!("CREATE INBOX.f{i}.sub")).ok());
    }
    let mut other = s.alice();
    let r = c.cmd(&format!("LIST \"\" \"{}\"", "*".repeat(30_000)));
    assert!(r.ok(), "{}", r.tagged());
    assert_eq!(r.untagged("LIST").len(), 41, "{r:?}");
    let r = c.cmd(&format!("LIST \"\" \"{}\"", "%".repeat(30_000)));
    assert!(r.ok() && r.untagged("LIST").len() == 1, "{r:?}");
    let r = c.cmd("LIST \"\" \"************!\"");
    assert!(r.ok() && r.untagged("LIST").is_empty(), "{r:?}");
    let r = c.cmd(&format!("LIST \"\" \"{}x\"", "*".repeat(20)));
    assert!(r.ok() && r.untagged("LIST").is_empty(), "{r:?}");
    // The server still serves everyone.
    assert!(other.cmd("NOOP").ok());
    assert!(s.alice().cmd("NOOP").ok());
}

#[test]
fn message_put_straight_into_cur_is_recent_for_the_first_session() {
    let s = server().start();
    let mut c = s.alice();
    assert!(c.cmd("SELECT INBOX").ok());
    c.cmd("LOGOUT");
    // Another program (an MDA that writes cur/, a migration tool) adds a
    // message no session has seen.
    let md = s.maildir("alice");
    std::fs::write(
        md.join("cur").join("1700000000.M1P1.other:2,S"),
        message("straight", "to cur"),
    )
    .unwrap();
    let mut a = s.alice();
    let r = a.cmd("STATUS INBOX (MESSAGES RECENT)");
    assert!(r.has("MESSAGES 1 RECENT 1"), "{r:?}");
    let r = a.cmd("SELECT INBOX");
    assert!(r.has("* 1 RECENT"), "{r:?}");
    let r = a.cmd("FETCH 1 FLAGS");
    assert!(r.has("\\Recent") && r.has("\\Seen"), "{r:?}");
    // Only one session gets it.
    let mut b = s.alice();
    let r = b.cmd("SELECT INBOX");
    assert!(r.has("* 0 RECENT"), "{r:?}");
}

#[test]
fn examine_reports_recent_as_select_and_status_do_without_taking_it() {
    let s = server().start();
    let mut a = s.alice();
    assert!(a.append("INBOX", "()", &message("one", "x")).ok());
    assert!(a.append("INBOX", "()", &message("two", "x")).ok());
    let r = a.cmd("STATUS INBOX (RECENT)");
    assert!(r.has("(RECENT 2)"), "{r:?}");
    let r = a.cmd("EXAMINE INBOX");
    assert!(r.has("* 2 RECENT"), "EXAMINE: {r:?}");
    let r = a.cmd("FETCH 1:2 (FLAGS)");
    assert_eq!(
        r.lines.iter().filter(|l| l.contains("\\Recent")).count(),
        2,
        "{r:?}"
    );
    // One more arrives while examined: news for the read-only session too.
    assert!(s.alice().append("INBOX", "()", &message("three", "x")).ok());
    let r = a.cmd("NOOP");
    assert!(r.has("* 3 EXISTS") && r.has("* 3 RECENT"), "{r:?}");
    // Still there for the session that selects the folder next.
    let mut b = s.alice();
    let r = b.cmd("SELECT INBOX");
    assert!(r.has("* 3 RECENT"), "SELECT after EXAMINE: {r:?}");
    let r = s.alice().cmd("SELECT INBOX");
    assert!(r.has("* 0 RECENT"), "claimed by the first SELECT: {r:?}");
}

#[test]
fn lsub_shows_the_unsubscribed_level_a_percent_reaches_as_noselect() {
    // RFC 3501 §6.3.9: with only INBOX.a.b.c subscribed, LSUB "" INBOX.a.%
    // returns INBOX.a.b flagged \Noselect.
    let s = server().start();
    let mut c = s.alice();
    for f in ["INBOX.a", "INBOX.a.b", "INBOX.a.b.c"] {
        assert!(c.cmd(&format!("CREATE {f}")).ok());
    }
    // CREATE subscribes nothing (as Courier-IMAP and Dovecot).
    assert!(c.cmd("LSUB \"\" *").untagged("LSUB").is_empty());
    assert!(c.cmd("SUBSCRIBE INBOX.a.b.c").ok());
    let r = c.cmd("LSUB \"\" INBOX.a.%");
    assert!(r.ok(), "{}", r.tagged());
    assert_eq!(
        r.untagged("LSUB"),
        vec!["LSUB (\\Noselect) \".\" \"INBOX.a.b\""],
        "{r:?}"
    );
    let r = c.cmd("LSUB \"\" INBOX.%");
    assert_eq!(
        r.untagged("LSUB"),
        vec!["LSUB (\\Noselect) \".\" \"INBOX.a\""]
    );
    // A subscribed level shows as itself, once.
    assert!(c.cmd("SUBSCRIBE INBOX.a").ok());
    let r = c.cmd("LSUB \"\" INBOX.%");
    assert_eq!(r.untagged("LSUB"), vec!["LSUB () \".\" \"INBOX.a\""]);
    let r = c.cmd("LSUB \"\" INBOX.a.*");
    assert_eq!(r.untagged("LSUB"), vec!["LSUB () \".\" \"INBOX.a.b.c\""]);
}

fn uidvalidity_of(r: &Resp) -> u64 {
    let l = r
        .lines
        .iter()
        .find(|l| l.contains("[UIDVALIDITY "))
        .unwrap_or_else(|| panic!("no UIDVALIDITY in {r:?}"));
    l.split("[UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_folder_created_again_gets_a_larger_uidvalidity_even_within_one_second() {
    // RFC 3501 §2.3.1.1: a name's UIDVALIDITY never comes back, also when
    // the folder is deleted and created again at once, and after a restart.
    let mut s = server().start();
    let mut c = s.alice();
    let mut last = 0;
    for round in 0..5 {
        assert!(c.cmd("CREATE INBOX.again").ok());
        assert!(c.append("INBOX.again", "()", &message("m", "x")).ok());
        let r = c.cmd("SELECT INBOX.again");
        let v = uidvalidity_of(&r);
        assert!(v > last, "round {round}: {v} after {last}");
        last = v;
        assert!(c.cmd("UNSELECT").ok());
        assert!(c.cmd("DELETE INBOX.again").ok());
    }
    drop(c);
    s.restart();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.again").ok());
    assert!(c.append("INBOX.again", "()", &message("m", "x")).ok());
    let v = uidvalidity_of(&c.cmd("SELECT INBOX.again"));
    assert!(v > last, "after a restart: {v} after {last}");
    // Courier reads the UID list as its own: the header is version 1 and
    // the value.
    let db = std::fs::read_to_string(s.maildir("alice").join(".again/courierimapuiddb")).unwrap();
    assert!(db.starts_with(&format!("1 {v} ")), "{db}");
}

#[test]
fn a_folder_created_again_keeps_nothing_of_the_old_messages_under_their_uids() {
    // UID 1 of the new folder is another message: its INTERNALDATE is its
    // own, not the one the old UID 1 had (kept per UID in memory).
    let s = server().start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.re").ok());
    let dated = |d: &str| format!("() \"{d}\"");
    assert!(c
        .append(
            "INBOX.re",
            &dated("01-Jan-2001 10:00:00 +0000"),
            &message("old", "x")
        )
        .ok());
    assert!(c.cmd("SELECT INBOX.re").ok());
    let r = c.cmd("FETCH 1 (INTERNALDATE RFC822.SIZE)");
    assert!(r.has("01-Jan-2001"), "{r:?}");
    assert!(c.cmd("UNSELECT").ok());
    assert!(c.cmd("DELETE INBOX.re").ok());
    assert!(c.cmd("CREATE INBOX.re").ok());
    assert!(c
        .append(
            "INBOX.re",
            &dated("02-Feb-2012 10:00:00 +0000"),
            &message("a new and longer one", "with another body")
        )
        .ok());
    let r = c.cmd("SELECT INBOX.re");
    assert!(r.has("* 1 RECENT"), "{r:?}");
    let r = c.cmd("UID FETCH 1 (INTERNALDATE RFC822.SIZE BODY.PEEK[])");
    assert!(r.has("02-Feb-2012"), "{r:?}");
    let size = r.lines[0]
        .split("RFC822.SIZE ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let sent = message("a new and longer one", "with another body");
    assert_eq!(size.parse::<usize>().unwrap(), sent.len(), "{r:?}");
    let r = c.cmd("SEARCH BEFORE 1-Jan-2010");
    assert!(r.has("* SEARCH") && !r.has("* SEARCH 1"), "{r:?}");
}

#[test]
fn a_folder_only_imap_writes_does_not_keep_a_line_per_message_it_ever_held() {
    // APPEND then EXPUNGE, 200 times, in a Sent folder: the UID list keeps
    // the header, the messages there are, and at most 64 lines of messages
    // that are gone (each APPEND adds a line; when too many name nothing,
    // the list is written again without them), not every message that was
    // (it had 201 lines; each APPEND rewrote all of them).
    let s = server().start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Sent").ok());
    assert!(c.append("INBOX.Sent", "()", &message("kept", "x")).ok());
    assert!(c.cmd("SELECT INBOX.Sent").ok());
    let path = s.maildir("alice").join(".Sent/courierimapuiddb");
    let mut most = 0;
    for i in 0..200 {
        let r = c.append("INBOX.Sent", "(\\Seen)", &message(&format!("m{i}"), "x"));
        assert!(r.ok(), "{r:?}");
        // `tag OK [APPENDUID validity uid] ...`
        let uid = r.tagged().split(' ').nth(4).unwrap().trim_end_matches(']');
        assert!(c
            .cmd(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
            .ok());
        assert!(c.cmd(&format!("UID EXPUNGE {uid}")).ok());
        most = most.max(std::fs::read_to_string(&path).unwrap().lines().count());
    }
    assert!(most <= 2 + 64 + 1, "{most} lines");
    assert!(c.append("INBOX.Sent", "()", &message("last", "x")).ok());
    let db = std::fs::read_to_string(&path).unwrap();
    // The UIDs go on from where they were: none is given again.
    assert!(db.lines().last().unwrap().starts_with("202 "), "{db}");
    let header: Vec<u32> = db
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(header[2], 203, "{db}");
    let r = c.cmd("UID FETCH 1:* (UID)");
    assert_eq!(r.untagged("").len(), 2, "{r:?}");
}

#[test]
fn running_out_of_uids_numbers_the_folder_again_under_a_new_uidvalidity() {
    // RFC 3501 §2.3.1.1: UIDs stop at 2^32-1. Every APPEND past it was
    // acknowledged as UID 4294967295 and, after a restart, only 3 of 5
    // messages were there. Now the folder is numbered again from 1 under a
    // new, larger UIDVALIDITY, and nothing is lost or given twice.
    let mut s = server().start();
    let md = s.maildir("alice");
    std::fs::create_dir_all(md.join("cur")).unwrap();
    std::fs::create_dir_all(md.join("new")).unwrap();
    std::fs::create_dir_all(md.join("tmp")).unwrap();
    std::fs::write(md.join("cur/1700000000.M1P1.h:2,S"), message("a", "x")).unwrap();
    std::fs::write(md.join("cur/1700000001.M1P1.h:2,S"), message("b", "x")).unwrap();
    std::fs::write(
        md.join("courierimapuiddb"),
        "1 1700000000 4294967293\n4294967291 1700000000.M1P1.h\n4294967292 1700000001.M1P1.h\n",
    )
    .unwrap();
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("[UIDVALIDITY 1700000000]"), "{r:?}");
    assert!(c.cmd("UNSELECT").ok());
    let mut uids = Vec::new();
    for i in 0..4 {
        let r = c.append("INBOX", "()", &message(&format!("n{i}"), "x"));
        assert!(r.ok(), "{r:?}");
        uids.push(r.tagged().to_owned());
    }
    // The first two fit (4294967293, 4294967294); the third renumbers.
    assert!(
        uids[0].contains("[APPENDUID 1700000000 4294967293]"),
        "{uids:?}"
    );
    assert!(
        uids[1].contains("[APPENDUID 1700000000 4294967294]"),
        "{uids:?}"
    );
    assert!(!uids[2].contains("1700000000"), "{uids:?}");
    assert!(uids[2].ends_with("5] APPEND completed"), "{uids:?}");
    assert!(uids[3].ends_with("6] APPEND completed"), "{uids:?}");
    drop(c);
    s.restart();
    let mut c = s.alice();
    let r = c.cmd("SELECT INBOX");
    assert!(r.has("* 6 EXISTS"), "{r:?}");
    let v = number_after(
        r.lines.iter().find(|l| l.contains("UIDVALIDITY")).unwrap(),
        "UIDVALIDITY",
    )
    .unwrap();
    assert!(v > 1_700_000_000, "{v}");
    let r = c.cmd("UID FETCH 1:* (UID)");
    let got: Vec<String> = r.untagged("").iter().map(|l| l.to_string()).collect();
    for (i, l) in got.iter().enumerate() {
        assert!(l.contains(&format!("(UID {})", i + 1)), "{got:?}");
    }
    assert_eq!(got.len(), 6);
}
