#!/usr/bin/env bash
# Split row-MNIST (5 experiences of 2 digits, class-incremental, one 10-way head) for several methods and seeds,
# after Cossu et al. 2021 (LSTM, Adam 1e-3, batch 64, clip 5) with the cuts given as arguments.
#
#   scripts/continual_results.sh EPOCHS_PER_EXPERIENCE HIDDEN SEEDS MNIST_DIR RUNS_DIR METHOD...
#   e.g. scripts/continual_results.sh 3 128 1 ../shared/datasets/mnist runs/continual naive replay joint
#
# Prints, per method, ACC (mean accuracy over the 5 experiences after the last), BWT and forgetting, mean ± std
# over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="$1"; hidden="$2"; seeds="$3"; data="$4"; runs="$5"; shift 5
bin="${REMANENCE_BIN:-target/release/remanence}"
[ -x "$bin" ] || cargo build --release
for method in "$@"; do
  for ((s = 0; s < seeds; s++)); do
    name="split-mnist-rows-$method-h$hidden-e$epochs-s$s"
    # A finished run (its summary says complete) is kept; anything else is run again.
    if grep -q '"complete": true' "$runs/$name/summary.json" 2>/dev/null; then continue; fi
    rm -rf "$runs/$name"
    "$bin" continual --scenario split:mnist-rows:2 --method "$method" --cell lstm --hidden "$hidden" \
      --epochs "$epochs" --batch-size 64 --lr 0.001 --clip 5 --seed "$s" --data "$data" \
      --buffer-per-class 50 --replay-batch 20 --runs-dir "$runs" --name "$name" >/dev/null
  done
done
python3 - "$runs" "$hidden" "$epochs" "$seeds" "$@" <<'PY'
import json, statistics, sys
runs, hidden, epochs, seeds, methods = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
def ms(v):
    v = [x for x in v if x is not None]
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"
for m in methods:
    acc, bwt, fgt, secs = [], [], [], []
    for s in range(seeds):
        d = f"{runs}/split-mnist-rows-{m}-h{hidden}-e{epochs}-s{s}"
        summ = json.load(open(f"{d}/summary.json"))
        acc.append(summ["acc_all"]); bwt.append(summ["bwt"]); fgt.append(summ["forgetting_chaudhry"])
        secs.append(sum(json.loads(l)["seconds"] for l in open(f"{d}/metrics.jsonl")))
    print(f"{m}: ACC {ms(acc)}, BWT {ms(bwt)}, forgetting {ms(fgt)}, {statistics.mean(secs):.0f} s per run ({seeds} seeds)")
PY
