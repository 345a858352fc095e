#!/bin/bash
# courier-authlib's configuration files as Debian's packages install them
# (courier-authdaemon, courier-authlib-mysql, -postgresql, -ldap), unpacked,
# not installed, under $COURIER_AUTHLIB_ROOT (default /tmp/courier-authlib),
# for the `tern import courier-authlib` test. Prints the etc/courier folder.
# Idempotent; nothing is started and no system configuration is changed.
set -euo pipefail
ROOT=${COURIER_AUTHLIB_ROOT:-/tmp/courier-authlib}
export DEBIAN_FRONTEND=noninteractive
pkgs=(courier-authdaemon courier-authlib-mysql courier-authlib-postgresql courier-authlib-ldap)
if [ ! -f "$ROOT/etc/courier/authdaemonrc" ] || [ ! -f "$ROOT/etc/courier/authldaprc" ]; then
    mkdir -p "$ROOT/debs"
    (cd "$ROOT/debs" && apt-get download "${pkgs[@]}" >/dev/null 2>&1) || {
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1
        (cd "$ROOT/debs" && apt-get download "${pkgs[@]}" >/dev/null)
    }
    for d in "$ROOT"/debs/*.deb; do dpkg-deb -x "$d" "$ROOT"; done
fi
echo "$ROOT/etc/courier"
