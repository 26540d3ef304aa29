#!/usr/bin/env bash
# Create ./.venv and install shopfusion with the extras named in $SHOPFUSION_EXTRAS.
# Idempotent: a second run only checks. PyTorch, when an extra needs it, is pinned to the CPU build
# torch==2.13.0 and installed first (any other spec pulls a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${SHOPFUSION_EXTRAS:-dev,report,text,image,faiss,seq,serve,search,fast}"
python="${PYTHON:-python3}"
# The storefront's browser tests drive the system Chromium (no browser download); Debian's
# package and a CJK font are installed when missing and we may (root); otherwise they skip.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -q chromium fonts-wqy-microhei >/dev/null || echo "note: chromium not installed; browser tests will skip" >&2
fi
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
