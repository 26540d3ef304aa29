#!/usr/bin/env bash
# The load targets of issue 5 (recommendations, similar items, overload) on one artifact, as
# recorded in RESULTS.md. Needs wrk. One `shopfusion serve` process, access log off, rate limits
# raised (the generator is one client); the generators run on the same machine.
#   1. every known shopper's feed and every product's similar items precomputed at start-up
#      (SHOPFUSION_WARM_USERS / WARM_ITEMS), then wrk closed loop and the open-loop generator at
#      RATE and 2 x RATE requests/s;
#   2. cache off: every request scored by the model (micro-batched), open loop at MISS_RATE and
#      2 x MISS_RATE.
# Usage: PYTHONPATH=src SF=.venv/bin bash benchmarks/service_targets.sh ARTIFACT_DIR OUT_DIR [SECONDS]
# Env: RATE (default 500), MISS_RATE (default 50), SKIP_WARM=1 / SKIP_MISS=1 to run one part only,
# WARM_USERS / WARM_ITEMS (default: every user / item of the artifact).
set -euo pipefail
artifact="$1"; out="$2"; seconds="${3:-20}"
sf="${SF:-.venv/bin}"
here="$(cd "$(dirname "$0")" && pwd)"
rate="${RATE:-500}"; miss_rate="${MISS_RATE:-50}"
mkdir -p "$out"
export SHOPFUSION_RATE_LIMIT_PER_S=1000000 SHOPFUSION_RATE_LIMIT_BURST=1000000
export SHOPFUSION_PSEUDONYM_SECRET=bench SHOPFUSION_ACCESS_LOG=false
n_users=${WARM_USERS:-$(wc -l < "$artifact/users.txt")}; n_items=${WARM_ITEMS:-$(wc -l < "$artifact/items.txt")}

start_server() {  # $1 port, rest: env assignments
  local port="$1"; shift
  log="$out/server-$port.log"
  env "$@" "$sf/shopfusion" serve --artifact "$artifact" --port "$port" --store "$(mktemp -d)/events.db" \
    > "$log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.5; done
  echo "server did not start" >&2; exit 1
}
stop_server() {
  curl -s "http://127.0.0.1:$1/metrics" | grep -E '^shopfusion_(cache_hit_rate|errors_total|rejected_total)' || true
  echo "server RSS: $(ps -o rss= -p "$server") kB"
  kill "$server"; wait "$server" 2>/dev/null || true
}
run_wrk() {  # $1 url, $2 connections, $3 endpoint, $4 ids file
  wrk -t1 -c"$2" -d"${seconds}s" --latency -s "$here/wrk_paths.lua" "$1" -- "$3" "$4" \
    | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors"
}
open_loop() {  # $1 url, $2 endpoint, $3 rate, $4 json file
  echo "-- open loop: $2 at $3 requests/s for ${seconds} s (after 3 s of warm-up at that rate)"
  "$sf/shopfusion" bench load --url "$1" --artifact "$artifact" --endpoint "$2" --rate "$3" \
    --duration "$seconds" --json "$4" > /dev/null
  python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[-1]))" "$4"
}

if [ "${SKIP_WARM:-0}" != 1 ]; then
  echo "== 1. precomputed: $n_users feeds and $n_items similar-item lists"
  start_server 8801 SHOPFUSION_WARM_USERS="$n_users" SHOPFUSION_WARM_ITEMS="$n_items" \
    SHOPFUSION_CACHE_SIZE=$((n_users + n_items + 1000))
  started=$(date +%s)
  for _ in $(seq 1 3600); do grep -q "precomputed" "$log" && break; sleep 1; done
  echo "$(grep -o 'precomputed.*' "$log") in $(( $(date +%s) - started )) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  for endpoint in recommend similar; do
    ids="$artifact/users.txt"; [ "$endpoint" = similar ] && ids="$artifact/items.txt"
    echo "-- wrk closed loop: $endpoint, 8 connections"; run_wrk http://127.0.0.1:8801 8 "$endpoint" "$ids"
  done
  for endpoint in recommend similar; do
    for r in "$rate" $((2 * rate)); do open_loop http://127.0.0.1:8801 "$endpoint" "$r" "$out/warm.json"; done
  done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_server 8801
fi

if [ "${SKIP_MISS:-0}" != 1 ]; then
  echo "== 2. cache off: every request scored by the model, in micro-batches"
  start_server 8802 SHOPFUSION_CACHE_SIZE=0
  echo "-- wrk closed loop: recommend, 8 connections"; run_wrk http://127.0.0.1:8802 8 recommend "$artifact/users.txt"
  for r in "$miss_rate" $((2 * miss_rate)); do open_loop http://127.0.0.1:8802 recommend "$r" "$out/miss.json"; done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_server 8802
fi
