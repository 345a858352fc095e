//! Switching from Courier-IMAP 4, Courier-IMAP 5 or Dovecot to tern and
//! back: folder names in either on-disk spelling, subscriptions in either
//! server's file, the namespace a Dovecot site's clients know.

use std::path::Path;

use crate::compat::{append_sync, courier_imapd, tern_imapd, uid_flags, write_msg};
use crate::harness::*;

fn maildir_in(dir: &Path) -> std::path::PathBuf {
    let md = dir.join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    md
}

fn folder(md: &Path, dir: &str) -> std::path::PathBuf {
    let f = md.join(dir);
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(f.join(d)).unwrap();
    }
    std::fs::write(f.join("maildirfolder"), "").unwrap();
    f
}

/// The directory names at the Maildir root that are folders.
fn folder_dirs(md: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(md)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn a_courier_5_maildir_with_utf8_folder_names_is_served_and_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let md = maildir_in(dir.path());
    // Courier-IMAP 5 makes the folder and fills it.
    let mut script =
        b"a CREATE \"INBOX.Entw&APw-rfe\"\r\nb SUBSCRIBE \"INBOX.Entw&APw-rfe\"\r\n".to_vec();
    for i in 0..3 {
        let msg = message(&format!("draft {i}"), "x");
        let mut one = append_sync(&format!("p{i}"), "\\Seen", &msg);
        // append_sync appends to INBOX; this one goes to the new folder.
        let head = format!("p{i} APPEND INBOX (\\Seen)");
        let at = one
            .windows(head.len())
            .position(|w| w == head.as_bytes())
            .unwrap();
        one.splice(
            at..at + head.len(),
            format!("p{i} APPEND \"INBOX.Entw&APw-rfe\" (\\Seen)").bytes(),
        );
        script.extend_from_slice(&one);
    }
    script.extend_from_slice(b"z LOGOUT\r\n");
    let out = courier_imapd(&md, &script);
    assert!(out.contains("b OK"), "{out}");
    assert_eq!(
        folder_dirs(&md),
        [".Entwürfe"],
        "Courier 5 writes UTF-8: {out}"
    );
    let subs = std::fs::read_to_string(md.join("courierimapsubscribed")).unwrap();
    assert_eq!(subs.trim(), "INBOX.Entwürfe");

    // tern shows it in modified UTF-7, opens it, and makes no second one.
    let out = tern_imapd(
        &md,
        b"a LIST \"\" \"*\"\r\nb LSUB \"\" \"*\"\r\nc SELECT \"INBOX.Entw&APw-rfe\"\r\n\
          d UID FETCH 1:* (FLAGS)\r\ne CREATE \"INBOX.Entw&APw-rfe\"\r\n\
          f CREATE \"INBOX.R&AOk-sum&AOk-\"\r\ng SUBSCRIBE \"INBOX.R&AOk-sum&AOk-\"\r\n\
          h STATUS \"INBOX.Entw&APw-rfe\" (MESSAGES)\r\nz LOGOUT\r\n",
    );
    assert!(
        out.contains("* LIST (\\HasNoChildren) \".\" \"INBOX.Entw&APw-rfe\""),
        "{out}"
    );
    assert!(
        out.contains("* LSUB () \".\" \"INBOX.Entw&APw-rfe\""),
        "{out}"
    );
    assert!(!out.contains("Entwürfe"), "8-bit on the wire: {out}");
    assert!(out.contains("* 3 EXISTS") && out.contains("c OK"), "{out}");
    assert_eq!(out.matches(" FETCH (").count(), 3, "{out}");
    assert!(out.contains("e NO [ALREADYEXISTS]"), "{out}");
    assert!(out.contains("f OK") && out.contains("g OK"), "{out}");
    assert!(
        out.contains("* STATUS \"INBOX.Entw&APw-rfe\" (MESSAGES 3)"),
        "{out}"
    );
    assert_eq!(
        folder_dirs(&md),
        [".Entwürfe", ".Résumé"],
        "new folders are spelled as this Maildir spells them"
    );
    let subs = std::fs::read_to_string(md.join("courierimapsubscribed")).unwrap();
    assert_eq!(subs, "INBOX.Entwürfe\nINBOX.Résumé\n");

    // Back to Courier: it sees tern's folder and subscription as its own.
    let out = courier_imapd(
        &md,
        b"a LSUB \"\" \"*\"\r\nb SELECT \"INBOX.R&AOk-sum&AOk-\"\r\nc SELECT \"INBOX.Entw&APw-rfe\"\r\nz LOGOUT\r\n",
    );
    assert!(out.contains("INBOX.R&AOk-sum&AOk-"), "{out}");
    assert!(out.contains("b OK") && out.contains("* 3 EXISTS"), "{out}");
}

#[test]
fn a_courier_4_maildir_in_modified_utf7_is_served_and_kept_in_its_form() {
    let dir = tempfile::tempdir().unwrap();
    let md = maildir_in(dir.path());
    let f = folder(&md, ".Entw&APw-rfe");
    write_msg(&f.join("cur"), "1000.M1P1.host:2,S", "one");
    write_msg(&f.join("cur"), "1001.M2P2.host:2,", "two");
    folder(&md, ".Tom&-Jerry");
    std::fs::write(
        md.join("courierimapsubscribed"),
        "INBOX.Entw&APw-rfe\nINBOX.Tom&-Jerry\n",
    )
    .unwrap();
    let out = tern_imapd(
        &md,
        b"a LIST \"\" \"*\"\r\nb LSUB \"\" \"*\"\r\nc SELECT \"INBOX.Entw&APw-rfe\"\r\n\
          d CREATE \"INBOX.Gr&APYA3w-e\"\r\ne SELECT \"INBOX.Tom&-Jerry\"\r\n\
          f UNSUBSCRIBE \"INBOX.Tom&-Jerry\"\r\nz LOGOUT\r\n",
    );
    assert!(out.contains("\"INBOX.Entw&APw-rfe\"\r\n* LIST"), "{out}");
    assert!(
        out.contains("* LIST (\\HasNoChildren) \".\" \"INBOX.Tom&-Jerry\""),
        "{out}"
    );
    assert!(
        out.contains("* LSUB () \".\" \"INBOX.Tom&-Jerry\""),
        "{out}"
    );
    assert!(out.contains("* 2 EXISTS") && out.contains("c OK"), "{out}");
    assert!(
        out.contains("d OK") && out.contains("e OK") && out.contains("f OK"),
        "{out}"
    );
    assert_eq!(
        folder_dirs(&md),
        [".Entw&APw-rfe", ".Gr&APYA3w-e", ".Tom&-Jerry"],
        "a modified UTF-7 Maildir stays one"
    );
    assert_eq!(
        std::fs::read_to_string(md.join("courierimapsubscribed")).unwrap(),
        "INBOX.Entw&APw-rfe\n"
    );
}

#[test]
fn two_spellings_of_one_name_are_reported_and_neither_is_merged() {
    let s = server().log("warn").start();
    let md = s.maildir("alice");
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Sent").ok());
    let utf8 = folder(&md, ".Entwürfe");
    write_msg(&utf8.join("cur"), "1000.M1P1.host:2,S", "one");
    write_msg(&utf8.join("cur"), "1001.M2P2.host:2,S", "two");
    let old = folder(&md, ".Entw&APw-rfe");
    write_msg(&old.join("cur"), "1002.M3P3.host:2,S", "three");
    let r = c.cmd("LIST \"\" \"*\"");
    assert_eq!(
        r.untagged("LIST ")
            .iter()
            .filter(|l| l.contains("Entw&APw-rfe"))
            .count(),
        1,
        "{r:?}"
    );
    let r = c.cmd("SELECT \"INBOX.Entw&APw-rfe\"");
    assert!(
        r.ok() && r.has("* 2 EXISTS"),
        "the Maildir's own spelling is opened: {r:?}"
    );
    drop(c);
    assert!(old.join("cur/1002.M3P3.host:2,S").exists(), "nothing moved");
    assert!(utf8.join("cur/1000.M1P1.host:2,S").exists());
    let log = s.log();
    assert!(
        log.contains("two folder directories spell one name") && log.contains(".Entw&APw-rfe"),
        "{log}"
    );
}

#[test]
fn a_dovecot_style_namespace_shows_the_same_folders_under_dovecot_names() {
    let s = server()
        .imap("namespace_prefix = \"\"\nseparator = \"/\"")
        .start();
    let mut c = s.alice();
    let r = c.cmd("NAMESPACE");
    assert!(r.has("* NAMESPACE ((\"\" \"/\")) NIL NIL"), "{r:?}");
    assert!(c.cmd("CREATE Work/2024").ok());
    assert!(c.cmd("CREATE \"Entw&APw-rfe\"").ok());
    assert!(c.cmd("SUBSCRIBE Work/2024").ok());
    let r = c.cmd("CREATE a.b");
    assert!(r.no() && r.tagged().contains("[CANNOT]"), "{r:?}");
    let r = c.cmd("LIST \"\" \"*\"");
    assert!(r.has("* LIST (\\HasNoChildren) \"/\" \"INBOX\""), "{r:?}");
    assert!(
        r.has("* LIST (\\Noselect \\HasChildren) \"/\" \"Work\""),
        "{r:?}"
    );
    assert!(
        r.has("* LIST (\\HasNoChildren) \"/\" \"Work/2024\""),
        "{r:?}"
    );
    assert!(r.has("\"/\" \"Entw&APw-rfe\""), "{r:?}");
    let r = c.cmd("LIST \"\" \"%\"");
    assert!(!r.has("Work/2024"), "{r:?}");
    let r = c.cmd("LSUB \"\" \"Work/%\"");
    assert!(r.has("* LSUB () \"/\" \"Work/2024\""), "{r:?}");
    assert!(c.cmd("APPEND Work/2024 {5+}\r\nhello").ok());
    let r = c.cmd("STATUS Work/2024 (MESSAGES)");
    assert!(r.has("* STATUS \"Work/2024\" (MESSAGES 1)"), "{r:?}");
    let r = c.cmd("SELECT INBOX.Work");
    assert!(r.no(), "{r:?}");
    let md = s.maildir("alice");
    assert!(md.join(".Work.2024/cur").is_dir());
    assert!(md.join(".Entwürfe/cur").is_dir());
    assert_eq!(
        std::fs::read_to_string(md.join("courierimapsubscribed")).unwrap(),
        "INBOX.Work.2024\n",
        "Courier's file holds Courier's names"
    );
}

#[test]
fn the_configured_spelling_is_used_for_new_folders() {
    for (setting, dir) in [("mutf7", ".Entw&APw-rfe"), ("utf8", ".Entwürfe")] {
        let s = server()
            .mail(&format!("folder_names = \"{setting}\""))
            .start();
        let mut c = s.alice();
        assert!(c.cmd("CREATE \"INBOX.Entw&APw-rfe\"").ok());
        assert_eq!(folder_dirs(&s.maildir("alice")), [dir], "{setting}");
        let r = c.cmd("LIST \"\" \"INBOX.*\"");
        assert!(r.has("\"INBOX.Entw&APw-rfe\""), "{r:?}");
    }
}

/// `uid:sorted flags` of each FETCH line, without `\Recent`.
fn uid_flag_lines(r: &Resp) -> Vec<String> {
    uid_flags(&r.lines.join("\r\n"))
}

fn uidvalidity(r: &Resp) -> u64 {
    r.untagged("OK [UIDVALIDITY")
        .first()
        .and_then(|l| number_after(l, "UIDVALIDITY "))
        .unwrap()
}

/// Every entry below `md` has `md`'s owner and group.
fn assert_owned_like(md: &Path) {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(md).unwrap();
    let mut stack = vec![md.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            assert_eq!(
                (m.uid(), m.gid()),
                (root.uid(), root.gid()),
                "{} has another owner than its Maildir",
                e.path().display()
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[test]
fn a_dovecot_maildir_keeps_keywords_subscriptions_and_uids_both_ways() {
    let dovecot = crate::differential::Dovecot::start_with("default");
    let mut d = Client::plain(dovecot.imap);
    assert!(d.cmd("LOGIN alice secret").ok());
    for cmd in [
        "CREATE Work",
        "CREATE \"Entw&APw-rfe\"",
        "SUBSCRIBE Work",
        "SUBSCRIBE \"Entw&APw-rfe\"",
    ] {
        assert!(d.cmd(cmd).ok(), "{cmd}");
    }
    for (i, flags) in ["$Label1 \\Seen", "$Junk", "NonJunk project-x", ""]
        .iter()
        .enumerate()
    {
        let r = d.append(
            "INBOX",
            &format!("({flags})"),
            &message(&format!("m{i}"), "x"),
        );
        assert!(r.ok(), "{r:?}");
    }
    let r = d.cmd("SELECT INBOX");
    let validity = uidvalidity(&r);
    let before = uid_flag_lines(&d.cmd("UID FETCH 1:* (FLAGS)"));
    assert_eq!(before.len(), 4);
    assert!(before.iter().any(|l| l.contains("$Junk")), "{before:?}");
    d.cmd("LOGOUT");
    let md = dovecot.maildir("alice");
    assert!(
        md.join("dovecot-keywords").exists(),
        "Dovecot keeps keyword letters"
    );

    // tern, with Dovecot's namespace, on the same Maildir.
    let s = server()
        .imap("namespace_prefix = \"\"")
        .users(&format!("dave:{{PLAIN}}pw::::::mail={}", md.display()))
        .start();
    let mut c = s.login("dave", "pw");
    let r = c.cmd("LSUB \"\" \"*\"");
    assert!(r.has("* LSUB () \".\" \"Work\""), "{r:?}");
    assert!(r.has("* LSUB () \".\" \"Entw&APw-rfe\""), "{r:?}");
    let r = c.cmd("SELECT INBOX");
    assert_eq!(uidvalidity(&r), validity);
    for kw in ["$Label1", "$Junk", "NonJunk", "project-x"] {
        assert!(r.has(kw), "{kw} missing from FLAGS: {r:?}");
    }
    assert_eq!(uid_flag_lines(&c.cmd("UID FETCH 1:* (FLAGS)")), before);
    let uids: Vec<u64> = before
        .iter()
        .map(|l| l.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(c
        .cmd(&format!("UID STORE {} -FLAGS ($Label1)", uids[0]))
        .ok());
    assert!(c
        .cmd(&format!(
            "UID STORE {} +FLAGS (fresh-tag \\Flagged)",
            uids[1]
        ))
        .ok());
    assert!(c
        .cmd(&format!("UID STORE {} -FLAGS (project-x)", uids[2]))
        .ok());
    // A message appended and expunged first: the UIDs tern gives are then
    // not the ones Dovecot would give the files it finds.
    assert!(c
        .append("INBOX", "(\\Deleted)", &message("scratch", "s"))
        .ok());
    assert!(c.cmd("EXPUNGE").ok());
    let r = c.append("INBOX", "(project-x)", &message("from tern", "y"));
    assert!(r.ok(), "{r:?}");
    let tern_uid = number_after(r.tagged(), &format!("APPENDUID {validity} ")).unwrap();
    let after = uid_flag_lines(&c.cmd("UID FETCH 1:* (FLAGS)"));
    c.cmd("LOGOUT");
    drop(c);
    // No chown: what tern created belongs to the Maildir's owner already.
    assert_owned_like(&md);

    // Back to Dovecot: every change tern made is there.
    let mut d = Client::plain(dovecot.imap);
    assert!(d.cmd("LOGIN alice secret").ok());
    let r = d.cmd("SELECT INBOX");
    assert_eq!(uidvalidity(&r), validity);
    let back = uid_flag_lines(&d.cmd("UID FETCH 1:* (FLAGS)"));
    assert_eq!(back[..4], after[..4], "Dovecot sees tern's keyword changes");
    assert!(back[0].ends_with(":\\Seen"), "{back:?}");
    assert!(
        back[1].contains("fresh-tag") && back[1].contains("\\Flagged"),
        "{back:?}"
    );
    assert!(
        back[2].contains("NonJunk") && !back[2].contains("project-x"),
        "{back:?}"
    );
    assert_eq!(back.len(), 5);
    assert_eq!(
        back[4],
        format!("{tern_uid}:project-x"),
        "Dovecot keeps the UID tern gave"
    );
    // Dovecot delivers one more; tern, serving the folder again, shows it
    // under Dovecot's UID.
    assert!(d
        .append("INBOX", "(\\Deleted)", &message("scratch", "s"))
        .ok());
    assert!(d.cmd("EXPUNGE").ok());
    let r = d.append("INBOX", "($Junk)", &message("from dovecot", "z"));
    assert!(r.ok(), "{r:?}");
    let dovecot_uid = number_after(r.tagged(), &format!("APPENDUID {validity} ")).unwrap();
    assert!(dovecot_uid > tern_uid);
    let r = d.cmd("LSUB \"\" \"*\"");
    // Dovecot sends these names as atoms.
    assert!(r.has("\".\" Work") && r.has("\".\" Entw&APw-rfe"), "{r:?}");
    d.cmd("LOGOUT");
    let mut c = s.login("dave", "pw");
    assert!(c.cmd("SELECT INBOX").ok());
    let again = uid_flag_lines(&c.cmd("UID FETCH 1:* (FLAGS)"));
    assert_eq!(again.len(), 6, "{again:?}");
    assert_eq!(again[5], format!("{dovecot_uid}:$Junk"));
    let r = c.append("INBOX", "()", &message("tern again", "w"));
    let next = number_after(r.tagged(), &format!("APPENDUID {validity} ")).unwrap();
    assert!(next > dovecot_uid, "no UID given twice: {r:?}");
}

/// Runs Courier's or tern's maildirmake in `dir`; (exit status, stdout
/// lines with the Maildir's name made `MD`, sorted: both list folders in
/// directory order).
fn maildirmake(courier: bool, dir: &Path, args: &[&str], md: &str) -> (i32, Vec<String>) {
    let mut cmd = if courier {
        let mut c = std::process::Command::new("bash");
        c.arg(crate::compat::oracle("courier.sh"))
            .arg("maildirmake");
        c
    } else {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tern"));
        c.arg("maildirmake");
        c
    };
    let out = cmd.args(args).arg(md).current_dir(dir).output().unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace(md, "MD"))
        .collect();
    lines.sort();
    (out.status.code().unwrap(), lines)
}

#[test]
fn checkutf8_and_convutf8_do_what_courier_does() {
    let dir = tempfile::tempdir().unwrap();
    for md in ["C", "T"] {
        let root = maildir_in(&dir.path().join(md));
        for f in [
            ".R&AOk-sum&AOk-",
            ".Work.Tom&-Jerry",
            ".Plain",
            ".&ZeVnLIqe-.Sub",
        ] {
            folder(&root, f);
        }
        write_msg(&root.join(".R&AOk-sum&AOk-/cur"), "1.M1.h:2,S", "kept");
        std::fs::write(
            root.join("courierimapsubscribed"),
            "INBOX.R&AOk-sum&AOk-\nINBOX.Plain\nINBOX.&ZeVnLIqe-.Sub\n",
        )
        .unwrap();
    }
    let both = |args: &[&str]| {
        let c = maildirmake(true, dir.path(), args, "C/Maildir");
        let t = maildirmake(false, dir.path(), args, "T/Maildir");
        assert_eq!(t, c, "tern and Courier differ for {args:?}");
        c
    };
    let (code, out) = both(&["--checkutf8"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&"Rename INBOX.R&AOk-sum&AOk- to INBOX.Résumé".to_owned()),
        "{out:?}"
    );
    // Courier's check leaves its `courierimapsubscribed.new` behind; tern's
    // writes nothing (docs/migration.md).
    let leftover = dir.path().join("C/Maildir/courierimapsubscribed.new");
    assert!(leftover.exists());
    std::fs::remove_file(leftover).unwrap();
    assert_eq!(
        crate::compat::tree(&dir.path().join("T/Maildir")),
        crate::compat::tree(&dir.path().join("C/Maildir"))
    );
    assert!(
        dir.path().join("T/Maildir/.R&AOk-sum&AOk-").is_dir(),
        "a check changes nothing"
    );
    let (code, _) = both(&["--convutf8"]);
    assert_eq!(code, 0);
    let tree = crate::compat::tree(&dir.path().join("T/Maildir"));
    assert_eq!(tree, crate::compat::tree(&dir.path().join("C/Maildir")));
    assert!(
        tree.iter().any(|p| p.contains(".Résumé/cur/1.M1.h:2,S")),
        "{tree:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("T/Maildir/courierimapsubscribed")).unwrap(),
        std::fs::read(dir.path().join("C/Maildir/courierimapsubscribed")).unwrap()
    );
    // The second time the names are UTF-8: both refuse.
    let (code, _) = both(&["--checkutf8"]);
    assert_eq!(code, 1);
    // tern serves the converted Maildir under the same names as before.
    let out = tern_imapd(
        &dir.path().join("T/Maildir"),
        b"a LIST \"\" \"*\"\r\nb SELECT \"INBOX.R&AOk-sum&AOk-\"\r\nz LOGOUT\r\n",
    );
    assert!(
        out.contains("\"INBOX.&ZeVnLIqe-.Sub\"") && out.contains("* 1 EXISTS"),
        "{out}"
    );

    // A name that is not modified UTF-7 stops it before any change, and a
    // Maildir without subscriptions gets an empty file, in both.
    for md in ["C2", "T2"] {
        let root = maildir_in(&dir.path().join(md));
        folder(&root, ".A&B");
        folder(&root, ".R&AOk-");
    }
    let c = maildirmake(true, dir.path(), &["--convutf8"], "C2/Maildir");
    let t = maildirmake(false, dir.path(), &["--convutf8"], "T2/Maildir");
    assert_eq!(t.0, c.0);
    assert_eq!(t.0, 1);
    assert_eq!(
        crate::compat::tree(&dir.path().join("T2/Maildir")),
        crate::compat::tree(&dir.path().join("C2/Maildir"))
    );
}

fn migrate_check(dirs: &[&Path]) -> (i32, serde_json::Value) {
    migrate_check_with(&[], dirs)
}

fn migrate_check_with(flags: &[&str], dirs: &[&Path]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["migrate", "check", "--json"])
        .args(flags)
        .args(dirs)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), json)
}

fn verdict_of<'a>(report: &'a serde_json::Value, item: &str) -> &'a str {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["item"] == item)
        .and_then(|v| v["verdict"].as_str())
        .unwrap_or_else(|| panic!("no verdict for {item}: {report}"))
}

#[test]
fn migrate_check_says_what_a_switch_keeps() {
    let dir = tempfile::tempdir().unwrap();
    // A Courier 5 Maildir, made by Courier: everything kept.
    let courier = maildir_in(&dir.path().join("users/ann"));
    let mut script =
        b"a CREATE \"INBOX.Entw&APw-rfe\"\r\nb SUBSCRIBE \"INBOX.Entw&APw-rfe\"\r\n".to_vec();
    script.extend_from_slice(&append_sync("c", "\\Seen $Label1", &message("m", "x")));
    script.extend_from_slice(b"z LOGOUT\r\n");
    courier_imapd(&courier, &script);
    let (code, json) = migrate_check(&[&courier]);
    let r = &json[0];
    assert_eq!(code, 0, "{json}");
    assert_eq!(r["folder_names"], "utf8");
    assert_eq!(r["subscriptions"], 1);
    let inbox = &r["folders"][0];
    assert_eq!(inbox["uid_list"], "courierimapuiddb");
    assert_eq!(inbox["messages"], 1);
    assert_eq!(inbox["keywords"][0], "$Label1");
    assert_eq!(r["folders"][1]["name"], "INBOX.Entw&APw-rfe");
    assert_eq!(r["folders"][1]["spelling"], "utf8");

    // A Maildir with both spellings of one name and a damaged UID list.
    let odd = maildir_in(&dir.path().join("users/bob"));
    folder(&odd, ".Entwürfe");
    let old = folder(&odd, ".Entw&APw-rfe");
    write_msg(&old.join("cur"), "1.M1.h:2,S", "x");
    std::fs::write(old.join("courierimapuiddb"), "garbage\n").unwrap();
    std::fs::write(odd.join("courierimapuiddb"), "1 5 1\n").unwrap();
    // A Dovecot Maildir that saved no POP3 UIDLs.
    let dove = maildir_in(&dir.path().join("users/cid"));
    write_msg(&dove.join("cur"), "2.M2.h,S=10:2,S", "y");
    std::fs::write(dove.join("dovecot-uidlist"), "3 V9 N2\n1 :2.M2.h,S=10\n").unwrap();
    let before = crate::compat::tree(dir.path());

    // The whole tree at once: three Maildirs, in path order.
    let (code, json) = migrate_check(&[&dir.path().join("users")]);
    assert_eq!(code, 1);
    let reports = json.as_array().unwrap();
    assert_eq!(reports.len(), 3, "{json}");
    let bob = &reports[1];
    assert_eq!(bob["conflicts"][0][0], "Entwürfe", "{bob}");
    assert_eq!(verdict_of(bob, "folder Entwürfe"), "needs attention");
    let cid = &reports[2];
    assert_eq!(verdict_of(cid, "folder names"), "needs a setting");
    assert_eq!(verdict_of(cid, "POP3 UIDLs"), "needs a setting");
    assert_eq!(verdict_of(cid, "UIDs of INBOX"), "kept");
    assert_eq!(cid["folders"][0]["uidvalidity"], 9);
    // Against the configuration the switch will run with: what it sets is
    // kept, what it contradicts is named.
    let cfg = dir.path().join("tern.toml");
    std::fs::write(dir.path().join("passwd"), "").unwrap();
    std::fs::write(
        &cfg,
        "[imap]\nlisten = [\"127.0.0.1:143\"]\nnamespace_prefix = \"\"\n[pop3]\nuidl_format = \"%08Xu%08Xv\"\n[auth]\npasswd_file = \"passwd\"\n",
    )
    .unwrap();
    let flags = ["--config", cfg.to_str().unwrap()];
    let (code, json) = migrate_check_with(&flags, &[&dove]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(verdict_of(&json[0], "folder names"), "kept");
    assert_eq!(verdict_of(&json[0], "POP3 UIDLs"), "kept");
    let (code, json) = migrate_check_with(&flags, &[&courier]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(verdict_of(&json[0], "folder names"), "needs a setting");
    assert!(
        json[0]
            .to_string()
            .contains(r#"imap.namespace_prefix = \"INBOX.\""#),
        "{json}"
    );
    std::fs::write(&cfg, "not toml [").unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["migrate", "check"])
        .args(flags)
        .arg(&dove)
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(3),
        "a configuration that does not load"
    );
    std::fs::remove_file(&cfg).unwrap();
    std::fs::remove_file(dir.path().join("passwd")).unwrap();
    assert_eq!(
        crate::compat::tree(dir.path()),
        before,
        "a check writes nothing"
    );
    // The hidden twin is reported, and its damaged list with it when it
    // is the one served.
    std::fs::remove_dir_all(odd.join(".Entwürfe")).unwrap();
    let (_, json) = migrate_check(&[&odd]);
    assert_eq!(
        verdict_of(&json[0], "UIDs of INBOX.Entw&APw-rfe"),
        "downloaded again"
    );
}
