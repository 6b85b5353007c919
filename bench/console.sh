#!/usr/bin/env bash
# The console's benchmark (see BENCHMARKS.md): lead lists, reports and the view beacon on a
# 1,000,000-lead database. Installs wrk if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y wrk; fi
fi
exec python3 bench/console.py "$@"
