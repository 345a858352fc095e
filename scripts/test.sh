#!/bin/bash
# The whole test suite, as CI runs it: installs what a fresh machine lacks,
# runs every Rust test (unit, known-answer, end-to-end against the real
# binary, the Courier round trip), then the real clients against tern and
# through a tern proxy to a tern backend, then the real clients across a switch (Dovecot -> tern -> Dovecot, Courier ->
# tern -> Courier).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --no-fail-fast 2>&1
scripts/run-clients.sh
scripts/run-clients.sh --proxy
python3 scripts/migration-clients.py "${TERN_BIN:-target/debug/tern}" "${TERN_SHARED:-../shared}"
