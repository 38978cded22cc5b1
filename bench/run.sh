#!/usr/bin/env bash
# Runs PyTorch (nn.RNN/LSTM/GRU) and ncps (LTC, CfC) on the shapes of `remanence bench`, so the
# two can be compared on one machine. Creates bench/.venv with torch and ncps from PyPI on first use.
# Usage: bench/run.sh [--threads N] [--reps N]     (PyTorch/ncps alone)
#        bench/run.sh --install                      (only create the venv)
# The comparison in one run, ours and theirs interleaved row by row, uses the venv this makes:
#   remanence bench --against pytorch
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch ncps numpy  # ncps imports numpy without declaring it
fi
if [ "${1:-}" = "--install" ]; then
  "$venv/bin/python" -c "import torch, ncps; print('bench/.venv: torch', torch.__version__)"
  exit 0
fi
exec "$venv/bin/python" "$here/torch_bench.py" "$@"
