#!/usr/bin/env bash
# What the benchmarks' baselines need beyond scripts/install_deps.sh (not the tests): Debian's python3-torch
# (1.13) with OpenBLAS (libopenblas0-openmp) for the PyTorch side of scripts/bench_cpu.sh and for exporting
# ONNX graphs (bench/onnx/export_igpt_onnx.py), and onnxruntime-node / onnxruntime-web 1.30.0 from npm
# (bench/onnx/package-lock.json) for the ONNX Runtime sides of scripts/bench_cpu.sh and scripts/bench_web.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/install_deps.sh" python3-torch libopenblas0-openmp
ORT="$ROOT/bench/onnx/node_modules"
if [ ! -d "$ORT/onnxruntime-web" ] || [ ! -d "$ORT/onnxruntime-node" ]; then
    echo "installing: onnxruntime-node and onnxruntime-web 1.30.0 (npm, into bench/onnx/node_modules)"
    # bench/onnx/.npmrc skips onnxruntime-node's download of its CUDA provider (the CPU one is in the package)
    (cd "$ROOT/bench/onnx" && npm ci --no-audit --no-fund >/dev/null)
fi
