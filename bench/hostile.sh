#!/usr/bin/env bash
# Hostile-body run (issue 13): at least 10^6 generated bodies through the real HTTP handler
# of a release build on SQLite; passes only with 0 5xx, 0 requests left unanswered, 0 panics
# in Inlet's log, and Inlet still serving afterwards. Usage: bench/hostile.sh [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-1000000}"
SEED="${2:-13}"
PORT="${PORT:-18090}"
cargo build --release --locked --bin inlet --example hostile_bodies
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
DATABASE_URL="sqlite://$dir/inlet.db" INLET_BIND="127.0.0.1:$PORT" INLET_LOG_LEVEL=warn \
  INLET_MAIL_DIR="$dir/mail" INLET_OUTBOX_WORKER_ENABLED=false INLET_RATE_LIMIT_ENABLED=false \
  INLET_SERVER__MAX_BODY_READS_PER_CLIENT=0 \
  target/release/inlet serve >"$dir/inlet.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
echo "==> $COUNT hostile bodies (seed $SEED) against http://127.0.0.1:$PORT"
status=0
target/release/examples/hostile_bodies "http://127.0.0.1:$PORT/v1/forms/contact/submissions" \
  "$COUNT" 64 "$SEED" || status=$?
panics=$(grep -c "panicked" "$dir/inlet.log" || true)
alive=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)
stored=$(sqlite3 "$dir/inlet.db" "SELECT COUNT(*) FROM submissions" 2>/dev/null || echo "?")
echo "panics in Inlet's log: $panics; /healthz after the run: $alive; submissions stored: $stored"
rss=$(ps -o rss= -p "$pid" | tr -d ' ')
echo "Inlet RSS after the run: $((rss / 1024)) MiB"
if [ "$status" -ne 0 ] || [ "$panics" -ne 0 ] || [ "$alive" != 200 ]; then
  echo "FAILED"; exit 1
fi
echo "OK: 0 panics, 0 5xx"
