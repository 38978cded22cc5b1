#!/usr/bin/env bash
# Split row-MNIST (5 experiences of 2 digits, class-incremental, one 10-way head) for several methods and seeds,
# after Cossu et al. 2021 (LSTM, Adam 1e-3, batch 64, clip 5) with the cuts given as arguments.
#
#   scripts/continual_results.sh EPOCHS_PER_EXPERIENCE HIDDEN SEEDS MNIST_DIR RUNS_DIR ENTRY...
#   e.g. scripts/continual_results.sh 3 128 1 ../shared/datasets/mnist runs/continual naive replay joint
#
# An ENTRY is a method name (its settings at the defaults below), or LABEL=METHOD[,FLAG,VALUE…] for a variant:
#   robins=dual-net,--reverberations,0   replay5=replay,--buffer-per-class,5
# SCENARIO (default split:mnist-rows:2) and TAG (a suffix of the run names, e.g. TAG=-task for
# SCENARIO=split-task:mnist-rows:2) choose another scenario, PREFIX the start of the run names (split-mnist-rows),
# CELL (lstm) and LR (0.001) the model and learning rate. Prints, per entry, ACC (mean accuracy over the 5 experiences after the last), BWT and forgetting,
# mean ± std over seeds, and for dual-net NET2's ACC.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="$1"; hidden="$2"; seeds="$3"; data="$4"; runs="$5"; shift 5
bin="${REMANENCE_BIN:-target/release/remanence}"
scenario="${SCENARIO:-split:mnist-rows:2}"
tag="${TAG:-}"
prefix="${PREFIX:-split-mnist-rows}"
cell="${CELL:-lstm}"; lr="${LR:-0.001}"
[ -x "$bin" ] || cargo build --release
labels=()
for entry in "$@"; do
  label="${entry%%=*}"; spec="${entry#*=}"
  IFS=',' read -r -a parts <<< "$spec"
  method="${parts[0]}"; flags=("${parts[@]:1}")
  labels+=("$label")
  for ((s = 0; s < seeds; s++)); do
    name="$prefix$tag-$label-h$hidden-e$epochs-s$s"
    # A finished run (its summary says complete) is kept; anything else is run again.
    if grep -q '"complete": true' "$runs/$name/summary.json" 2>/dev/null; then continue; fi
    rm -rf "$runs/$name"
    # The memory settings of Cossu et al. unless the entry sets its own.
    memory=(--buffer-per-class 50 --replay-batch 20)
    [[ " ${flags[*]} " == *" --buffer-per-class "* ]] && memory=(--replay-batch 20)
    "$bin" continual --scenario "$scenario" --method "$method" --cell "$cell" --hidden "$hidden" \
      --epochs "$epochs" --batch-size 64 --lr "$lr" --clip 5 --seed "$s" --data "$data" \
      "${memory[@]}" "${flags[@]}" --runs-dir "$runs" --name "$name" >/dev/null
  done
done
python3 - "$runs" "$hidden" "$epochs" "$seeds" "$prefix$tag" "${labels[@]}" <<'PY'
import json, os, statistics, sys
runs, hidden, epochs, seeds, tag, labels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6:]
def ms(v):
    v = [x for x in v if x is not None]
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"
for m in labels:
    acc, bwt, fgt, secs, net2, peak = [], [], [], [], [], []
    for s in range(seeds):
        d = f"{runs}/{tag}-{m}-h{hidden}-e{epochs}-s{s}"
        summ = json.load(open(f"{d}/summary.json"))
        acc.append(summ["acc_all"]); bwt.append(summ["bwt"]); fgt.append(summ["forgetting_chaudhry"])
        recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
        secs.append(sum(r["seconds"] for r in recs))
        peak.append(max((r.get("peak_rss_mib") or 0) for r in recs))
        if os.path.exists(f"{d}/net2-matrix.json"):
            last = recs[-1]["net2_accuracies"]
            net2.append(sum(last) / len(last))
    extra = f", NET2 ACC {ms(net2)}" if net2 else ""
    print(f"{m}: ACC {ms(acc)}, BWT {ms(bwt)}, forgetting {ms(fgt)}{extra}, {statistics.mean(secs):.0f} s per run, "
          f"peak {max(peak):.0f} MiB ({seeds} seeds)")
PY
