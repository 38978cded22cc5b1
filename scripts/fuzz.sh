#!/usr/bin/env bash
# Fuzzes Remanence's loaders with cargo-fuzz (libFuzzer) for a fixed budget per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Targets live in fuzz/fuzz_targets/ and run the functions of crates/train/src/fuzzing.rs. Each
# starts from fuzz/seeds/<target>/ and grows a corpus in fuzz/corpus/<target>/ (not committed).
# A crash is copied to fuzz/regressions/<target>/, which `cargo test` replays from then on:
# commit it with the fix. Exits non-zero when a target crashed.
#
# cargo-fuzz is installed into target/tools when missing. Sanitizer flags are nightly features
# of rustc; the stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-60}"
shift || true
tools="$PWD/target/tools"
export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $tools"
  cargo install --locked cargo-fuzz --version 0.13.2 --root "$tools" --quiet
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz/fuzz_targets && ls *.rs | sed 's/\.rs$//')
fi
# Build every target first, so a build error is reported as one and not as a crash.
(cd fuzz && cargo fuzz build -O) || { echo "the fuzz targets do not build" >&2; exit 1; }
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
  echo "== fuzzing $t for ${budget}s"
  if ! (cd fuzz && cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$budget" -rss_limit_mb=2048 -timeout=20 -max_len=65536 \
        -print_final_stats=1); then
    failed+=("$t")
    ls fuzz/artifacts/"$t"/* >/dev/null 2>&1 || echo "$t stopped without a crash input (see above)" >&2
    for a in fuzz/artifacts/"$t"/*; do
      [ -e "$a" ] || continue
      cp "$a" "fuzz/regressions/$t/"
      echo "kept $(basename "$a") in fuzz/regressions/$t/ (replayed by cargo test)"
    done
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "no crash in ${targets[*]} (${budget}s each)"
