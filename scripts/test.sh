#!/usr/bin/env bash
# The whole test suite: formatting, lints (examples included), licences, unit and integration
# tests on SQLite and PostgreSQL (PostgreSQL from INLET_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres; skipped loudly when unreachable unless
# INLET_TEST_REQUIRE_POSTGRES=1), then the embed script's tests in headless Chromium
# (scripts/browser-tests.sh installs Chromium and the npm packages they need).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> licence check (deny.toml)"
python3 scripts/check-licenses.py
echo "==> cargo test"
cargo test --locked --lib --bins --tests
echo "==> browser tests"
./scripts/browser-tests.sh
