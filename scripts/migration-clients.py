#!/usr/bin/env python3
"""Real clients across a switch: Dovecot -> tern -> Dovecot, and
Courier-IMAP 5 -> tern -> Courier-IMAP 5, on the same Maildir.

Each client (mbsync, offlineimap, getmail over IMAP and POP3, fetchmail over
POP3) first synchronises against the old server; then tern serves the same
Maildir and every client runs again: it must download nothing. A flag change
and one new message through tern: each client gets exactly that message.
Then the old server again: nothing is downloaded. Between servers the
UIDVALIDITY, UIDs, flags, keywords, folder names, subscriptions and POP3
UIDLs are compared item by item.

Dovecot is the Debian package (shared/oracle/dovecot.sh) on TCP; Courier's
imapd runs on stdio (shared/oracle/courier.sh), so the Courier round uses
the clients that can speak through a command (mbsync's Tunnel, offlineimap's
preauthtunnel), and tern's own `tern imapd MAILDIR` in its place.

    migration-clients.py TERN_BINARY SHARED_DIR

Prints PASS/FAIL per scenario and exits non-zero if any failed.
MIGRATION_ONLY=regex runs the scenarios whose name matches; HX_VERBOSE=1
adds tracebacks.
"""

import imaplib
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

TERN, SHARED = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ORACLE = os.path.join(SHARED, "oracle")
TIMEOUT = 120


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def run(cmd, env=None, ok=(0,)):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, timeout=TIMEOUT)
    if p.returncode not in ok:
        raise Fail("%s exited %d: %s" % (cmd[0], p.returncode, p.stdout.decode("utf-8", "replace")[-2000:]))
    return p.stdout.decode("utf-8", "replace")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Fail("nothing listens on %d" % port)


def message(subject, body="body\n"):
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            "Message-ID: <%s@migration.example>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n%s"
            % (subject, re.sub(r"\W", "", subject), body.replace("\n", "\r\n"))).encode()


def maildir_count(root):
    """Messages in a local Maildir tree (every cur/ and new/ below root)."""
    n = 0
    for d, _, files in os.walk(root):
        if os.path.basename(d) in ("cur", "new"):
            n += len([f for f in files if not f.startswith(".")])
    return n


# --------------------------------------------------------------------------
# What a server shows, item by item


def snapshot_imap(m, folders):
    """UIDVALIDITY, UID:flags per folder, the LSUB names, the LIST names."""
    out = {}
    typ, data = m.list('""', "*")
    out["list"] = sorted(re.sub(rb'^.*\) "." ', b"", l).strip(b'"').decode() for l in data)
    typ, data = m.lsub('""', "*")
    out["lsub"] = sorted(re.sub(rb'^.*\) "." ', b"", l).strip(b'"').decode()
                         for l in data if l and b"\\Noselect" not in l)
    for f in folders:
        typ, _ = m.select('"%s"' % f, readonly=True)
        check(typ == "OK", "SELECT %s failed" % f)
        v = m.response("UIDVALIDITY")[1][0]
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        items = [x for x in (flag_item(d.decode()) for d in data if d) if x]
        out[f] = (v.decode() if isinstance(v, bytes) else v, sorted(items, key=lambda x: int(x.split(":")[0])))
    return out


def snapshot_at(port, folders):
    """snapshot_imap over a session of its own."""
    m = imap_login(port)
    try:
        return snapshot_imap(m, folders)
    finally:
        m.logout()


def imap_login(port):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "secret")
    return m


def pop3_uidls(port):
    p = poplib.POP3("127.0.0.1", port)
    p.user("alice")
    p.pass_("secret")
    _, lines, _ = p.uidl()
    p.quit()
    return sorted(l.decode() for l in lines)


def compare(a, b, what):
    for k in sorted(set(a) | set(b)):
        check(a.get(k) == b.get(k), "%s: %s differs:\n  before %r\n  after  %r" % (what, k, a.get(k), b.get(k)))


# --------------------------------------------------------------------------
# The clients


class Clients:
    """Each client with its own state; `run(server)` syncs once and returns
    how many messages each one has now."""

    def __init__(self, work, imap_port=None, pop3_port=None, tunnel=None, prefix="", pop3=True):
        self.w = work
        self.imap_port, self.pop3_port, self.tunnel, self.prefix = imap_port, pop3_port, tunnel, prefix
        self.pop3 = pop3
        for d in ("mbsync/mail", "mbsync/state", "offlineimap", "fetchmail/out", "getmail-imap/Maildir",
                  "getmail-pop3/Maildir"):
            os.makedirs(os.path.join(work, d), exist_ok=True)
        for g in ("getmail-imap", "getmail-pop3"):
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(work, g, "Maildir", sub), exist_ok=True)
            os.chmod(os.path.join(work, g), 0o755)
            if os.geteuid() == 0:
                subprocess.run(["chown", "-R", "nobody", os.path.join(work, g, "Maildir")], check=True)
        with open(os.path.join(work, "fetchmail/deliver.sh"), "w") as f:
            f.write('#!/bin/sh\nf=$(mktemp "$1/msg.XXXXXXXX") && cat > "$f"\n')
        os.chmod(os.path.join(work, "fetchmail/deliver.sh"), 0o755)

    def mbsync(self, tunnel=None):
        d = os.path.join(self.w, "mbsync")
        if tunnel:
            account = 'Tunnel "%s"' % tunnel
        else:
            account = "Host 127.0.0.1\nPort %d\nUser alice\nPass secret\nSSLType None" % self.imap_port
        path = 'Path "%s"' % self.prefix if self.prefix else ""
        with open(d + "/rc", "w") as f:
            f.write("IMAPAccount a\n%s\nTimeout 30\n\nIMAPStore far\nAccount a\nUseNamespace no\n"
                    "PathDelimiter .\n%s\n\nMaildirStore near\nPath %s/mail/\nInbox %s/mail/INBOX\n"
                    "SubFolders Verbatim\n\nChannel c\nFar :far:\nNear :near:\nPatterns *\n"
                    "Create Near\nRemove None\nExpunge None\nSync Pull\nSyncState %s/state/\n"
                    % (account, path, d, d, d))
        out = run(["mbsync", "-c", d + "/rc", "-a"])
        check("UIDVALIDITY changed" not in out and "Error" not in out, "mbsync: " + out[-1500:])
        return maildir_count(d + "/mail")

    def offlineimap(self, tunnel=None):
        d = os.path.join(self.w, "offlineimap")
        if tunnel:
            remote = "preauthtunnel = %s" % tunnel
        else:
            remote = ("remotehost = 127.0.0.1\nremoteport = %d\nremoteuser = alice\nremotepass = secret\n"
                      "ssl = no\nstarttls = no" % self.imap_port)
        with open(d + "/rc", "w") as f:
            f.write("[general]\naccounts = a\nmetadata = %s/meta\n\n[Account a]\nlocalrepository = L\n"
                    "remoterepository = R\n\n[Repository L]\ntype = Maildir\nlocalfolders = %s/mail\n\n"
                    "[Repository R]\ntype = IMAP\nreadonly = True\n%s\n" % (d, d, remote))
        os.makedirs(d + "/mail", exist_ok=True)
        out = run(["offlineimap", "-c", d + "/rc", "-o", "-u", "basic"])
        check("ERROR" not in out and "UID validity" not in out, "offlineimap: " + out[-1500:])
        return maildir_count(d + "/mail")

    def getmail(self, proto):
        d = os.path.join(self.w, "getmail-" + proto.lower())
        if proto == "IMAP":
            r = "type = SimpleIMAPRetriever\nport = %d\nmailboxes = ('INBOX',)" % self.imap_port
        else:
            r = "type = SimplePOP3Retriever\nport = %d" % self.pop3_port
        duser = "user = nobody" if os.geteuid() == 0 else ""
        with open(d + "/rc", "w") as f:
            f.write("[retriever]\n%s\nserver = 127.0.0.1\nusername = alice\npassword = secret\n\n"
                    "[destination]\ntype = Maildir\npath = %s/Maildir/\n%s\n\n[options]\ndelete = false\n"
                    "read_all = false\ndelivered_to = false\nreceived = false\nverbose = 1\n" % (r, d, duser))
        out = run(["getmail", "--rcfile=" + d + "/rc", "--getmaildir=" + d])
        check("error" not in out.lower(), "getmail %s: %s" % (proto, out[-1500:]))
        return maildir_count(d + "/Maildir")

    def fetchmail(self):
        d = os.path.join(self.w, "fetchmail")
        with open(d + "/rc", "w") as f:
            f.write("set no bouncemail\nset no syslog\npoll 127.0.0.1 with proto POP3 port %d uidl and options no dns\n"
                    "   user 'alice' there with password 'secret' is 'root' here\n"
                    "   options keep norewrite sslproto '' mda \"%s/deliver.sh %s/out\"\n" % (self.pop3_port, d, d))
        os.chmod(d + "/rc", 0o600)
        run(["fetchmail", "-f", d + "/rc", "-i", d + "/ids", "--nosyslog"], env={"FETCHMAILHOME": d}, ok=(0, 1))
        return len(os.listdir(d + "/out"))

    def run(self, tunnel=None):
        counts = {"mbsync": self.mbsync(tunnel), "offlineimap": self.offlineimap(tunnel)}
        if not tunnel:
            counts["getmail-imap"] = self.getmail("IMAP")
            if self.pop3:
                counts["getmail-pop3"] = self.getmail("POP3")
                counts["fetchmail-pop3"] = self.fetchmail()
        return counts


def same_counts(a, b, what):
    for k in a:
        check(a[k] == b[k], "%s: %s has %d messages, had %d: it downloaded %d again"
              % (what, k, b[k], a[k], b[k] - a[k]))


def one_more(a, b, what):
    for k in a:
        check(b[k] == a[k] + 1, "%s: %s went from %d to %d messages (expected exactly one new)"
              % (what, k, a[k], b[k]))


# --------------------------------------------------------------------------
# Dovecot -> tern -> Dovecot


def dovecot(work, action, imap_port, pop3_port):
    env = {"HX_DIR": work + "/dovecot", "HX_NAMESPACE": "default",
           "HX_IMAP_PORT": str(imap_port), "HX_POP3_PORT": str(pop3_port)}
    run(["bash", os.path.join(ORACLE, "dovecot.sh")] + action, env=env)
    if action[0] == "start":
        wait_port(imap_port)


class Tern:
    def __init__(self, work, imap_port, pop3_port, maildir, extra_imap="", extra_pop3=""):
        self.dir = os.path.join(work, "tern")
        os.makedirs(self.dir, exist_ok=True)
        with open(self.dir + "/users", "w") as f:
            f.write("alice:{PLAIN}secret::::::mail=%s\n" % maildir)
        with open(self.dir + "/tern.toml", "w") as f:
            f.write('hostname = "localhost"\n[imap]\nlisten = ["127.0.0.1:%d"]\n%s\n'
                    '[pop3]\nlisten = ["127.0.0.1:%d"]\n%s\n[auth]\npasswd_file = "users"\n'
                    'failure_delay_ms = 1\n[mail]\nmaildir = "mail/{user}/Maildir"\nallow_root = true\n[log]\nlevel = "warn"\n'
                    % (imap_port, extra_imap, pop3_port, extra_pop3))
        self.log = open(self.dir + "/log", "ab")
        self.p = subprocess.Popen([TERN, "serve", "--config", self.dir + "/tern.toml"],
                                  stdout=self.log, stderr=self.log)
        wait_port(imap_port)

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)
        self.log.close()
        with open(self.dir + "/log", "rb") as f:
            check(b"panicked" not in f.read(), "tern panicked")


def dovecot_scenario(work):
    imap_port, pop3_port = free_port(), free_port()
    folders = ["INBOX", "Work", "Entw&APw-rfe"]
    dovecot(work, ["start", "plain"], imap_port, pop3_port)
    try:
        m = imap_login(imap_port)
        for f in folders[1:]:
            m.create('"%s"' % f)
            m.subscribe('"%s"' % f)
        for i, fl in enumerate(["(\\Seen $Label1)", "($Junk)", "(NonJunk project-x)", "()", "(\\Flagged)"]):
            m.append("INBOX", fl, None, message("inbox %d" % i))
        for i in range(3):
            m.append('"Entw&APw-rfe"', "(\\Seen)", None, message("draft %d" % i))
        m.append("Work", "($Label2)", None, message("work"))
        m.logout()
        clients = Clients(work + "/clients", imap_port, pop3_port)
        first = clients.run()
        check(first["mbsync"] == 9 and first["offlineimap"] == 9, "first sync: %r" % first)
        # The clients set \Seen on what they fetched: compare from here on.
        before = snapshot_at(imap_port, folders)
        uidls = pop3_uidls(pop3_port)
    finally:
        dovecot(work, ["stop"], imap_port, pop3_port)
    maildir = work + "/dovecot/mail/alice/Maildir"

    t = Tern(work, imap_port, pop3_port, maildir, 'namespace_prefix = ""', 'uidl_format = "%08Xu%08Xv"')
    try:
        compare(before, snapshot_at(imap_port, folders), "Dovecot -> tern")
        check(pop3_uidls(pop3_port) == uidls, "POP3 UIDLs differ under tern")
        second = clients.run()
        same_counts(first, second, "after the switch to tern")
        m = imap_login(imap_port)
        m.select("INBOX")
        m.uid("STORE", before["INBOX"][1][3].split(":")[0], "+FLAGS", "(\\Answered $Label3)")
        m.append("INBOX", "(project-x)", None, message("through tern"))
        m.logout()
        third = clients.run()
        one_more(second, third, "one new message through tern")
        changed = snapshot_at(imap_port, folders)
        uidls2 = pop3_uidls(pop3_port)
    finally:
        t.stop()

    # No chown: tern, running as root here, gave what it created to the
    # Maildir's owner (hxmail), as it must for Dovecot to take it back.
    dovecot(work, ["start", "plain"], imap_port, pop3_port)
    try:
        compare(changed, snapshot_at(imap_port, folders), "tern -> Dovecot")
        check(pop3_uidls(pop3_port) == uidls2, "POP3 UIDLs differ back under Dovecot")
        fourth = clients.run()
        same_counts(third, fourth, "after the switch back to Dovecot")
    finally:
        dovecot(work, ["stop"], imap_port, pop3_port)


# --------------------------------------------------------------------------
# Courier-IMAP 5 -> tern -> Courier-IMAP 5 (stdio servers)


def stdio_imapd(cmd, script):
    p = subprocess.run(cmd, input=script, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
    return p.stdout.decode("utf-8", "replace")


def flag_item(line):
    """`uid:sorted flags` of a FETCH line (either order of UID and FLAGS)."""
    uid = re.search(r"UID (\d+)", line)
    fl = re.search(r"FLAGS \(([^)]*)\)", line)
    if not uid or not fl:
        return None
    return "%s:%s" % (uid.group(1), " ".join(sorted(x for x in fl.group(1).split() if x != "\\Recent")))


def stdio_snapshot(cmd, folders):
    """snapshot_imap's answer, from a stdio imapd."""
    script = b'a LSUB "" "*"\r\nb LIST "" "*"\r\n'
    for i, f in enumerate(folders):
        script += b'c%d SELECT "%s"\r\nd%d UID FETCH 1:* (FLAGS)\r\n' % (i, f.encode(), i)
    out = stdio_imapd(cmd, script + b"z LOGOUT\r\n")
    name = lambda l: re.sub(r'^.*\) "\." ', "", l).strip('"')
    snap = {"lsub": [], "list": []}
    pending = []
    validity = None
    for line in out.split("\r\n"):
        if line.startswith("* LSUB "):
            # Courier also lists an unsubscribed parent, \Noselect, for "*".
            if "\\Noselect" not in line:
                snap["lsub"].append(name(line))
        elif line.startswith("* LIST "):
            snap["list"].append(name(line))
        elif line.startswith("* "):
            pending.append(line)
            continue
        tag = line.split(" ", 1)[0]
        if re.fullmatch(r"c\d+", tag):
            v = [re.search(r"UIDVALIDITY (\d+)", l) for l in pending]
            validity = next((x.group(1) for x in v if x), None)
        elif re.fullmatch(r"d\d+", tag):
            items = [x for x in (flag_item(l) for l in pending) if x]
            snap[folders[int(tag[1:])]] = (validity, sorted(items, key=lambda x: int(x.split(":")[0])))
        if not line.startswith("* "):
            pending = []
    snap["lsub"].sort()
    snap["list"].sort()
    return snap


def courier_scenario(work):
    md = work + "/courier/Maildir"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
    courier = ["bash", os.path.join(ORACLE, "courier.sh"), "imapd", md]
    tern = [TERN, "imapd", md]
    folders = ["INBOX", "INBOX.Entw&APw-rfe", "INBOX.Work"]
    script = b""
    for f in folders[1:]:
        script += b'a CREATE "%s"\r\nb SUBSCRIBE "%s"\r\n' % (f.encode(), f.encode())
    for i, (f, fl) in enumerate([("INBOX", "\\Seen $Label1"), ("INBOX", "$Junk"), ("INBOX", ""),
                                 ("INBOX.Entw&APw-rfe", "\\Seen"), ("INBOX.Entw&APw-rfe", "project-x"),
                                 ("INBOX.Work", "\\Flagged")]):
        msg = message("courier %d" % i)
        script += b'p%d APPEND "%s" (%s) {%d}\r\n%s\r\n' % (i, f.encode(), fl.encode(), len(msg), msg)
    out = stdio_imapd(courier, script + b"z LOGOUT\r\n")
    check(out.count("APPEND") >= 6 and "p5 OK" in out, "Courier did not take the messages: " + out[-800:])
    check(os.path.isdir(md + "/.Entwürfe"), "Courier 5 should have made .Entwürfe")
    tun_courier = "bash %s imapd %s" % (os.path.join(ORACLE, "courier.sh"), md)
    tun_tern = "%s imapd %s" % (TERN, md)
    clients = Clients(work + "/clients", prefix="INBOX.", pop3=False)
    first = clients.run(tun_courier)
    check(first["mbsync"] == 6 and first["offlineimap"] == 6, "first sync: %r" % first)
    before = stdio_snapshot(courier, folders)
    check(before["INBOX.Entw&APw-rfe"][1], "Courier shows no messages in its UTF-8 folder: %r" % before)

    compare(before, stdio_snapshot(tern, folders), "Courier -> tern")
    second = clients.run(tun_tern)
    same_counts(first, second, "after the switch to tern")
    msg = message("through tern")
    stdio_imapd(tern, b'a SELECT "INBOX.Entw&APw-rfe"\r\nb STORE 1 +FLAGS (\\Answered $Label3)\r\n'
                b'c APPEND "INBOX.Entw&APw-rfe" (\\Seen) {%d}\r\n%s\r\nz LOGOUT\r\n' % (len(msg), msg))
    changed = stdio_snapshot(tern, folders)
    third = clients.run(tun_tern)
    one_more(second, third, "one new message through tern")
    compare(changed, stdio_snapshot(courier, folders), "tern -> Courier")
    fourth = clients.run(tun_courier)
    same_counts(third, fourth, "after the switch back to Courier")


# --------------------------------------------------------------------------
# A Courier-IMAP 4 Maildir (modified UTF-7 on disk) -> tern -> converted
# with `tern maildirmake --convutf8` -> Courier-IMAP 5 -> tern


def courier4_scenario(work):
    md = work + "/courier4/Maildir"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub))
    courier = ["bash", os.path.join(ORACLE, "courier.sh"), "imapd", md]
    tern = [TERN, "imapd", md]
    # Courier 4 kept names as clients sent them: made here by Courier 5 under
    # ASCII names, then given the directory names Courier 4 would have.
    script = b'a CREATE "INBOX.E"\r\nb SUBSCRIBE "INBOX.Entw&APw-rfe"\r\nc CREATE "INBOX.Tom"\r\n'
    for i, (f, fl) in enumerate([("INBOX", "\\Seen"), ("INBOX.E", "$Label1"), ("INBOX.E", ""),
                                 ("INBOX.Tom", "\\Flagged")]):
        msg = message("courier4 %d" % i)
        script += b'p%d APPEND "%s" (%s) {%d}\r\n%s\r\n' % (i, f.encode(), fl.encode(), len(msg), msg)
    out = stdio_imapd(courier, script + b"z LOGOUT\r\n")
    check("p3 OK" in out, "Courier did not take the messages: " + out[-800:])
    os.rename(md + "/.E", md + "/.Entw&APw-rfe")
    os.rename(md + "/.Tom", md + "/.Tom&-Jerry")
    with open(md + "/courierimapsubscribed", "w") as f:
        f.write("INBOX.Entw&APw-rfe\nINBOX.Tom&-Jerry\n")
    folders = ["INBOX", "INBOX.Entw&APw-rfe", "INBOX.Tom&-Jerry"]
    tun_courier = "bash %s imapd %s" % (os.path.join(ORACLE, "courier.sh"), md)
    tun_tern = "%s imapd %s" % (TERN, md)
    clients = Clients(work + "/clients", prefix="INBOX.", pop3=False)
    first = clients.run(tun_tern)
    check(first["mbsync"] == 4 and first["offlineimap"] == 4, "first sync through tern: %r" % first)
    # A folder made through tern keeps the Maildir's spelling.
    msg = message("new folder")
    stdio_imapd(tern, b'a CREATE "INBOX.Gr&APYA3w-e"\r\nb SUBSCRIBE "INBOX.Gr&APYA3w-e"\r\n'
                b'c APPEND "INBOX.Gr&APYA3w-e" () {%d}\r\n%s\r\nz LOGOUT\r\n' % (len(msg), msg))
    check(os.path.isdir(md + "/.Gr&APYA3w-e"), "tern should spell the new folder in modified UTF-7 here")
    folders.append("INBOX.Gr&APYA3w-e")
    second = clients.run(tun_tern)
    one_more(first, second, "one new folder and message through tern")
    before = stdio_snapshot(tern, folders)
    out = run([TERN, "maildirmake", "--convutf8", md])
    check("Rename INBOX.Entw&APw-rfe to INBOX.Entwürfe" in out, "convutf8: " + out)
    check(os.path.isdir(md + "/.Entwürfe") and os.path.isdir(md + "/.Größe"), "not converted: " + out)
    compare(before, stdio_snapshot(courier, folders), "tern on Courier 4's Maildir -> Courier 5 after --convutf8")
    third = clients.run(tun_courier)
    same_counts(second, third, "Courier 5 after the conversion")
    compare(before, stdio_snapshot(tern, folders), "and tern again on the converted Maildir")
    fourth = clients.run(tun_tern)
    same_counts(third, fourth, "tern again on the converted Maildir")


def main():
    base = tempfile.mkdtemp(prefix="tern-migration-", dir="/tmp")
    os.chmod(base, 0o755)
    failed = 0
    scenarios = [("dovecot-tern-dovecot", dovecot_scenario), ("courier-tern-courier", courier_scenario),
                 ("courier4-tern-courier5", courier4_scenario)]
    only = os.environ.get("MIGRATION_ONLY")
    scenarios = [x for x in scenarios if not only or re.search(only, x[0])]
    for name, fn in scenarios:
        work = os.path.join(base, name)
        os.makedirs(work)
        os.chmod(work, 0o755)
        try:
            fn(work)
            print("PASS %s" % name)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print("FAIL %s: %s" % (name, e))
            if os.environ.get("HX_VERBOSE"):
                traceback.print_exc()
    if not failed:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print("(work left in %s)" % base)
    print("%d passed, %d failed" % (len(scenarios) - failed, failed))
    sys.exit(1 if failed else 0)


main()
