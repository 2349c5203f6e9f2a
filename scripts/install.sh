#!/usr/bin/env bash
# Create .venv (once) and install dyna_stream with its test extra. torch comes first, pinned to the
# CPU build that the machine has on disk, so pip never reaches for a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch: a suitable one (>= 2.3) already in .venv is kept. Otherwise torch==$TORCH_VERSION (default 2.13.0)
# is installed: from plain PyPI on x86_64 Linux that is the CUDA build (~2.5 GB with its CUDA libraries);
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu picks the CPU-only build (~200 MB) instead.
if .venv/bin/python -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 3))" 2>/dev/null; then
  echo "install: keeping torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')" >&2
else
  echo "install: torch ${TORCH_VERSION:-2.13.0}${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL} (this takes a while)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    "torch==${TORCH_VERSION:-2.13.0}"
fi
echo "install: dyna_stream and its test dependencies" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
