#!/usr/bin/env bash
# Worst capture pause while the retention job clears a large backlog (issue 14, item 4).
# Seeds LEADS (1,000,000) leads over a year, flags 30 % as spam, keeps 16 clients submitting as
# the embed script does, runs the retention job once, and prints each phase's latency (see
# examples/retention_pause.rs). SQLite always; PostgreSQL when INLET_BENCH_POSTGRES_URL (or the
# local default) answers. Usage: bench/retention.sh [LEADS] [SPAM_PERCENT] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
LEADS="${1:-1000000}"
SPAM="${2:-30}"
CLIENTS="${3:-16}"
PG_ADMIN="${INLET_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export RUST_BACKTRACE=0
cargo build --release --locked --example retention_pause
dir="$(mktemp -d)"
db_name="inlet_bench_retention_$$"
cleanup() {
  rm -rf "$dir"
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" 2>/dev/null || true
}
trap cleanup EXIT
echo "==> machine: $(nproc) cores, $(uname -sr); $LEADS leads, $SPAM % spam, $CLIENTS clients"
echo "==> SQLite"
target/release/examples/retention_pause "sqlite://$dir/inlet.db?mode=rwc" "$LEADS" "$SPAM" "$CLIENTS"
if psql -q "$PG_ADMIN" -c "CREATE DATABASE $db_name" 2>/dev/null; then
  echo "==> PostgreSQL"
  target/release/examples/retention_pause "${PG_ADMIN%/*}/$db_name" "$LEADS" "$SPAM" "$CLIENTS"
else
  echo "==> PostgreSQL SKIPPED: cannot create a database through $PG_ADMIN"
fi
