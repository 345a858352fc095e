#!/bin/bash
# Runs the real-client harness (shared/clients/run_clients.sh) against a fresh
# tern: every IMAP and POP3 scenario, in the clear, with STARTTLS/STLS and over
# implicit TLS.
#
#   run-clients.sh            the clients talk to tern
#   run-clients.sh --proxy    the clients talk to a tern proxy, whose account
#                             lives on a second tern (mailhost), relayed there
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TERN_SHARED:-$ROOT/../shared}
BIN=${TERN_BIN:-$ROOT/target/debug/tern}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build -q -p tern)
mode=${1:-direct}

work=$(mktemp -d /tmp/tern-clients.XXXXXX)
# getmail refuses to run as root and delivers as nobody: the tree must be readable.
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# start DIR: runs tern on DIR/tern.toml, waits for LISTENERS (a pattern of
# its last listening line) and prints nothing; the ports are in DIR/stdout.
start() {
    local dir=$1 last=$2
    "$BIN" serve --config "$dir/tern.toml" > "$dir/stdout" 2> "$dir/stderr" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "listening $last" "$dir/stdout" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "tern did not start:"; cat "$dir/stderr"; exit 1
}
port() { sed -n "s/^tern: listening $2 127.0.0.1:\([0-9]*\)\$/\1/p" "$1/stdout"; }

common() {
    cat <<CONF
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
[log]
level = "warn"
CONF
}

"$BIN" cert --out "$work" --name localhost >/dev/null
mkdir -p "$work/front"
extra=""
if [ "$mode" = --proxy ]; then
    # The backend: the account's Maildir, PROXY listeners for the proxy,
    # and a master user for it.
    mkdir -p "$work/back"
    printf 'alice:{PLAIN}secret::::::\n' > "$work/back/users"
    printf 'proxy:{PLAIN}proxypw::::::\n' > "$work/back/masters"
    cat > "$work/back/tern.toml" <<CONF
hostname = "backend"
[imap]
listen = ["127.0.0.1:0"]
haproxy_listen = ["127.0.0.1:0"]
[pop3]
haproxy_listen = ["127.0.0.1:0"]
[haproxy]
trusted_networks = ["127.0.0.1"]
[auth]
passwd_file = "users"
master_passwd_file = "masters"
$(common)
CONF
    start "$work/back" 'pop3+haproxy'
    bimap=$(port "$work/back" 'imap+haproxy')
    bpop3=$(port "$work/back" 'pop3+haproxy')
    printf 'alice:{PLAIN}secret::::::mailhost=127.0.0.1:%s\n' "$bimap" > "$work/front/users"
    extra="[proxy]
send_proxy_header = true
pop3_port = $bpop3
master_user = \"proxy\"
master_password = \"proxypw\""
    echo "clients: through a tern proxy to a tern backend (imap $bimap, pop3 $bpop3)"
else
    printf 'alice:{PLAIN}secret::::::\n' > "$work/front/users"
fi
cat > "$work/front/tern.toml" <<CONF
hostname = "localhost"
[imap]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[auth]
passwd_file = "users"
$(common)
$extra
CONF
start "$work/front" 'pop3s'
imap=$(port "$work/front" imap)
imaps=$(port "$work/front" imaps)
pop3=$(port "$work/front" pop3)
pop3s=$(port "$work/front" pop3s)
[ -n "$imap" ] && [ -n "$imaps" ] && [ -n "$pop3" ] && [ -n "$pop3s" ] || { echo "tern did not start:"; cat "$work/front/stderr"; exit 1; }
echo "clients: tern on imap $imap, imaps $imaps, pop3 $pop3, pop3s $pop3s"
status=0
HX_WORK="$work/clients" bash "$SHARED/clients/run_clients.sh" \
    127.0.0.1 "$imap" "$pop3" alice secret "$imaps" "$pop3s" || status=$?
for d in "$work/front" "$work/back"; do
    if [ -f "$d/stderr" ] && grep -q 'panicked' "$d/stderr"; then
        echo "tern panicked during the client run:"; cat "$d/stderr"; status=1
    fi
done
if [ "$mode" = --proxy ] && [ -d "$work/front/mail/alice" ]; then
    echo "the proxy made a Maildir of its own for alice"; status=1
fi
exit $status
