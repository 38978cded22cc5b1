#!/usr/bin/env bash
# Sequence lists learned one after another (Ans, Rousset, French & Musca 2004): several methods, several seeds.
#
#   scripts/lists_results.sh SEEDS RUNS_DIR ENTRY...
#   e.g. scripts/lists_results.sh 3 runs/lists naive joint dual-net "transition=dual-net,--pseudo,transition"
#
# An ENTRY is a method name or LABEL=METHOD[,FLAG,VALUE…]. Every run: $SCENARIO (default lists:4:5:6:24), an SRN of
# $HIDDEN (32) units, $EPOCHS (30) epochs per list at lr $LR (0.01), binary noise seeds for the dual network.
# Prints, per entry, ACC (next-item accuracy over every list after the last), BWT, and NET2's ACC for dual-net,
# mean ± std over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="$1"; runs="$2"; shift 2
bin="${REMANENCE_BIN:-target/release/remanence}"
scenario="${SCENARIO:-lists:4:5:6:24}"; hidden="${HIDDEN:-32}"; epochs="${EPOCHS:-30}"; lr="${LR:-0.01}"
cell="${CELL:-srn}"
[ -x "$bin" ] || cargo build --release
labels=()
for entry in "$@"; do
  label="${entry%%=*}"; spec="${entry#*=}"
  IFS=',' read -r -a parts <<< "$spec"
  method="${parts[0]}"; flags=("${parts[@]:1}")
  labels+=("$label")
  for ((s = 0; s < seeds; s++)); do
    name="${scenario//:/-}-$cell-$label-h$hidden-e$epochs-s$s"
    if grep -q '"complete": true' "$runs/$name/summary.json" 2>/dev/null; then continue; fi
    rm -rf "$runs/$name"
    noise=(--noise binary); [[ " ${flags[*]} " == *" --noise "* ]] && noise=()
    "$bin" continual --scenario "$scenario" --method "$method" --cell "$cell" --hidden "$hidden" \
      --epochs "$epochs" --lr "$lr" --seed "$s" "${noise[@]}" "${flags[@]}" --runs-dir "$runs" --name "$name" >/dev/null
  done
done
python3 - "$runs" "${scenario//:/-}-$cell" "$hidden" "$epochs" "$seeds" "${labels[@]}" <<'PY'
import json, os, statistics, sys
runs, prefix, hidden, epochs, seeds, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
def ms(v):
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}"
for m in labels:
    acc, bwt, net2, secs = [], [], [], []
    for s in range(seeds):
        d = f"{runs}/{prefix}-{m}-h{hidden}-e{epochs}-s{s}"
        summ = json.load(open(f"{d}/summary.json"))
        acc.append(summ["acc_all"]); bwt.append(summ["bwt"])
        recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
        secs.append(sum(r["seconds"] for r in recs))
        if recs[-1].get("net2_accuracies"):
            last = recs[-1]["net2_accuracies"]; net2.append(sum(last) / len(last))
    extra = f" | NET2 ACC {ms(net2)}" if net2 else ""
    print(f"{m}: ACC {ms(acc)} | BWT {ms(bwt)}{extra} | {statistics.mean(secs):.1f} s per run")
PY
