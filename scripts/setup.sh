#!/bin/bash
# Installs what the test suite needs on a fresh Debian machine: the real mail
# clients that shared/clients drives, and Courier-IMAP's imapd (unpacked by
# shared/oracle/courier.sh) for the round-trip test, and dovecot-core (its
# doveadm checks the hashes `tern pw` writes). Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TERN_SHARED:-$ROOT/../shared}
export DEBIAN_FRONTEND=noninteractive

need=()
for p in isync offlineimap3 fetchmail getmail6 curl neomutt tmux strace gsasl dovecot-core; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
        apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
        apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >/dev/null
    }
fi
# PostgreSQL and MariaDB for the account-backend tests (started privately by them).
bash "$ROOT/scripts/db.sh" install
# courier-authlib's configuration files for the import test (unpacked once).
bash "$ROOT/scripts/courier-authlib.sh" >/dev/null
# Courier's imapd for the round-trip test (downloads and unpacks once).
bash "$SHARED/oracle/courier.sh" bin >/dev/null
