#!/usr/bin/env bash
# Install (once) and run the demo: build the bilingual sample shop, ingest it, train and evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/shopfusion demo "$@"
