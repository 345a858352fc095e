#!/bin/bash
# Side-by-side benchmark of tern and Dovecot on copies of one Maildir.
#
#   bench/run.sh [N]                 N messages in INBOX (default 100000): SELECT,
#                                    FETCH, the concurrent mix, idle memory
#   bench/run.sh N --mode push       POP3 start, IDLE delivery latency, and
#                                    10,000 sessions idling on 1,000 folders
#   bench/run.sh 10 --mode login     logins/s and latency with 20 and 100 clients;
#                                    TERN_ACCOUNTS accounts (default 1000) in both
#                                    servers' passwd-files, TERN_LOGIN_SCHEME their
#                                    hashes (PLAIN, SSHA512, MD5-CRYPT,
#                                    SHA512-CRYPT, ARGON2ID)
#   bench/run.sh N --mode stress [--mailboxes M] [--per-box S] [--seconds T]
#                                    M accounts s0.. (default 5), each an INBOX of
#                                    N messages, S persistent sessions on each
#                                    (default 10) in a loop of STATUS, LIST,
#                                    SELECT, FETCH, STORE, APPEND, EXPUNGE for
#                                    T seconds per server: operations/s
#
# Builds tern and tern-bench (release), writes N messages with
# shared/corpus/make_big_maildir.py, starts Dovecot from Debian's packages
# (shared/oracle/dovecot.sh, plain, IMAP 11143, POP3 11110) and tern (ephemeral port) on
# fresh copies, runs tern-bench against both in one run, prints a Markdown
# table with the ratios, and stops both servers. Figures go to docs/BENCHMARKS.md
# by hand, with this command. TERN_BIN=path runs another tern binary (an
# earlier commit, to measure one change). TERN_BENCH_ACCOUNT_UID=N: see
# below (the cost of per-account credentials).
set -euo pipefail
N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TERN_SHARED:-$ROOT/../shared}
WORK=${TERN_BENCH_DIR:-/tmp/tern-bench}
cd "$ROOT"
cargo build --release -q -p tern -p tern-bench
mkdir -p "$WORK"
MASTER="$WORK/master-$N"
if [ ! -d "$MASTER/cur" ]; then
    echo "bench: writing $N messages to $MASTER" >&2
    python3 "$SHARED/corpus/make_big_maildir.py" "$MASTER" "$N"
fi

# Dovecot on its own copy.
bash "$SHARED/oracle/dovecot.sh" stop >/dev/null 2>&1 || true
HX_NAMESPACE=courier bash "$SHARED/oracle/dovecot.sh" start plain >&2
DMD=/tmp/clients/mail/alice/Maildir
rm -rf "$DMD"; mkdir -p "$(dirname "$DMD")"
cp -r "$MASTER" "$DMD"
chown -R hxmail:hxmail /tmp/clients/mail

# tern on its own copy.
T="$WORK/tern"
rm -rf "$T"; mkdir -p "$T/mail/alice"
cp -r "$MASTER" "$T/mail/alice/Maildir"
# TERN_BENCH_ACCOUNT_UID=N: alice's entry gives uid and gid N, her Maildir
# is N's, and tern (as root) does her storage work with her credentials
# (mail.account_uids = "all"), to measure what switching them costs.
ACCOUNT_UIDS=""
if [ -n "${TERN_BENCH_ACCOUNT_UID:-}" ]; then
    printf 'alice:{PLAIN}secret:%s:%s::::\n' "$TERN_BENCH_ACCOUNT_UID" "$TERN_BENCH_ACCOUNT_UID" > "$T/users"
    chown -R "$TERN_BENCH_ACCOUNT_UID:$TERN_BENCH_ACCOUNT_UID" "$T/mail/alice"
    ACCOUNT_UIDS='account_uids = "all"'
else
    printf 'alice:{PLAIN}secret::::::\n' > "$T/users"
fi
cat > "$T/tern.toml" <<CONF
[imap]
listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
[auth]
passwd_file = "users"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
$ACCOUNT_UIDS
[limits]
max_connections = 20000
max_connections_per_ip = 20000
max_connections_per_user_ip = 20000
max_connections_per_user = 20000
[log]
level = "warn"
CONF
EXTRA=()
if [[ " ${*:2} " == *" --mode login "* ]]; then
    ACCOUNTS=${TERN_ACCOUNTS:-1000}
    echo "bench: $ACCOUNTS accounts in both passwd-files" >&2
    # TERN_LOGIN_SCHEME=ARGON2ID or SHA512-CRYPT: each account's password
    # hashed so (by `tern pw`, which both servers read), to measure what a
    # hash costs; {PLAIN} otherwise, to measure the servers.
    python3 - "$ACCOUNTS" "$T/users" "${TERN_LOGIN_SCHEME:-PLAIN}" "${TERN_BIN:-$ROOT/target/release/tern}" <<'PY'
import subprocess, sys
n, path, scheme, tern = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def hashed(pw):
    if scheme == "PLAIN":
        return "{PLAIN}" + pw
    if scheme == "MD5-CRYPT":
        # tern pw does not write this old scheme; glibc's crypt does.
        import crypt
        return "{MD5-CRYPT}" + crypt.crypt(pw, crypt.mksalt(crypt.METHOD_MD5))
    return subprocess.run([tern, "pw", "--scheme", scheme], input=pw.encode(),
                          capture_output=True, check=True).stdout.decode().strip()
with open(path, "w") as f:
    f.write("alice:{PLAIN}secret::::::\n")
    for i in range(n):
        f.write("u%d:%s::::::\n" % (i, hashed("pw%d" % i)))
PY
    cp "$T/users" /tmp/clients/users
    chmod 644 /tmp/clients/users
    EXTRA=(--accounts "$ACCOUNTS")
fi
if [[ " ${*:2} " == *" --mode stress "* ]]; then
    BOXES=5
    ARGS=("${@:2}")
    for i in "${!ARGS[@]}"; do
        [ "${ARGS[$i]}" = --mailboxes ] && BOXES=${ARGS[$((i+1))]}
    done
    echo "bench: $BOXES accounts s0.. of $N messages each on both servers" >&2
    printf 'alice:{PLAIN}secret::::::\n' > "$T/users"
    for i in $(seq 0 $((BOXES-1))); do
        printf 's%d:{PLAIN}pw::::::\n' "$i" >> "$T/users"
        mkdir -p "$T/mail/s$i"; cp -r "$MASTER" "$T/mail/s$i/Maildir"
        rm -rf "/tmp/clients/mail/s$i"; mkdir -p "/tmp/clients/mail/s$i"
        cp -r "$MASTER" "/tmp/clients/mail/s$i/Maildir"
    done
    chown -R hxmail:hxmail /tmp/clients/mail
    cp "$T/users" /tmp/clients/users
    chmod 644 /tmp/clients/users
    STRESS_CLEAN="/tmp/clients/mail/s*"
    # tern prints its folder locks' figures when it stops.
    export TERN_LOCK_STATS=1
fi
"${TERN_BIN:-$ROOT/target/release/tern}" serve --config "$T/tern.toml" > "$T/stdout" 2> "$T/stderr" &
TPID=$!
# The servers' copies go at the end (the generated master stays, to be
# copied again by the next run); TERN_BENCH_KEEP=1 keeps them.
trap 'kill $TPID 2>/dev/null; bash "$SHARED/oracle/dovecot.sh" stop >/dev/null 2>&1; [ -n "${TERN_BENCH_KEEP:-}" ] || rm -rf "$T" "$DMD" ${STRESS_CLEAN:-}' EXIT
for _ in $(seq 100); do grep -q 'listening pop3' "$T/stdout" && break; sleep 0.1; done
TADDR=$(sed -n 's/^tern: listening imap \(.*\)$/\1/p' "$T/stdout")
TPOP3=$(sed -n 's/^tern: listening pop3 \(.*\)$/\1/p' "$T/stdout")
sync
echo "bench: $N messages; tern $TADDR (pid $TPID), Dovecot 127.0.0.1:11143; $(nproc) cores" >&2
"$ROOT/target/release/tern-bench" --tern "$TADDR" --dovecot 127.0.0.1:11143 --tern-pid "$TPID" \
    --tern-pop3 "$TPOP3" --dovecot-pop3 127.0.0.1:11110 \
    --tern-maildir "$T/mail/alice/Maildir" --dovecot-maildir "$DMD" "${EXTRA[@]}" "${@:2}"
if [ -n "${TERN_LOCK_STATS:-}" ]; then
    kill $TPID; wait $TPID 2>/dev/null || true
    echo; echo "tern's folder locks over the run (all folders; ms):"
    sed -n '/^tern: folder locks$/,$p' "$T/stdout" | tail -n +2
fi
