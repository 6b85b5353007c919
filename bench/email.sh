#!/usr/bin/env bash
# Email throughput: 10,000 queued follow-ups delivered by the outbox worker through the pooled
# lettre SMTP transport to a local SMTP sink, on SQLite and on PostgreSQL.
#   bench/email.sh [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
cargo build --release --example email_bench
for db in sqlite postgres; do
  ./target/release/examples/email_bench "$db" "$n"
done
