#!/usr/bin/env bash
# Trains each recipe over seeds 0..N-1 and prints one markdown row per recipe: share of seeds that
# solve the task, training strings seen until solved (median, min-max over the solving seeds),
# final test string accuracy (mean), and parameters.
# Usage: scripts/reber_seeds.sh [SEEDS] [RECIPE...]   (default: 10 seeds, the embedded-Reber recipes)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-10}; shift || true
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(models/embedded-reber-srn.toml models/embedded-reber-gru.toml models/embedded-reber-lstm.toml)
cargo build --release -q
out=$(mktemp -d)
for r in "${recipes[@]}"; do
  for s in $(seq 0 $((seeds - 1))); do
    ./target/release/remanence train --recipe "$r" --seed "$s" --runs-dir "$out" --name "$(basename "$r" .toml)-s$s" >/dev/null 2>&1
  done
done
python3 - "$out" "$seeds" "${recipes[@]}" <<'PY'
import json, os, statistics, sys
out, seeds, recipes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| recipe | cell | hidden | parameters | seeds solved | strings seen until solved: median (min–max) | mean final test string accuracy |")
print("|---|---|---|---|---|---|---|")
for r in recipes:
    name = os.path.basename(r)[:-5]
    solved_at, accs, cfg, params = [], [], None, None
    for s in range(seeds):
        d = os.path.join(out, f"{name}-s{s}")
        cfg = json.load(open(os.path.join(d, "config.json")))
        lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
        hit = [l["sequences_seen"] for l in lines if l.get("solved")]
        if hit: solved_at.append(hit[0])
        accs.append(lines[-1]["values"]["test_string_accuracy"])
    h = cfg["model"]["rnn"]["hidden_size"]; i = cfg["model"]["rnn"]["input_size"]; o = cfg["model"]["output_size"]
    g = {"srn": 1, "lstm": 4, "gru": 3}[cfg["model"]["rnn"]["cell"]]
    params = g * h * (i + h + 2) + o * (h + 1)
    seen = f"{statistics.median(solved_at):,.0f} ({min(solved_at):,}–{max(solved_at):,})" if solved_at else "–"
    print(f"| `{r}` | {cfg['model']['rnn']['cell']} | {h} | {params:,} | {len(solved_at)}/{seeds} | {seen} | {100*statistics.mean(accs):.1f}% |")
PY
rm -rf "$out"
