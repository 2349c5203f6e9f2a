#!/usr/bin/env bash
# The main job on a fresh clone: forecast the bundled real radar sample with the bundled model.
# Writes out/forecast.npz, out/forecast.png and out/importance.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/dyna-stream predict --out "${1:-out}"
