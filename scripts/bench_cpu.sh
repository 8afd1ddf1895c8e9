#!/usr/bin/env bash
# The native CPU benchmark beside PyTorch and ONNX Runtime, in one run (issue 2): for each config and batch,
# `igpt bench`, a hand-written PyTorch decoder with a static KV cache, and onnxruntime-node on the ONNX export
# of the same model complete the bottom half of a 32x32 image from the same random-weight model file, fp32,
# on the same threads, interleaved; one table with the ratios (bench/torch_cpu_bench.py).
#   scripts/bench_cpu.sh [--configs tiny,small,base,S] [--batches 1,8] [--threads 2] [--repeats 2] [--json F]
# Installs what the baselines need when missing (scripts/install_bench_deps.sh: python3-torch, OpenBLAS,
# onnxruntime from npm), and builds the native CLI when it is not built (IGPT_NATIVE_BUILD, default build/).
# Run it on a quiet machine: PyTorch's OpenMP threads spin at every barrier, so another busy process makes
# its 2-thread figures many times slower.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVE="$(realpath -m "${IGPT_NATIVE_BUILD:-$ROOT/build}")"
bash "$ROOT/scripts/install_bench_deps.sh"
if [ ! -x "$NATIVE/tools/igpt/igpt" ]; then
    cmake -S "$ROOT" -B "$NATIVE" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$NATIVE" -j 2 --target igpt
fi
# Debian's torch links the generic libblas.so.3 (the reference BLAS unless an optimised one is chosen):
# OpenBLAS's copy goes first, whatever the alternatives say. /usr/bin/python3: Debian's, which has torch.
export LD_LIBRARY_PATH="/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec /usr/bin/python3 "$ROOT/bench/torch_cpu_bench.py" --igpt "$NATIVE/tools/igpt/igpt" "$@"
