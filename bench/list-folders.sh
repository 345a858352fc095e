#!/bin/bash
# LIST "" * over a Maildir of many folders, tern and Dovecot side by side.
#
#   bench/list-folders.sh [FOLDERS] [LISTS]      (defaults 2000, 30)
#
# Both servers get the same Maildir++ tree (FOLDERS folders, an empty
# INBOX); one logged-in session on each runs LIST "" * LISTS times,
# alternating servers, and the median time of one LIST is printed for each
# and as a ratio. TERN_BIN picks the tern binary (default target/release),
# TERN_IMAP_ACL=false runs tern with imap.acl off. Dovecot is the oracle of
# ../shared/oracle/dovecot.sh (started here if it is not running).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-2000}
K=${2:-30}
T=$(mktemp -d /tmp/tern-list.XXXXXX)
trap 'kill "${TPID:-}" 2>/dev/null || true; rm -rf "$T"' EXIT
bash "$ROOT/../shared/oracle/dovecot.sh" status >/dev/null 2>&1 ||
    bash "$ROOT/../shared/oracle/dovecot.sh" start plain >/dev/null
make_tree() {
    rm -rf "$1"
    mkdir -p "$1"/{cur,new,tmp}
    for i in $(seq 1 "$N"); do
        mkdir -p "$1/.F$i"/{cur,new,tmp}
        : > "$1/.F$i/maildirfolder"
    done
}
make_tree "$T/mail/alice/Maildir"
make_tree /tmp/clients/mail/listbench/Maildir
chown -R hxmail:hxmail /tmp/clients/mail/listbench
grep -q '^listbench:' /tmp/clients/users 2>/dev/null ||
    echo 'listbench:{PLAIN}secret::::::' >> /tmp/clients/users
printf 'alice:{PLAIN}secret::::::\n' > "$T/users"
cat > "$T/tern.toml" <<CONF
[imap]
listen = ["127.0.0.1:0"]
${TERN_IMAP_ACL:+acl = $TERN_IMAP_ACL}
[auth]
passwd_file = "users"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
[log]
level = "warn"
CONF
BIN=$(realpath "${TERN_BIN:-$ROOT/target/release/tern}")
(cd "$T" && exec "$BIN" serve --config tern.toml > stdout 2> stderr) &
TPID=$!
PORT=
for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^tern: listening imap 127.0.0.1:\([0-9]*\).*/\1/p' "$T/stdout" "$T/stderr" 2>/dev/null | head -1)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "tern did not start: $(cat "$T/stderr")" >&2; exit 1; }
python3 - "$PORT" "$K" "$N" <<'PY'
import imaplib, statistics, sys, time
port, k, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tern = imaplib.IMAP4("127.0.0.1", port); tern.login("alice", "secret")
dove = imaplib.IMAP4("127.0.0.1", 11143); dove.login("listbench", "secret")
times = {"tern": [], "dovecot": []}
for i in range(k):
    for name, c in (("tern", tern), ("dovecot", dove)) if i % 2 == 0 else (("dovecot", dove), ("tern", tern)):
        t = time.perf_counter()
        typ, data = c.list('""', "*")
        times[name].append(time.perf_counter() - t)
        assert typ == "OK" and len(data) >= n, (name, typ, len(data))
med = {s: statistics.median(v) * 1000 for s, v in times.items()}
print(f"LIST of {n} folders, median of {k}: tern {med['tern']:.2f} ms, "
      f"Dovecot {med['dovecot']:.2f} ms, tern/Dovecot {med['tern'] / med['dovecot']:.2f}")
PY
rm -rf /tmp/clients/mail/listbench
