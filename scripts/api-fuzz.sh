#!/usr/bin/env bash
# The OpenAPI document checked against the running server: a bounded run of schemathesis
# (property-based, from PyPI) over every operation in /v1/openapi.json, on a fresh SQLite
# database with a lead in it. Fails on any 5xx, any status the document does not list, and
# any response that does not match its schema. Installs schemathesis into target/ on first use.
#
#   scripts/api-fuzz.sh            # uses target/debug/inlet (built if missing)
#   INLET_BIN=... API_FUZZ_EXAMPLES=50 scripts/api-fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin=${INLET_BIN:-target/debug/inlet}
[ -x "$bin" ] || cargo build --locked --bin inlet
work=$(mktemp -d)
token=api-fuzz-admin-token-0123456789abcdef
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

DATABASE_URL="sqlite://$work/inlet.db?mode=rwc" INLET_BIND=127.0.0.1:$port INLET_ADMIN_TOKEN=$token \
  INLET_MAIL__MAIL_DIR=$work/mail INLET_RATE_LIMIT__ENABLED=false INLET_OUTBOX__WORKER_ENABLED=false \
  INLET_REPLIES__ADDRESS=replies@in.example.com INLET_REPLIES__SECRET=$token \
  RUST_LOG=warn RUST_BACKTRACE=0 "$bin" serve >"$work/inlet.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/inlet.log"; echo "inlet did not start" >&2; exit 1; }
  sleep 0.1
done
# Something for the admin operations to find.
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d '{"name":"Fuzz Lead","email":"fuzz@example.com","utm_source":"fuzz"}' "$base/v1/forms/contact/submissions"

echo "==> schemathesis $SCHEMATHESIS_VERSION against $base/v1/openapi.json"
status=0
"$venv/bin/schemathesis" run "$base/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "${API_FUZZ_EXAMPLES:-100}" \
  --phases examples,coverage,fuzzing \
  --workers 1 --request-timeout 30 --seed "${API_FUZZ_SEED:-20261207}" \
  --generation-database none --no-color --report-dir "$work/report" || status=$?
if [ "$status" -ne 0 ]; then
  echo "---- inlet's log (last 40 lines) ----"
  tail -40 "$work/inlet.log"
fi
exit "$status"
