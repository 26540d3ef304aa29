#!/usr/bin/env bash
# Create ./.venv and install shopfusion with the extras named in $SHOPFUSION_EXTRAS (default: dev,report).
# Idempotent: a second run only checks. PyTorch, when an extra needs it, is pinned to the CPU build
# torch==2.13.0 and installed first (any other spec pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${SHOPFUSION_EXTRAS:-dev,report,text,image,faiss,seq,search}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.shopfusion-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
case ",$extras," in
  *,text,*|*,image,*|*,seq,*|*,all,*) .venv/bin/python -m pip install --quiet "torch==2.13.0" ;;
esac
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "$want" > "$stamp"
