#!/usr/bin/env bash
# The GPU check of issue #15, in two halves.
#
#   scripts/gpu_check.sh prepare [DIR]   (here: Rust, nvcc from NVIDIA's PyPI wheels, no GPU)
#       Builds with `--features cuda` (own target dir, target/gpu-build) the `remanence` binary and
#       the test executables that exercise the CUDA kernel sources, strips them and copies them,
#       this script and scripts/gpu_bench_torch.py into DIR (default gpu-check/, git-ignored),
#       then prints DIR's size (it must travel: under 64 MiB); past 60 MiB it packs the executables
#       into DIR/payload.tar.xz (about 200 MB stripped -> about 12 MB), which `run` unpacks.
#   scripts/gpu_check.sh run [DIR] [--dry-run]   (the GPU machine: no Rust, no network)
#       Runs nvidia-smi, the test executables, a CUDA-against-CPU training comparison, short
#       training runs, `remanence memory bench --device cuda`, `remanence bench --device cuda` and PyTorch's
#       cuDNN nn.LSTM/GRU on the bench shapes, each step under `timeout`, into one log
#       ($OUT/gpu-check.log when $OUT is set, else DIR/gpu-check.log); carries on after a
#       failure and ends with a summary; exit status 1 if any step failed. --dry-run prints the
#       steps without running them.
#
# On the device machine (the folder is ignored, so it must be carried):
#   run(command="scripts/gpu_check.sh run gpu-check", carry=["gpu-check"], timeout_s=600)
#
# Environment (prepare): CUDA_VENV (default target/cuda-venv), GPU_TARGET_DIR (default
# target/gpu-build), CUDA_COMPUTE_CAP (default 80: portable PTX, JIT-compiled by the driver on
# newer cards such as the H200's sm_90), NICE (default `nice -n 10`).
# Environment (run): STEP_TIMEOUT (seconds per step, default 90), TORCH_PYTHON (default python3),
# GPU_CHECK_SKIP (a bash regular expression: steps whose names match are skipped).
set -uo pipefail

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# --------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------
prepare() {
  set -e
  local root
  root="$(cd "$(dirname "$0")/.." && pwd)"
  cd "$root"
  local dir="${1:-gpu-check}"
  dir="${dir%/}"
  local venv="${CUDA_VENV:-target/cuda-venv}"
  local tdir="${GPU_TARGET_DIR:-target/gpu-build}"
  local nice_cmd="${NICE:-nice -n 10}"
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"

  # DIR must stay out of git (and so travels to the device machine only when carried).
  if ! grep -qxF "/$dir/" .gitignore && ! grep -qxF "/$dir" .gitignore; then
    echo "/$dir/" >>.gitignore
    echo "added /$dir/ to .gitignore"
  fi

  # nvcc 13 from the PyPI wheels.
  CUDA_HOME="$(scripts/cuda_toolchain.sh "$venv")"
  export CUDA_HOME
  export PATH="$CUDA_HOME/bin:$PATH"
  local lib="$CUDA_HOME/lib"

  # Candle links cudarc dynamically: -lcuda -lcudart -lcublas -lcublasLt -lcurand -lnvrtc. The
  # wheels ship only the versioned libraries (libcublas.so.13, …), the driver (libcuda) not at
  # all; install what is missing, then make a link folder with unversioned names and a stub
  # libcuda.so (soname libcuda.so.1, resolved against the driver's library on the GPU machine).
  if [ ! -e "$lib/libcublas.so.13" ] || [ ! -e "$lib/libcurand.so.10" ] || [ ! -e "$lib/libnvrtc.so.13" ]; then
    echo "installing the CUDA 13.0 runtime libraries (cuBLAS, cuRAND, NVRTC) into $venv" >&2
    "$venv/bin/pip" install -q --no-deps "nvidia-cublas>=13.0,<13.1" \
      "nvidia-cuda-nvrtc>=13.0,<13.1" "nvidia-curand>=10.4,<10.5" >&2
  fi
  local link="$tdir/cuda-link"
  mkdir -p "$link"
  local l
  for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
    [ -e "$lib/lib$l" ] || { echo "missing $lib/lib$l" >&2; exit 1; }
    ln -sfn "$(cd "$lib" && pwd)/lib$l" "$link/lib${l%.so.*}.so"
  done
  if [ ! -e "$link/libcuda.so" ]; then
    local cudarc_ver sys
    cudarc_ver="$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)"
    sys="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$cudarc_ver"/src/driver/sys/mod.rs | head -1)"
    [ -f "$sys" ] || { echo "cudarc $cudarc_ver sources not found (cargo fetch first)" >&2; exit 1; }
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$sys" | awk '{print "void " $4 "(void) {}"}' \
      | sort -u >"$link/cuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"
    echo "stub libcuda.so: $(wc -l <"$link/cuda_stub.c") driver entry points of cudarc $cudarc_ver"
  fi
  export LIBRARY_PATH="$(cd "$link" && pwd)${LIBRARY_PATH:+:$LIBRARY_PATH}"

  # A fresh target dir, seeded (once) from CI's CUDA check build when present: its build-script
  # outputs (Candle's kernels, nvcc'd for the same CUDA_COMPUTE_CAP) are reused instead of
  # spending about 16 minutes of 2 cores compiling them again.
  if [ ! -d "$tdir/release" ] && [ -d target/cuda-check/release ]; then
    echo "seeding $tdir from target/cuda-check (reuses Candle's compiled CUDA kernels)"
    mkdir -p "$tdir"
    cp -a target/cuda-check/release "$tdir/"
  fi

  # One cargo invocation (one feature resolution): the binary and the test executables that run
  # the CUDA kernel sources against the reference (cells: device_steps, cuda_sequence (the
  # whole-sequence ops, their cuBLAS products among them), cuda_kernels_host; memory: cuda_host).
  local json="$tdir/gpu-build.json"
  echo "building (CUDA_HOME=$CUDA_HOME, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target dir $tdir)…"
  $nice_cmd cargo build --release --target-dir "$tdir" \
    -p remanence-cli -p remanence-cells -p remanence-memory \
    --features remanence-cli/cuda,remanence-cells/cuda,remanence-memory/cuda \
    --bin remanence --test device_steps --test cuda_sequence --test cuda_kernels_host --test cuda_host \
    --message-format=json-render-diagnostics >"$json"

  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/tests"
  local exe name
  while IFS=$'\t' read -r exe name kind; do
    if [ "$kind" = bin ]; then
      cp "$exe" "$dir/bin/$name"
      strip "$dir/bin/$name"
    else
      cp "$exe" "$dir/tests/$name"
      strip "$dir/tests/$name"
    fi
  done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null)
      | [.executable, .target.name, (if .profile.test then "test" else "bin" end)] | @tsv' "$json")
  [ -x "$dir/bin/remanence" ] || { echo "no remanence binary in the build output" >&2; exit 1; }
  cp scripts/gpu_check.sh "$dir/gpu_check.sh"
  cp scripts/gpu_bench_torch.py "$dir/gpu_bench_torch.py"
  {
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
    echo "features: remanence-cli/cuda (cells, memory); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
    echo "nvcc: $("$CUDA_HOME/bin/nvcc" --version | tail -1)"
    echo "needs at run time: libcuda.so.1 (driver), libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13"
    (cd "$dir" && sha256sum bin/* tests/*)
  } >"$dir/MANIFEST"
  echo "DIR $dir:"
  (cd "$dir" && ls -l bin tests)
  local bytes
  bytes="$(du -sb "$dir" | cut -f1)"
  echo "size of $dir: $bytes bytes ($(du -sh "$dir" | cut -f1)); limit 67108864 (64 MiB)"
  # Stripped, the executables are still large (each embeds Candle's PTX and its static MoE
  # kernels): past 60 MiB, pack them into payload.tar.xz (PTX is text; xz makes it about a
  # sixteenth), which `run` unpacks with Python's tarfile (no xz binary needed there).
  if [ "$bytes" -ge $((60 * 1024 * 1024)) ]; then
    echo "$bytes bytes uncompressed: compressing bin/ and tests/ into $dir/payload.tar.xz (xz -9)…"
    tar -C "$dir" -cf - bin tests | $nice_cmd xz -9 -T0 -c >"$dir/payload.tar.xz"
    rm -rf "$dir/bin" "$dir/tests"
    bytes="$(du -sb "$dir" | cut -f1)"
    echo "size of $dir, compressed: $bytes bytes ($(du -sh "$dir" | cut -f1))"
  fi
  if [ "$bytes" -ge 67108864 ]; then
    echo "still too large to travel (limit 64 MiB)" >&2
    exit 1
  fi
  echo "on the GPU machine: scripts/gpu_check.sh run $dir   (carry: [\"$dir\"])"
}

# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
RESULTS=()
FAILED=0
DRY=0
LOG=/dev/null

log() { echo "$@" | tee -a "$LOG"; }

# step NAME SECONDS COMMAND...: runs COMMAND under timeout, appends its output to the log and
# records pass / FAIL (exit status; 124 = timed out).
step() {
  local name="$1" secs="$2"
  shift 2
  log ""
  log "=== $name (timeout ${secs}s) ==="
  log "\$ $*"
  if [ "$DRY" = 1 ]; then
    RESULTS+=("skip  $name (dry run)")
    return 0
  fi
  if [ -n "${GPU_CHECK_SKIP:-}" ] && [[ "$name" =~ $GPU_CHECK_SKIP ]]; then
    RESULTS+=("skip  $name (GPU_CHECK_SKIP)")
    log "--- skipped (GPU_CHECK_SKIP)"
    return 0
  fi
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$secs" "$@" >>"$LOG" 2>&1 </dev/null
  rc=$?
  local dt=$(($(date +%s) - t0))
  if [ "$rc" = 0 ]; then
    RESULTS+=("pass  $name (${dt}s)")
    log "--- $name: pass (${dt}s)"
  else
    local why="exit $rc"
    [ "$rc" = 124 ] && why="timed out"
    RESULTS+=("FAIL  $name ($why, ${dt}s)")
    FAILED=$((FAILED + 1))
    log "--- $name: FAIL ($why, ${dt}s)"
  fi
}

# Library folders of the CUDA 13 runtime on the GPU machine: the nvidia wheels PyTorch depends
# on (nvidia/cu13/lib, nvidia/*/lib), torch/lib, the toolkit, the driver.
cuda_lib_path() {
  local py="$1" dirs=()
  local site
  if site="$("$py" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)"; then
    dirs+=("$site/torch/lib")
    local d
    for d in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
      [ -d "$d" ] && dirs+=("$d")
    done
  fi
  local d
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local IFS=:
  echo "${dirs[*]}"
}

# compare.sh BIN WORK CELL DTYPE TOL: trains CELL on the CPU reference and on CUDA, then compares
# every epoch's loss and gradient norm.
write_compare() {
  cat >"$1" <<'EOS'
set -e
bin="$1" work="$2" cell="$3" dtype="$4" tol="$5"
common=(train --task reber --cell "$cell" --hidden 16 --epochs 3 --seed 1 --dtype "$dtype" --runs-dir "$work/runs")
"$bin" "${common[@]}" --device cpu --kernel reference --name "$cell-$dtype-cpu"
"$bin" "${common[@]}" --device cuda --name "$cell-$dtype-cuda"
python3 - "$work/runs/$cell-$dtype-cpu/metrics.jsonl" "$work/runs/$cell-$dtype-cuda/metrics.jsonl" "$tol" <<'EOF'
import json, sys
def rows(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
a, b, tol = rows(sys.argv[1]), rows(sys.argv[2]), float(sys.argv[3])
assert a and len(a) == len(b), f"epochs: cpu {len(a)}, cuda {len(b)}"
worst = 0.0
for ra, rb in zip(a, b):
    for k in ("loss", "grad_norm"):
        x, y = ra[k], rb[k]
        d = abs(x - y) / max(1.0, abs(x))
        worst = max(worst, d)
        print(f"epoch {ra['epoch']} {k:<9} cpu reference {x:.12g}  cuda {y:.12g}  rel diff {d:.2e}")
print(f"largest relative difference {worst:.2e} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else "CUDA path and CPU reference disagree")
EOF
EOS
}

run_check() {
  local dir="" arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY=1 ;;
      -*) echo "unknown option $arg" >&2; exit 2 ;;
      *) dir="$arg" ;;
    esac
  done
  if [ -z "$dir" ]; then
    if [ -x "$(dirname "$0")/bin/remanence" ] || [ -f "$(dirname "$0")/payload.tar.xz" ]; then
      dir="$(dirname "$0")"
    else
      dir=gpu-check
    fi
  fi
  dir="$(cd "$dir" 2>/dev/null && pwd)" || { echo "no folder ${dir} (run prepare first)" >&2; exit 2; }
  local py="${TORCH_PYTHON:-python3}"
  local st="${STEP_TIMEOUT:-90}"
  if [ -n "${OUT:-}" ]; then LOG="$OUT/gpu-check.log"; else LOG="$dir/gpu-check.log"; fi
  mkdir -p "$(dirname "$LOG")"
  : >"$LOG"
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
  # The executables: DIR/bin and DIR/tests, or packed in DIR/payload.tar.xz (unpacked into $work).
  local exe="$dir"
  if [ ! -x "$dir/bin/remanence" ] && [ -f "$dir/payload.tar.xz" ] && [ "$DRY" = 0 ]; then
    exe="$work/exe"
    mkdir -p "$exe"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' \
      "$dir/payload.tar.xz" "$exe" || { echo "could not unpack $dir/payload.tar.xz" >&2; exit 2; }
  fi
  local bin="$exe/bin/remanence"

  local libs
  libs="$(cuda_lib_path "$py")"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export RUST_BACKTRACE=1 PYTHONUNBUFFERED=1

  log "GPU check: $dir  ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) cores)"
  log "log: $LOG"
  log "executables: $exe"
  log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  [ -f "$dir/MANIFEST" ] && sed 's/^/manifest: /' "$dir/MANIFEST" | tee -a "$LOG" >/dev/null
  [ -x "$bin" ] || { log "missing $bin (run prepare first)"; [ "$DRY" = 1 ] || exit 2; }

  step "nvidia-smi" 30 nvidia-smi
  step "torch sees CUDA" 60 "$py" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version()); assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))'
  # Unresolved libraries show up here before any step fails on them.
  step "libraries resolve (ldd)" 30 bash -c "! ldd '$bin' | tee /dev/stderr | grep -q 'not found'"

  # The test executables, every one prepare built: device_steps and cuda_sequence run the cells'
  # device paths (the whole-sequence ops of SRN, LSTM and GRU: per step a cuBLAS product and a
  # kernel launch; the LTC's, per step its step kernels) on CUDA device 0 against the CPU reference, outputs and
  # every gradient, f32 and f64 (the first GPU run of those cuBLAS calls); cuda_kernels_host and
  # cuda_host test the host build of the .cu files only. NB: where no CUDA device opens,
  # device_steps and cuda_sequence fall back to Device::Cpu and the host build.
  local t
  for t in "$exe"/tests/*; do
    [ -e "$t" ] || continue
    step "test $(basename "$t")" "$st" "$t" --test-threads 1
  done

  # The CUDA path on the GPU, end to end: same seed, same data, 3 epochs of each cell with a CUDA
  # kernel (Route::CudaSteps: the cells' kernels, Candle's cuBLAS products and autograd) against
  # the CPU reference composition (plain Candle ops); every epoch's loss and gradient norm must
  # agree (f64: 1e-9 relative, f32: 1e-4). Reber strings, hidden 16.
  write_compare "$work/compare.sh"
  local cell
  for cell in lstm gru srn ltc; do
    step "train $cell cuda f64 = cpu reference" "$st" bash "$work/compare.sh" "$bin" "$work" "$cell" f64 1e-9
  done
  for cell in lstm gru srn ltc; do
    step "train $cell cuda f32 = cpu reference" "$st" bash "$work/compare.sh" "$bin" "$work" "$cell" f32 1e-4
  done

  # The memory's CUDA retrieval kernel (states compared with the CPU's inside the command).
  step "memory bench --device cuda" 120 "$bin" memory bench --device cuda --messages 5000 \
    --probes 100 --sparse-probes 0 --dense-probes 5 --out "$work/memory"

  # Speed: our CUDA path (the fused route is the CUDA step kernels; candle-nn and the reference
  # composition beside it, all on the GPU) and PyTorch's cuDNN LSTM/GRU on the same shapes.
  step "remanence bench --device cuda" 150 "$bin" bench --device cuda --cells lstm,gru \
    --hidden 128,256 --reps 5 --warmup 1 --no-reference
  step "timed train lstm cuda h128 (our GPU speed)" "$st" "$bin" train --task reber --cell lstm \
    --hidden 128 --epochs 2 --device cuda --dtype f32 --runs-dir "$work/runs" --name lstm-cuda-h128
  step "PyTorch cuDNN LSTM/GRU (bench shapes)" 120 "$py" "$dir/gpu_bench_torch.py" --device cuda

  log ""
  log "=== summary ==="
  local r
  for r in "${RESULTS[@]}"; do log "$r"; done
  local skipped
  skipped="$(printf '%s\n' "${RESULTS[@]}" | grep -c '^skip' || true)"
  if [ "$DRY" = 1 ]; then
    log "dry run: ${#RESULTS[@]} steps listed, none run"
  else
    log "$(( ${#RESULTS[@]} - FAILED - skipped )) of ${#RESULTS[@]} steps passed, $FAILED failed, $skipped skipped; log: $LOG"
  fi
  rm -rf "$work"
  [ "$FAILED" = 0 ]
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  run) shift; run_check "$@" ;;
  *) usage ;;
esac
