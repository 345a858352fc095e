//! Access control lists (RFC 4314): the five commands, Courier's
//! `courierimapacl` files read and written as Courier does, and account
//! groups (`group=` options) deciding rights.

use crate::harness::*;

fn acl_file(s: &Server, user: &str, folder: &str) -> String {
    let dir = match folder {
        "" => s.maildir(user),
        f => s.maildir(user).join(format!(".{f}")),
    };
    std::fs::read_to_string(dir.join("courierimapacl")).unwrap_or_default()
}

#[test]
fn the_acl_commands_edit_courier_s_file() {
    let s = server().start();
    let mut c = s.alice();
    let caps = c.cmd("CAPABILITY");
    assert!(caps.has(" ACL ") && caps.has(" RIGHTS=texk"), "{caps:?}");
    // Courier's defaults: everything for the owner and administrators.
    let r = c.cmd("MYRIGHTS INBOX");
    assert!(
        r.ok() && r.has("* MYRIGHTS \"INBOX\" \"lrswipkxteacd\""),
        "{r:?}"
    );
    let r = c.cmd("GETACL INBOX");
    assert!(
        r.ok()
            && r.has(
                "* ACL \"INBOX\" \"owner\" \"lrswipkxteacd\" \"administrators\" \"lrswipkxteacd\""
            ),
        "{r:?}"
    );
    assert!(c.cmd("CREATE INBOX.Shared").ok());
    let r = c.cmd("SETACL INBOX.Shared bob lrs");
    assert!(r.ok(), "{r:?}");
    let file = acl_file(&s, "alice", "Shared");
    assert!(
        file.contains("\nuser=bob lrs\n") && file.starts_with("owner "),
        "{file}"
    );
    // Add, remove, a negative entry, a group, an obsolete letter.
    assert!(c.cmd("SETACL INBOX.Shared bob +wc").ok());
    assert!(c.cmd("SETACL INBOX.Shared bob -s").ok());
    assert!(c.cmd("SETACL INBOX.Shared -eve r").ok());
    assert!(c.cmd("SETACL INBOX.Shared $staff lr").ok());
    let r = c.cmd("GETACL INBOX.Shared");
    assert!(
        r.has("\"bob\" \"lrwkxc\"") && r.has("\"-eve\" \"r\"") && r.has("\"$staff\" \"lr\""),
        "{r:?}"
    );
    let file = acl_file(&s, "alice", "Shared");
    assert!(
        file.contains("user=bob clrwx\n")
            && file.contains("-user=eve r\n")
            && file.contains("group=staff lr\n"),
        "{file}"
    );
    assert!(c.cmd("DELETEACL INBOX.Shared bob").ok());
    assert!(!acl_file(&s, "alice", "Shared").contains("user=bob"));
    // Unknown rights are BAD (RFC 4314 §3.1); the owner keeps l and a.
    let r = c.cmd("SETACL INBOX.Shared bob lrq");
    assert!(r.bad() && r.tagged().contains("Invalid ACL right"), "{r:?}");
    let r = c.cmd("SETACL INBOX.Shared owner lr");
    assert!(r.no() && r.tagged().contains("[CANNOT]"), "{r:?}");
    let r = c.cmd("DELETEACL INBOX.Shared owner");
    assert!(r.no() && r.tagged().contains("[CANNOT]"), "{r:?}");
    assert!(acl_file(&s, "alice", "Shared").contains("owner "));
    let r = c.cmd("LISTRIGHTS INBOX.Shared bob");
    assert!(
        r.ok() && r.has("* LISTRIGHTS \"INBOX.Shared\" \"bob\" \"\" l r s w i p k x t e a c d"),
        "{r:?}"
    );
    let r = c.cmd("LISTRIGHTS INBOX.Shared owner");
    assert!(r.has("\"owner\" \"la\" r s w i p k x t e c d"), "{r:?}");
    // A new subfolder has its parent's list until it has its own.
    assert!(c.cmd("CREATE INBOX.Shared.Sub").ok());
    let r = c.cmd("GETACL INBOX.Shared.Sub");
    assert!(r.has("\"$staff\" \"lr\""), "{r:?}");
    // Errors keep the session.
    let r = c.cmd("GETACL INBOX.Nope");
    assert!(r.no() && r.tagged().contains("[NONEXISTENT]"), "{r:?}");
    let r = c.cmd("GETACL");
    assert!(r.bad() && r.tagged().contains("invalid arguments"), "{r:?}");
    let r = c.cmd("SETACL INBOX \"a b\" lr");
    assert!(
        r.bad() && r.tagged().contains("Invalid ACL identifier"),
        "{r:?}"
    );
    assert!(c.cmd("NOOP").ok());
    let r = s.connect().cmd("MYRIGHTS INBOX");
    assert!(r.bad() && r.tagged().contains("before login"), "{r:?}");
}

#[test]
fn courier_reads_the_lists_tern_writes_and_tern_reads_courier_s() {
    let s = server().imap("acl_cache_secs = 0").start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Team").ok());
    assert!(c.cmd("SETACL INBOX.Team bob lrs").ok());
    c.cmd("LOGOUT");
    let md = s.maildir("alice");
    let out = crate::compat::courier_imapd(
        &md,
        b"a1 GETACL INBOX.Team\r\na2 SETACL INBOX.Team carol lrw\r\na3 LOGOUT\r\n",
    );
    assert!(out.contains("\"bob\" \"lrs\""), "{out}");
    assert!(out.contains("a2 OK"), "{out}");
    let mut c = s.alice();
    let r = c.cmd("GETACL INBOX.Team");
    assert!(
        r.has("\"bob\" \"lrs\"") && r.has("\"carol\" \"lrw\""),
        "{r:?}"
    );
}

#[test]
fn account_groups_decide_rights() {
    // Files planted by hand are read at once (no kept reads).
    let s = server()
        .imap("acl_cache_secs = 0")
        .users(
            "sue:{PLAIN}suepw::::::options=group=readers\n\
             tim:{PLAIN}timpw::::::",
        )
        .start();
    for (user, pw) in [("sue", "suepw"), ("tim", "timpw")] {
        let mut c = s.login(user, pw);
        assert!(c.cmd("CREATE INBOX.Archive").ok());
        // The site's administrator restricts the group on the folder.
        std::fs::write(
            s.maildir(user).join(".Archive/courierimapacl"),
            "owner aceilrstwx\n-group=readers iw\n",
        )
        .unwrap();
        let r = c.cmd("MYRIGHTS INBOX.Archive");
        let want = if user == "sue" {
            "\"lrskxteacd\""
        } else {
            "\"lrswikxteacd\""
        };
        assert!(r.ok() && r.has(want), "{user}: {r:?}");
    }
}

/// RFC 4314 §4: each command checks the right it needs. A site's
/// administrator takes rights from the `readers` group on some folders;
/// sue is in it, tim is not.
#[test]
fn each_command_needs_its_right() {
    let s = server()
        .imap("acl_cache_secs = 0")
        .users(
            "sue:{PLAIN}suepw::::::options=group=readers\n\
             tim:{PLAIN}timpw::::::",
        )
        .start();
    let plant = |user: &str, folder: &str, list: &str| {
        std::fs::write(
            s.maildir(user).join(format!(".{folder}/courierimapacl")),
            format!("owner aceilrstwx\n{list}"),
        )
        .unwrap();
    };
    for (user, pw) in [("sue", "suepw"), ("tim", "timpw")] {
        let mut c = s.login(user, pw);
        for f in ["Archive", "Hidden", "Seeonly", "Glance"] {
            assert!(c.cmd(&format!("CREATE INBOX.{f}")).ok());
            assert!(c
                .append(&format!("INBOX.{f}"), "()", &message("x", "y"))
                .ok());
        }
        assert!(c.append("INBOX", "()", &message("in", "box")).ok());
        // Archive: sue may look and read and set \Seen, nothing more.
        plant(user, "Archive", "-group=readers ickwxte\n");
        plant(user, "Hidden", "-group=readers lr\n");
        plant(user, "Seeonly", "-group=readers r\n");
        plant(user, "Glance", "-group=readers swteick\n");
    }
    let mut sue = s.login("sue", "suepw");
    let nope = |r: &Resp| r.no() && r.tagged().contains("[NOPERM]");
    // Refused before the client is asked for the message.
    let r = sue.cmd("APPEND INBOX.Archive {3}");
    assert!(nope(&r) && r.lines.len() == 1, "{r:?}");
    assert!(sue.cmd("SELECT INBOX").ok());
    let r = sue.cmd("COPY 1 INBOX.Archive");
    assert!(nope(&r), "{r:?}");
    assert!(nope(&sue.cmd("CREATE INBOX.Archive.Sub")));
    assert!(nope(&sue.cmd("DELETE INBOX.Archive")));
    assert!(nope(&sue.cmd("RENAME INBOX.Archive INBOX.Old")));
    let r = sue.cmd("SELECT INBOX.Archive");
    assert!(r.ok() && r.tagged().contains("[READ-WRITE]"), "{r:?}");
    // Only \Seen may be changed here (`s`; no `t`, no `w`).
    assert!(r.has("OK [PERMANENTFLAGS (\\Seen)]"), "{r:?}");
    // Flags: what the rights allow is done, the rest left out; nothing
    // allowed is NO.
    assert!(nope(&sue.cmd("STORE 1 +FLAGS (\\Flagged)")));
    assert!(nope(&sue.cmd("STORE 1 FLAGS (\\Seen)")));
    assert!(nope(&sue.cmd("STORE 1 +FLAGS (\\Deleted)")));
    let r = sue.cmd("STORE 1 +FLAGS (\\Seen \\Flagged $Work)");
    assert!(
        r.ok() && r.has("FLAGS (\\Seen") && !r.has("\\Flagged") && !r.has("$Work"),
        "{r:?}"
    );
    assert!(nope(&sue.cmd("EXPUNGE")));
    assert!(nope(&sue.cmd("MOVE 1 INBOX")));
    let r = sue.cmd("SELECT INBOX.Seeonly");
    assert!(nope(&r), "{r:?}");
    assert!(nope(&sue.cmd("STATUS INBOX.Seeonly (MESSAGES)")));
    let r = sue.cmd("SELECT INBOX.Hidden");
    assert!(r.no() && r.tagged().contains("[NONEXISTENT]"), "{r:?}");
    // Without `l` a folder is not listed.
    let r = sue.cmd("LIST \"\" *");
    assert!(r.has("\"INBOX.Archive\"") && !r.has("Hidden"), "{r:?}");
    let r = sue.cmd("SELECT INBOX.Glance");
    assert!(
        r.ok()
            && r.tagged()
                .contains("[READ-ONLY] SELECT completed, read-only"),
        "{r:?}"
    );
    // CLOSE without the expunge right closes and expunges nothing.
    assert!(sue.cmd("SELECT INBOX.Archive").ok());
    assert!(sue.cmd("CLOSE").ok());
    // tim, outside the group, may do all of it.
    let mut tim = s.login("tim", "timpw");
    assert!(tim.append("INBOX.Archive", "()", &message("a", "b")).ok());
    let r = tim.cmd("SELECT INBOX.Archive");
    assert!(r.ok() && r.has("\\Deleted \\Seen \\Draft \\*)]"), "{r:?}");
    let r = tim.cmd("STORE 1 FLAGS (\\Flagged \\Deleted)");
    assert!(r.ok(), "{r:?}");
    assert!(tim.cmd("EXPUNGE").ok());
    assert!(tim.cmd("CREATE INBOX.Archive.Sub").ok());
    assert!(tim.cmd("SELECT INBOX.Hidden").ok());
    assert!(tim.cmd("LIST \"\" *").has("\"INBOX.Hidden\""));
    assert!(tim.cmd("RENAME INBOX.Glance INBOX.Glanced").ok());
    assert!(tim.cmd("DELETE INBOX.Glanced").ok());
}

#[test]
fn a_list_is_bounded() {
    let s = server().start();
    let mut c = s.alice();
    assert!(c.cmd("CREATE INBOX.Big").ok());
    let mut limited_at = None;
    for i in 0..300 {
        let r = c.cmd(&format!("SETACL INBOX.Big u{i} lr"));
        if !r.ok() {
            assert!(r.no() && r.tagged().contains("[LIMIT]"), "{r:?}");
            limited_at = Some(i);
            break;
        }
    }
    // 256 entries: the two defaults and 254 more.
    assert_eq!(limited_at, Some(254));
    // A changed entry still fits; the file holds what was accepted.
    assert!(c.cmd("SETACL INBOX.Big u0 lrs").ok());
    let file = acl_file(&s, "alice", "Big");
    assert_eq!(file.lines().count(), 256, "{file}");
    let long = "x".repeat(300);
    let r = c.cmd(&format!("SETACL INBOX.Big {long} lr"));
    assert!(
        r.bad() && r.tagged().contains("Invalid ACL identifier"),
        "{r:?}"
    );
}

#[test]
fn lists_can_be_switched_off() {
    let s = server().imap("acl = false").start();
    let mut c = s.alice();
    assert!(!c.cmd("CAPABILITY").has(" ACL"));
    assert!(c.cmd("CREATE INBOX.Locked").ok());
    std::fs::write(
        s.maildir("alice").join(".Locked/courierimapacl"),
        "owner al\n",
    )
    .unwrap();
    // The file is not read: everything is allowed, nothing is hidden.
    assert!(c.cmd("SELECT INBOX.Locked").ok());
    assert!(c.cmd("LIST \"\" *").has("INBOX.Locked"));
    let r = c.cmd("MYRIGHTS INBOX");
    assert!(r.bad() && r.tagged().contains("imap.acl"), "{r:?}");
}

#[test]
fn a_change_made_through_tern_applies_at_once_to_every_session() {
    // The default: reads are kept for a while (imap.acl_cache_secs).
    let s = server().start();
    let mut one = s.alice();
    let mut two = s.alice();
    assert!(one.cmd("CREATE INBOX.Kept").ok());
    assert!(one.cmd("MYRIGHTS INBOX.Kept").has("\"lrswipkxteacd\""));
    assert!(two.cmd("SETACL INBOX.Kept owner -i").ok());
    let r = one.cmd("MYRIGHTS INBOX.Kept");
    assert!(r.has("\"lrswpkxteacd\""), "{r:?}");
    let r = one.cmd("APPEND INBOX.Kept {3}");
    assert!(r.no() && r.tagged().contains("[NOPERM]"), "{r:?}");
}
