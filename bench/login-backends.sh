#!/bin/bash
# Logins per second through a database or a directory, tern and Dovecot side
# by side on the same backend and data in one run.
#
#   bench/login-backends.sh pgsql|ldap [ACCOUNTS] [SECONDS]
#
# Starts a private PostgreSQL or OpenLDAP (scripts/db.sh) on loopback with
# ACCOUNTS accounts u0..u<N-1> (password pw<i>; PostgreSQL: a table
# users(name, password) holding "{PLAIN}pw<i>"; LDAP: uid=u<i> entries with
# userPassword pw<i>, checked by binding as the entry, an equality index on
# uid), then tern (release build) and a private Dovecot (Debian's packages,
# dovecot-pgsql or dovecot-ldap, on 12143) both asking that backend, and
# runs tern-bench's login mode against both: the first login after a start,
# logins/s and p50/p99 latency with 20 and 100 clients, as a Markdown table.
# Both servers store mail under a scratch directory (each login's Maildir is
# created at its first login, by both; with TERN_BENCH_ONE_MAILDIR=1 every
# account shares one, so that the figure is the directory lookup's alone).
# Figures go to docs/BENCHMARKS.md by hand, with this command.
set -euo pipefail
BACKEND=${1:?pgsql or ldap}
N=${2:-1000}
SECS=${3:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TERN_BENCH_DIR:-/tmp/tern-bench}/login-$BACKEND
DB="$ROOT/scripts/db.sh"
export DEBIAN_FRONTEND=noninteractive
cd "$ROOT"
cargo build --release -q -p tern -p tern-bench
pkg=dovecot-pgsql
[ "$BACKEND" = ldap ] && pkg=dovecot-ldap
for p in dovecot-core dovecot-imapd "$pkg"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || {
        apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "$p" >/dev/null 2>&1 ||
            { apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null &&
              apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "$p" >/dev/null; }
    }
done
bash "$DB" install
id benchmail >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin benchmail

rm -rf "$WORK"; mkdir -p "$WORK"
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
cleanup() {
    [ -n "${TPID:-}" ] && kill "$TPID" 2>/dev/null || true
    [ -s "$WORK/dovecot/run/master.pid" ] && kill "$(cat "$WORK/dovecot/run/master.pid")" 2>/dev/null || true
    [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null || true
    if [ "$BACKEND" = pgsql ]; then bash "$DB" postgres stop "$WORK/db" || true
    else bash "$DB" ldap stop "$WORK/db" || true; fi
    # A run at 1,000,000 accounts leaves a Maildir per account: gigabytes.
    [ -n "${TERN_BENCH_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

case $BACKEND in
pgsql)
    bash "$DB" postgres start "$WORK/db" "$PORT"
    bash "$DB" postgres sql "$WORK/db" "$PORT" <<SQL
CREATE TABLE users (name text PRIMARY KEY, password text NOT NULL);
INSERT INTO users SELECT 'u' || i, '{PLAIN}pw' || i FROM generate_series(0, $N - 1) AS i;
ANALYZE users;
SQL
    TERN_AUTH="[[auth.sql]]
url = \"postgres://tern:ternpw@127.0.0.1:$PORT/mail\"
password_query = \"SELECT name AS user, password FROM users WHERE name = :user\"
pool_size = 8"
    cat > "$WORK/dovecot-sql.conf.ext" <<CONF
driver = pgsql
connect = host=127.0.0.1 port=$PORT dbname=mail user=tern password=ternpw
default_pass_scheme = PLAIN
password_query = SELECT name AS user, password FROM users WHERE name = '%u'
CONF
    DOVECOT_PASSDB="passdb {
  driver = sql
  args = $WORK/dovecot-sql.conf.ext
}"
    ;;
ldap)
    bash "$DB" ldap start "$WORK/db" "$PORT"
    python3 - "$N" > "$WORK/people.ldif" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    out.write(f"dn: uid=u{i},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
              f"uid: u{i}\ncn: u{i}\nsn: u{i}\nuserPassword: pw{i}\n\n")
PY
    bash "$DB" ldap load "$WORK/db" "$PORT" < "$WORK/people.ldif"
    TERN_AUTH="[[auth.ldap]]
uris = [\"ldap://127.0.0.1:$PORT\"]
base = \"ou=people,dc=example,dc=org\"
filter = \"(uid=%u)\"
bind_dn = \"cn=admin,dc=example,dc=org\"
bind_password = \"adminpw\"
max_connections = 8"
    cat > "$WORK/dovecot-ldap.conf.ext" <<CONF
uris = ldap://127.0.0.1:$PORT
dn = cn=admin,dc=example,dc=org
dnpass = adminpw
auth_bind = yes
base = ou=people,dc=example,dc=org
pass_filter = (uid=%u)
CONF
    DOVECOT_PASSDB="passdb {
  driver = ldap
  args = $WORK/dovecot-ldap.conf.ext
}"
    ;;
*) echo "login-backends.sh: pgsql or ldap" >&2; exit 64 ;;
esac

TMAIL='mail/{user}/Maildir'
DMAIL='%u/Maildir'
if [ "${TERN_BENCH_ONE_MAILDIR:-0}" = 1 ]; then
    # {domain} is empty for these names: one Maildir (tern refuses a
    # template that names no per-user part).
    TMAIL='mail/shared{domain}/Maildir'
    DMAIL='shared/Maildir'
fi

# tern.
T="$WORK/tern"
mkdir -p "$T"
cat > "$T/tern.toml" <<CONF
[imap]
listen = ["127.0.0.1:0"]
[auth]
$TERN_AUTH
[mail]
maildir = "$TMAIL"
allow_root = true
[limits]
max_connections = 20000
max_connections_per_ip = 20000
max_connections_per_user_ip = 20000
max_connections_per_user = 20000
[log]
level = "warn"
CONF
"${TERN_BIN:-$ROOT/target/release/tern}" serve --config "$T/tern.toml" > "$T/stdout" 2> "$T/stderr" &
TPID=$!
for _ in $(seq 100); do grep -q 'listening imap' "$T/stdout" && break; sleep 0.1; done
TADDR=$(sed -n 's/^tern: listening imap \(.*\)$/\1/p' "$T/stdout")

# Dovecot, the same backend.
D="$WORK/dovecot"
mkdir -p "$D/run" "$D/state" "$D/mail"
chown benchmail:benchmail "$D/mail"
cat > "$D/dovecot.conf" <<CONF
instance_name = dovecot-login-bench
base_dir = $D/run
state_dir = $D/state
protocols = imap
listen = 127.0.0.1
log_path = $D/log
disable_plaintext_auth = no
auth_mechanisms = plain login
ssl = no
mail_location = maildir:$D/mail/$DMAIL
mail_uid = benchmail
mail_gid = benchmail
first_valid_uid = 1
mail_max_userip_connections = 20000
$DOVECOT_PASSDB
userdb {
  driver = static
  args = uid=benchmail gid=benchmail home=$D/mail/%u
}
service imap-login {
  inet_listener imap {
    port = 12143
  }
}
CONF
/usr/sbin/dovecot -n -c "$D/dovecot.conf" >/dev/null
/usr/sbin/dovecot -F -c "$D/dovecot.conf" >> "$D/log" 2>&1 &
DPID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/12143) 2>/dev/null && break; sleep 0.1; done
echo "bench: $BACKEND, $N accounts; tern $TADDR (pid $TPID), Dovecot 127.0.0.1:12143; $(nproc) cores" >&2
"$ROOT/target/release/tern-bench" --tern "$TADDR" --dovecot 127.0.0.1:12143 --tern-pid "$TPID" \
    --mode login --accounts "$N" --seconds "$SECS"
