#!/bin/bash
# Runs the real-client harness (shared/clients/run_clients.sh) against a fresh
# tern: every IMAP and POP3 scenario, in the clear, with STARTTLS/STLS and over
# implicit TLS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TERN_SHARED:-$ROOT/../shared}
BIN=${TERN_BIN:-$ROOT/target/debug/tern}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build -q -p tern)

work=$(mktemp -d /tmp/tern-clients.XXXXXX)
# getmail refuses to run as root and delivers as nobody: the tree must be readable.
chmod 755 "$work"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" cert --out "$work" --name localhost >/dev/null
printf 'alice:{PLAIN}secret::::::\n' > "$work/users"
cat > "$work/tern.toml" <<CONF
hostname = "localhost"
[imap]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[tls]
cert = "cert.pem"
key = "key.pem"
[auth]
passwd_file = "users"
[mail]
maildir = "mail/{user}/Maildir"
allow_root = true
[log]
level = "warn"
CONF
"$BIN" serve --config "$work/tern.toml" > "$work/stdout" 2> "$work/stderr" &
pid=$!
for _ in $(seq 100); do
    grep -q 'listening pop3s' "$work/stdout" 2>/dev/null && break
    sleep 0.1
done
imap=$(sed -n 's/^tern: listening imap 127.0.0.1:\([0-9]*\)$/\1/p' "$work/stdout")
imaps=$(sed -n 's/^tern: listening imaps 127.0.0.1:\([0-9]*\)$/\1/p' "$work/stdout")
pop3=$(sed -n 's/^tern: listening pop3 127.0.0.1:\([0-9]*\)$/\1/p' "$work/stdout")
pop3s=$(sed -n 's/^tern: listening pop3s 127.0.0.1:\([0-9]*\)$/\1/p' "$work/stdout")
[ -n "$imap" ] && [ -n "$imaps" ] && [ -n "$pop3" ] && [ -n "$pop3s" ] || { echo "tern did not start:"; cat "$work/stderr"; exit 1; }
echo "clients: tern on imap $imap, imaps $imaps, pop3 $pop3, pop3s $pop3s"
status=0
HX_WORK="$work/clients" bash "$SHARED/clients/run_clients.sh" \
    127.0.0.1 "$imap" "$pop3" alice secret "$imaps" "$pop3s" || status=$?
if grep -q 'panicked' "$work/stderr"; then
    echo "tern panicked during the client run:"; cat "$work/stderr"; status=1
fi
exit $status
