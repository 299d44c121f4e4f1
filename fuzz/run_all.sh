#!/usr/bin/env bash
# Run every fuzz target for a bounded number of inputs (tox -e fuzz; longer: RUNS=1000000).
set -euo pipefail
cd "$(dirname "$0")"
runs="${RUNS:-20000}"
for target in fuzz_*.py; do
  echo "== $target ($runs runs)"
  python "$target" -runs="$runs" -max_len=4096 -rss_limit_mb=2048 2>&1 | tail -3
done
