#!/usr/bin/env bash
# Scale-out benchmark (see BENCHMARKS.md): one Inlet instance versus two on one PostgreSQL,
# with and without Redis for the shared limits. Installs wrk and redis-server if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk redis-server; do
  if ! command -v "$tool" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq "$tool" || { apt-get update -qq && apt-get install -y -qq "$tool"; }
    else sudo apt-get install -y "$tool"; fi
  fi
done
exec python3 bench/scale_out.py "$@"
