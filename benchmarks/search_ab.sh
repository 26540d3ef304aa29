#!/usr/bin/env bash
# A short search load run for A/B comparisons (RESULTS.md, session 5): one server (`serve
# --workers WORKERS`, no precomputed lists), then `shopfusion bench load` on /v1/search
#   closed loop, 4 connections, 10 s; open loop at 200/s, 15 s; open loop at OVER/s, 10 s
# (2 s of warm-up each, 256 connections open loop), one markdown row per run with the load average.
# Alternate variants in one exclusive hold of the machine; the figures move by +-30% between minutes.
#
# Usage: SF=.venv/bin bash benchmarks/search_ab.sh SRC_DIR ARTIFACT OUT_DIR TAG [ENV=VALUE ...]
#   SRC_DIR: the PYTHONPATH of the server (e.g. a worktree's src, to compare commits)
# Env: WORKERS (2), OVER (600), PORT (8852).
set -euo pipefail
src="$1"; artifact="$2"; out="$3"; tag="$4"; shift 4
sf="${SF:-.venv/bin}"; port="${PORT:-8852}"; url="http://127.0.0.1:$port"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
export PYTHONPATH="$src" SHOPFUSION_RATE_LIMIT_PER_S=1000000 SHOPFUSION_RATE_LIMIT_BURST=1000000
export SHOPFUSION_PSEUDONYM_SECRET=bench SHOPFUSION_ACCESS_LOG=false
env "$@" "$sf/shopfusion" serve --artifact "$artifact" --port "$port" --workers "${WORKERS:-2}" \
  --store "$(mktemp -d)/events.db" > "$out/$tag.log" 2>&1 &
server=$!
for _ in $(seq 1 240); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.5; done
rm -f "$out/$tag.json" "$out/$tag.json.labels"
run() {  # rate(0: closed) connections seconds seed label
  "$sf/shopfusion" bench load --url "$url" --artifact "$artifact" --endpoint search --rate "$1" \
    --connections "$2" --duration "$3" --warmup 2 --seed "$4" --json "$out/$tag.json" > /dev/null
  echo "$tag $5, load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/$tag.json.labels"
}
run 0 4 10 11 closed
run 200 256 15 12 "200/s"
run "${OVER:-600}" 256 10 13 "${OVER:-600}/s"
kill "$server"; wait "$server" 2>/dev/null || true
mapfile -t labels < "$out/$tag.json.labels"
python3 "$here/load_rows.py" "$out/$tag.json" "${labels[@]}" | tail -3
