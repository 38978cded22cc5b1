#!/usr/bin/env bash
# Compiles every CUDA kernel of crates/cells/src/kernels/cuda and crates/memory/src/kernels to PTX
# with nvcc, as the `cuda` features' build scripts do, and fails on the first kernel that does not compile. Needs nvcc on PATH or
# CUDA_HOME (scripts/cuda_toolchain.sh installs one). Usage: scripts/cuda_ptx.sh [OUT_DIR]
# Compute capability: $CUDA_COMPUTE_CAP, default 80 (portable PTX).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/ptx}"
mkdir -p "$out"
nvcc="${NVCC:-}"
if [ -z "$nvcc" ]; then
  if [ -n "${CUDA_HOME:-}" ]; then nvcc="$CUDA_HOME/bin/nvcc"; else nvcc="$(command -v nvcc)"; fi
fi
cap="${CUDA_COMPUTE_CAP:-80}"
"$nvcc" --version | tail -2
for cu in crates/cells/src/kernels/cuda/*.cu; do
  name="$(basename "$cu" .cu)"
  "$nvcc" --ptx -arch="sm_$cap" -O3 -std=c++17 -Werror all-warnings \
    -Icrates/cells/src/kernels/cuda -o "$out/$name.ptx" "$cu"
  entries="$(grep -c '^\.visible \.entry' "$out/$name.ptx")"
  echo "$cu -> $out/$name.ptx: $(grep -m1 '^\.target' "$out/$name.ptx"), $entries kernels"
done
# The memory crate's kernels (the Gripon–Berrou retrieval), with their own headers.
for cu in crates/memory/src/kernels/*.cu; do
  name="memory_$(basename "$cu" .cu)"
  "$nvcc" --ptx -arch="sm_$cap" -O3 -std=c++17 -Werror all-warnings \
    -Icrates/memory/src/kernels -o "$out/$name.ptx" "$cu"
  entries="$(grep -c '^\.visible \.entry' "$out/$name.ptx")"
  echo "$cu -> $out/$name.ptx: $(grep -m1 '^\.target' "$out/$name.ptx"), $entries kernels"
done
