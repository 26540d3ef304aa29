#!/usr/bin/env bash
# Service benchmark (issue 5), as recorded in RESULTS.md. Needs wrk (apt-get install wrk).
# Usage: PYTHONPATH=src SF=.venv/bin bash benchmarks/service_bench.sh ARTIFACT_DIR [SECONDS]
set -euo pipefail
artifact="$1"; seconds="${2:-15}"
sf="${SF:-.venv/bin}"
here="$(cd "$(dirname "$0")" && pwd)"
export SHOPFUSION_RATE_LIMIT_PER_S=1000000 SHOPFUSION_RATE_LIMIT_BURST=1000000 SHOPFUSION_PSEUDONYM_SECRET=bench SHOPFUSION_ACCESS_LOG=false

start_server() {  # $1 port, rest: env assignments
  local port="$1"; shift
  env "$@" "$sf/shopfusion" serve --artifact "$artifact" --port "$port" --store "$(mktemp -d)/events.db" \
    > "/tmp/shopfusion-bench-$port.log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.5; done
  echo "server did not start" >&2; exit 1
}
run_wrk() {  # $1 url, $2 connections, $3 endpoint, $4 ids file
  wrk -t1 -c"$2" -d"${seconds}s" --latency -s "$here/wrk_paths.lua" "$1" -- "$3" "$4" \
    | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors"
}

echo "== A. default settings (cache on): warm-up pass, then measured pass"
start_server 8781
for endpoint in recommend similar; do
  ids="$artifact/users.txt"; [ "$endpoint" = similar ] && ids="$artifact/items.txt"
  run_wrk http://127.0.0.1:8781 8 "$endpoint" "$ids" >/dev/null
  echo "-- $endpoint, 8 connections"; run_wrk http://127.0.0.1:8781 8 "$endpoint" "$ids"
done
curl -s http://127.0.0.1:8781/metrics | grep -E '^shopfusion_(cache_hit_rate|errors_total|rejected_total)' || true
kill "$server"; wait "$server" 2>/dev/null || true

echo "== B. cache off: every request scored by the model"
start_server 8782 SHOPFUSION_CACHE_SIZE=0
echo "-- recommend, 2 connections"; run_wrk http://127.0.0.1:8782 2 recommend "$artifact/users.txt"
echo "-- recommend, 64 connections (overload: the model gate sheds)"; run_wrk http://127.0.0.1:8782 64 recommend "$artifact/users.txt"
curl -s http://127.0.0.1:8782/metrics | grep -E '^shopfusion_(errors_total|rejected_total)' || true
kill "$server"; wait "$server" 2>/dev/null || true
