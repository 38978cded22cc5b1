#!/usr/bin/env bash
# Installs nvcc 13.0 from NVIDIA's PyPI wheels into a virtual environment (no GPU, driver or root
# needed) and prints the CUDA_HOME to use. Usage: scripts/cuda_toolchain.sh [VENV]
# (default: target/cuda-venv). Reuses an existing installation.
set -euo pipefail
venv="${1:-target/cuda-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
home="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13"
if [ ! -x "$home/bin/nvcc" ]; then
  "$venv/bin/pip" install -q --no-deps \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
fi
echo "$home"
