#!/usr/bin/env bash
# The embed script's browser tests: headless Debian Chromium driven by playwright-core, against
# the real `inlet` binary (debug build) on a fresh SQLite database per test, with the pages
# served from a second origin under a strict CSP. Installs what it needs: the `chromium`
# package (apt, when missing) and the pinned npm packages (npm ci from snippet/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "==> installing Debian's chromium (browser tests)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends chromium \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
fi

echo "==> npm ci (snippet/: terser, playwright-core, axe-core)"
(cd snippet && npm ci --no-audit --no-fund --loglevel=error)

echo "==> cargo build --bin inlet (the binary the browser tests start)"
cargo build --locked --bin inlet

echo "==> browser tests (snippet/tests)"
cd snippet
CHROMIUM="$CHROMIUM" INLET_BIN="$PWD/../target/debug/inlet" \
  node --test --test-concurrency=1 --test-reporter=spec tests/
