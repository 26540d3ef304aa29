#!/usr/bin/env bash
# Install (once), then lint, type-check and run the test suite (slow real-data tests: add `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
