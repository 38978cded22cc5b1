#!/usr/bin/env bash
# The LTC paper's time-series protocol (Hasani et al. 2021): 32 units, batches of 16, Adam (lr 0.01 for the LTC,
# 0.001 for the others, as its README says), test on the best-validation epoch, several seeds.
#
#   scripts/ltc_series_results.sh EPOCHS SEEDS DATA_ROOT RUNS_DIR TASK:CELL...
#   e.g. scripts/ltc_series_results.sh 50 3 ../shared/datasets runs/series occupancy:lstm ozone:ltc
#
# Prints one line per run (best-validation epoch, its validation value and test metric) and, per task and cell,
# the mean ± standard deviation over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="$1"; seeds="$2"; data="$3"; runs="$4"; shift 4
bin=target/release/remanence
[ -x "$bin" ] || cargo build --release
for pair in "$@"; do
  task="${pair%%:*}"; cell="${pair##*:}"
  lr=0.001; [ "$cell" = ltc ] && lr=0.01
  for ((s = 0; s < seeds; s++)); do
    name="$task-$cell-s$s-e$epochs"
    rm -rf "$runs/$name"
    "$bin" train --task "$task" --cell "$cell" --hidden 32 --batch-size 16 --epochs "$epochs" --lr "$lr" \
      --seed "$s" --data "$data/$task" --runs-dir "$runs" --name "$name" >/dev/null
  done
done
python3 - "$runs" "$epochs" "$seeds" "$@" <<'PY'
import json, statistics, sys
runs, epochs, seeds, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
select = {"occupancy": ("valid_accuracy", max, "test_accuracy"), "traffic": ("valid_mse", min, "test_mse"),
          "ozone": ("valid_f1", max, "test_f1")}
for pair in pairs:
    task, cell = pair.split(":")
    key, best, test = select[task]
    tests, secs = [], []
    for s in range(seeds):
        rec = [json.loads(l) for l in open(f"{runs}/{task}-{cell}-s{s}-e{epochs}/metrics.jsonl")]
        r = best(rec, key=lambda r: r["values"][key])
        tests.append(r["values"][test]); secs.append(statistics.mean(x["seconds"] for x in rec))
        print(f"{task} {cell} seed {s}: best {key} {r['values'][key]:.4f} at epoch {r['epoch']}, {test} {r['values'][test]:.4f}")
    sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
    print(f"== {task} {cell}: {test} {statistics.mean(tests):.4f} ± {sd:.4f} over {seeds} seeds, {statistics.mean(secs):.2f} s/epoch")
PY
