#!/usr/bin/env bash
# Trains the row-MNIST recipes for a given number of epochs and prints one markdown row each.
# Usage: scripts/mnist_rows_results.sh EPOCHS DATA_DIR RUNS_DIR CELL...   (e.g. 5 ../shared/datasets/mnist runs lstm cfc)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=$1 data=$2 runs=$3; shift 3
bin=${REMANENCE_BIN:-./target/release/remanence}
for c in "$@"; do
  start=$(date +%s)
  "$bin" train --recipe "models/mnist-rows-$c.toml" --data "$data" --epochs "$epochs" --runs-dir "$runs" --name "mnist-rows-$c-e$epochs" >/dev/null 2>&1
  secs=$(( $(date +%s) - start ))
  python3 - "$runs/mnist-rows-$c-e$epochs" "$c" "$secs" <<'PY'
import json, os, sys
d, cell, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
acc = " → ".join(f"{100*l['metric']:.2f}" for l in lines)
print(f"| {cell} | {len(lines)} | {100*max(l['metric'] for l in lines):.2f}% | {100*lines[-1]['metric']:.2f}% | {acc} | {secs/60:.1f} min |")
PY
done
