#!/usr/bin/env bash
# Service load benchmark (issue 5): serve an artifact on loopback and drive it open-loop.
# Usage: benchmarks/service_load.sh ARTIFACT_DIR OUT_JSON [PORT]
# Env: SHOPFUSION bin dir as SF (default .venv/bin); RATES="recommend:500 similar:500 ..." to override.
set -euo pipefail
artifact="$1"; out="$2"; port="${3:-8765}"
sf="${SF:-.venv/bin}"
url="http://127.0.0.1:$port"
rates="${RATES:-recommend:500 similar:500}"
duration="${DURATION:-20}"
export SHOPFUSION_RATE_LIMIT_PER_S=1000000 SHOPFUSION_RATE_LIMIT_BURST=1000000  # one client: the generator
export SHOPFUSION_PSEUDONYM_SECRET=bench SHOPFUSION_ACCESS_LOG=false
"$sf/shopfusion" serve --artifact "$artifact" --port "$port" --store "$(mktemp -d)/events.db" > /tmp/shopfusion-bench-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "$url/readyz" >/dev/null && break
  sleep 0.5
done
for spec in $rates; do
  "$sf/shopfusion" bench load --url "$url" --artifact "$artifact" --endpoint "${spec%%:*}" \
    --rate "${spec##*:}" --duration "$duration" --json "$out"
done
curl -s "$url/metrics" | grep -E '^shopfusion_(cache_hit_rate|errors_total|rejected_total)' || true
