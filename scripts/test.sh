#!/usr/bin/env bash
# The whole test suite: formatting, lints (examples included), licences, unit and integration
# tests on SQLite and PostgreSQL (PostgreSQL from INLET_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres; skipped loudly when unreachable unless
# INLET_TEST_REQUIRE_POSTGRES=1), a bounded schemathesis run against /v1/openapi.json
# (scripts/api-fuzz.sh installs it from PyPI), then the embed script's tests in headless Chromium
# (scripts/browser-tests.sh installs Chromium and the npm packages they need). The scale-out
# tests start their own redis-server (installed here from apt when missing; skipped loudly
# without one unless INLET_TEST_REQUIRE_REDIS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Parts of the suite that were skipped (written by the tests themselves, since the harness
# captures their output) are repeated in the very last lines, whatever the outcome.
skips=target/inlet-test-skips
mkdir -p target && rm -f "$skips"
report_skips() {
  if [ -s "$skips" ]; then
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    sort -u "$skips" | sed 's/^/!!!!! /'
    echo "!!!!! The suite above did NOT run these parts."
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  fi
}
trap report_skips EXIT

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> licence check (deny.toml)"
python3 scripts/check-licenses.py
# The scale-out tests run their own redis-server (started and stopped by the tests).
if ! command -v redis-server >/dev/null 2>&1; then
  echo "==> installing Debian's redis-server (scale-out tests)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends redis-server \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends redis-server; } \
    || echo "!!!!! redis-server could not be installed: the scale-out tests will be skipped"
fi
echo "==> cargo test"
cargo test --locked --lib --bins --tests
echo "==> the OpenAPI document against the running server (schemathesis)"
./scripts/api-fuzz.sh
echo "==> browser tests"
./scripts/browser-tests.sh
