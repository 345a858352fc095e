#!/bin/bash
# The IMAP figures of tern-bench through a login proxy, against the same
# tern backend: through a tern proxy, direct, and through Dovecot 2.3 as a
# proxy (`proxy=y` in its passdb), side by side in one run.
#
#   bench/proxy-throughput.sh [N]     N messages in alice's INBOX (default 2000)
#
# One tern backend serves a copy of an N-message Maildir. A tern proxy
# (`mailhost` = the backend) and Dovecot (shared/oracle/dovecot.sh, its
# passwd-file rewritten to `proxy=y host=... port=...`) relay to it; both log
# in with alice's own password. tern-bench's IMAP mode runs twice: tern proxy
# against direct, then tern proxy against Dovecot's proxy (its "Dovecot"
# column is the second server of each run). The CPU time the proxies spent
# in each run (tern: the proxy process; Dovecot: its imap-login processes,
# where it relays) is printed after each. Figures go to docs/BENCHMARKS.md by
# hand, with this command. Then the login latency each adds (500 sessions one
# after another, bench/proxy-relay.py) and the CPU each proxy spends per MB
# it relays (FETCH 1:* (BODY.PEEK[]) RELAY_REPS times, default 100, in one
# session). MIX_ROUNDS=N gives the concurrent mix N rounds per client
# (default 20; more rounds, less noise). PROXY_SEND_ID=true has the tern
# proxy send the client's address in an IMAP ID before the login, as its
# default configuration does. PROXY_BENCH_ONLY=relay runs the
# last part alone, PROXY_BENCH_ONLY=login the login latency alone,
# PROXY_BENCH_ONLY=mix the concurrent mix alone, through the tern proxy and
# direct alternated MIX_PAIRS times (default 6); TERN_BIN=path
# runs another tern binary (an earlier commit, to measure one change).
set -euo pipefail
N=${1:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TERN_SHARED:-$ROOT/../shared}
WORK=${TERN_BENCH_DIR:-/tmp/tern-bench}/proxy-throughput
cd "$ROOT"
cargo build --release -q -p tern -p tern-bench
MASTER="${TERN_BENCH_DIR:-/tmp/tern-bench}/master-$N"
if [ ! -d "$MASTER/cur" ]; then
    python3 "$SHARED/corpus/make_big_maildir.py" "$MASTER" "$N"
fi
rm -rf "$WORK"; mkdir -p "$WORK"

# PROXY_OWN_CPU=1: the proxies (tern's and Dovecot's) on the second core,
# the backend and the bench client on the first, as when the proxy is a
# host of its own; direct and proxied runs then give the backend the same
# CPU. Without it every process shares both cores.
pin() { # core: the command prefix that keeps a process on it
    if [ -n "${PROXY_OWN_CPU:-}" ]; then echo "taskset -c $1"; fi
}
start_tern() { # dir core: writes its tern.toml first; prints the IMAP address
    local d=$1
    # shellcheck disable=SC2046
    $(pin "$2") "${TERN_BIN:-$ROOT/target/release/tern}" serve --config "$d/tern.toml" > "$d/stdout" 2> "$d/stderr" &
    echo $! > "$d/pid"
    for _ in $(seq 100); do grep -q 'listening imap' "$d/stdout" && break; sleep 0.1; done
    sed -n 's/^tern: listening imap \(.*\)$/\1/p' "$d/stdout"
}
limits='[limits]
max_connections = 20000
max_connections_per_ip = 20000
max_connections_per_user_ip = 20000
max_connections_per_user = 20000
[log]
level = "warn"'

B="$WORK/backend"
mkdir -p "$B/mail/alice"
cp -r "$MASTER" "$B/mail/alice/Maildir"
printf 'alice:{PLAIN}secret::::::\n' > "$B/users"
cat > "$B/tern.toml" <<CONF
[imap]
listen = ["127.0.0.1:0"]
[auth]
passwd_file = "users"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
$limits
CONF
BADDR=$(start_tern "$B" 0)

P="$WORK/proxy"
mkdir -p "$P"
printf 'alice:{PLAIN}secret::::::mailhost=%s\n' "$BADDR" > "$P/users"
cat > "$P/tern.toml" <<CONF
[imap]
listen = ["127.0.0.1:0"]
[auth]
passwd_file = "users"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
[proxy]
send_id = ${PROXY_SEND_ID:-false}
check_secs = 0
$limits
CONF
PADDR=$(start_tern "$P" 1)
PPID_=$(cat "$P/pid")

bash "$SHARED/oracle/dovecot.sh" stop >/dev/null 2>&1 || true
bash "$SHARED/oracle/dovecot.sh" start plain >&2
printf 'alice:{PLAIN}secret::::::proxy=y host=%s port=%s\n' "${BADDR%:*}" "${BADDR##*:}" > /tmp/clients/users
chmod 644 /tmp/clients/users
trap 'kill $(cat "$B/pid") $(cat "$P/pid") 2>/dev/null; bash "$SHARED/oracle/dovecot.sh" stop >/dev/null 2>&1; [ -n "${TERN_BENCH_KEEP:-}" ] || rm -rf "$WORK"' EXIT

# CPU seconds (user + system) of a process; with "tree", also of its
# children, reaped (Dovecot's imap-login processes end with their
# connection) or alive.
# CPU_PART=user or sys: only that part.
cpu_of() {
    local tck total=0 f pid=$1 tree=${2:-} part=${CPU_PART:-both}
    tck=$(getconf CLK_TCK)
    # user, system, children's user, children's system of /proc/PID/stat
    pick() {
        case $part in
            user) echo $(($1 + ${3:-0})) ;;
            sys) echo $(($2 + ${4:-0})) ;;
            *) echo $(($1 + $2 + ${3:-0} + ${4:-0})) ;;
        esac
    }
    f=$(cat "/proc/$pid/stat") && f=${f##*) }
    # shellcheck disable=SC2086
    set -- $f
    if [ "$tree" = tree ]; then
        total=$(pick "${12}" "${13}" "${14}" "${15}")
        for c in $(pgrep -P "$pid"); do
            f=$(cat "/proc/$c/stat" 2>/dev/null) || continue
            f=${f##*) }
            # shellcheck disable=SC2086
            set -- $f
            total=$((total + $(pick "${12}" "${13}" "${14}" "${15}")))
        done
    else
        total=$(pick "${12}" "${13}")
    fi
    echo "scale=2; $total / $tck" | bc
}
DMASTER=$(cat /tmp/clients/dovecot-ref.pid)
if [ -n "${PROXY_OWN_CPU:-}" ]; then
    # Its login processes, started later, inherit the master's core.
    for d in $DMASTER $(pgrep -P "$DMASTER"); do taskset -a -p -c 1 "$d" > /dev/null; done
fi

echo "bench: $N messages; backend $BADDR, tern proxy $PADDR (pid $PPID_), Dovecot proxy 127.0.0.1:11143; $(nproc) cores" >&2
RELAY=(python3 "$ROOT/bench/proxy-relay.py")
ONLY=${PROXY_BENCH_ONLY:-}
if [ "$ONLY" = mix ]; then
    echo "## The concurrent mix alone, through the tern proxy (first) and direct (second), ${MIX_PAIRS:-6} pairs alternated"
    t0=$(cpu_of "$PPID_")
    # shellcheck disable=SC2046
    $(pin 0) "$ROOT/target/release/tern-bench" --tern "$PADDR" --dovecot "$BADDR" --tern-pid "$PPID_" --mode mix --reps "${MIX_PAIRS:-6}" --rounds "${MIX_ROUNDS:-20}"
    sessions=$((20 * (${MIX_ROUNDS:-20} * ${MIX_PAIRS:-6} + 2)))
    cpu=$(echo "$(cpu_of "$PPID_") - $t0" | bc)
    echo "tern proxy CPU: $cpu s for $sessions sessions, $(echo "scale=3; $cpu * 1000 / $sessions" | bc) ms a session"
    exit 0
fi
if [ -z "$ONLY" ]; then
echo "## tern proxy (tern column) against direct to the backend (Dovecot column)"
t0=$(cpu_of "$PPID_")
# shellcheck disable=SC2046
$(pin 0) "$ROOT/target/release/tern-bench" --tern "$PADDR" --dovecot "$BADDR" --tern-pid "$PPID_" --mode imap --rounds "${MIX_ROUNDS:-20}"
echo "tern proxy CPU in this run: $(echo "$(cpu_of "$PPID_") - $t0" | bc) s"
echo
echo "## tern proxy (tern column) against Dovecot's proxy (Dovecot column)"
t0=$(cpu_of "$PPID_")
d0=$(cpu_of "$DMASTER" tree)
# shellcheck disable=SC2046
$(pin 0) "$ROOT/target/release/tern-bench" --tern "$PADDR" --dovecot 127.0.0.1:11143 --tern-pid "$PPID_" --mode imap --rounds "${MIX_ROUNDS:-20}"
echo "tern proxy CPU in this run: $(echo "$(cpu_of "$PPID_") - $t0" | bc) s"
echo "Dovecot CPU in this run (master and its children): $(echo "$(cpu_of "$DMASTER" tree) - $d0" | bc) s"
echo
fi
if [ "$ONLY" != relay ]; then
echo "## Login latency: 500 sessions one after another, connect to the LOGIN's OK"
for target in "direct $BADDR" "tern-proxy $PADDR" "Dovecot-proxy 127.0.0.1:11143"; do
    # shellcheck disable=SC2086
    set -- $target
    echo "$1: $("${RELAY[@]}" login "$2" alice secret 500)"
done
echo
fi
if [ "$ONLY" != login ]; then
echo "## CPU per relayed MB: FETCH 1:* (BODY.PEEK[]) ${RELAY_REPS:=100} times in one session"
for target in "tern-proxy $PADDR" "Dovecot-proxy 127.0.0.1:11143"; do
    # shellcheck disable=SC2086
    set -- $target
    if [ "$1" = tern-proxy ]; then who=("$PPID_"); else who=("$DMASTER" tree); fi
    u0=$(CPU_PART=user cpu_of "${who[@]}")
    s0=$(CPU_PART=sys cpu_of "${who[@]}")
    out=$("${RELAY[@]}" fetch "$2" alice secret "$RELAY_REPS")
    # Dovecot's login process ends with the session; its time counts once
    # the master has reaped it.
    sleep 1
    mb=${out#fetched }
    mb=${mb% MB}
    u=$(echo "$(CPU_PART=user cpu_of "${who[@]}") - $u0" | bc)
    s=$(echo "$(CPU_PART=sys cpu_of "${who[@]}") - $s0" | bc)
    cpu=$(echo "$u + $s" | bc)
    echo "$1: $out; proxy CPU $cpu s (user $u, system $s), $(echo "scale=3; $cpu * 1000 / $mb" | bc) ms per MB"
done
fi
