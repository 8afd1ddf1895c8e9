#!/usr/bin/env bash
# Every GPU check of the CUDA backend (issue 5) in one go, for a session with a lent GPU machine: build
# with CUDA, run the [cuda] tests (CUDA vs CPU logits, greedy tokens, NLL, sampler), compute-sanitizer
# (memcheck + racecheck) on a small model, `igpt bench --device cuda` for iGPT-S at batch 1 / 8 / 16 / 32
# (fused decode step; layer by layer at 1 / 8),
# the PyTorch anchors (bench/torch_bench.py), the training bench against bench/torch_train_bench.py
# (SKIP_TRAIN=1 skips it), then the whole native suite. Logs go to $OUT (at most 8 files come back from
# the device tool; this writes 8). About 6 minutes on one H100 + 16 cores without the training part;
# every step has its own time limit, and a failed step does not stop the ones after it.
#
# On the GPU machine the Debian header packages are missing: run scripts/pack_device_headers.sh here
# first and carry .cache/devhdr (see README, section CUDA). Environment: OUT (log folder, default
# out/gpu_check), IGPT_DEVICE_HEADERS (default .cache/devhdr), JOBS (default: all cores), BUDGET (seconds the
# whole script may take, default 570), SKIP_TORCH=1, SKIP_RACECHECK=1.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
HDR=${IGPT_DEVICE_HEADERS:-$PWD/.cache/devhdr}
JOBS=${JOBS:-$(nproc)}
BUILD=${BUILD:-build-gpu}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
T0=$SECONDS
BUDGET=${BUDGET:-570}

note() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$SUMMARY"; }
keep() { tee -a "$SUMMARY"; }  # lines worth reading first: to the summary and the output
step() {  # name, log file, time limit (s), command...
    local name=$1 logf=$2 limit=$3
    shift 3
    local t=$SECONDS
    echo "== $name: $*" >>"$logf"
    timeout --kill-after=10 "$limit" "$@" >>"$logf" 2>&1
    local rc=$?
    local what=ok
    [ $rc -ne 0 ] && what="FAILED (exit $rc)"
    [ $rc -eq 124 ] && what="TIMED OUT after ${limit} s"
    note "$name: $what in $((SECONDS - t)) s (log: $(basename "$logf"))"
    return $rc
}

# --- 1. the machine -----------------------------------------------------------------------------------
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
{
    nvidia-smi || true
    nvcc --version || true
    cmake --version | head -1 || true
    ninja --version || true
    c++ --version | head -1 || true
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" || true
    echo "headers: $HDR"; ls "$HDR" || true
} >"$OUT/env.txt" 2>&1
note "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1); $JOBS jobs"
if [ ! -d "$HDR/eigen3/Eigen" ]; then
    note "no header folder at $HDR: run scripts/pack_device_headers.sh on the dev machine and carry .cache/devhdr"
    exit 1
fi

# --- 2. build -----------------------------------------------------------------------------------------
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
step "configure" "$OUT/build.txt" 120 cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DIGPT_WITH_CUDA=ON -DIGPT_SYSINC_FROM="$HDR" -DCMAKE_CUDA_ARCHITECTURES=90 -DIGPT_BUILD_TESTS=ON \
    -DIGPT_BUILD_TOOLS=ON || exit 1
step "build" "$OUT/build.txt" 300 cmake --build "$BUILD" -j "$JOBS" --target igpt igpt_tests || exit 1
grep -i -E "warning" "$OUT/build.txt" | head -20 | keep

# --- 3. correctness: [cuda] tests, then compute-sanitizer on the small-model case ----------------------
TESTS=$PWD/$BUILD/tests/igpt_tests
(cd "$BUILD/tests" && step "tests [cuda]" "$OUT/tests_cuda.txt" 180 "$TESTS" "[cuda]" --reporter compact --durations yes)
grep -E "^cuda (train )?check:" "$OUT/tests_cuda.txt" | keep
grep -E "skipped: no GPU|passed|failed" "$OUT/tests_cuda.txt" | tail -3 | keep
if command -v compute-sanitizer >/dev/null; then
    tools=(memcheck)
    [ "${SKIP_RACECHECK:-0}" = 1 ] || tools+=(racecheck)
    for tool in "${tools[@]}"; do  # racecheck is slow: the fused decode step alone (its shared memory)
        tag="[sanitize]"
        [ "$tool" = racecheck ] && tag="[sanitize_fused]"
        (cd "$BUILD/tests" && step "compute-sanitizer $tool $tag" "$OUT/tests_cuda.txt" 90 \
            compute-sanitizer --tool "$tool" --error-exitcode 3 "$TESTS" "$tag" --reporter compact)
    done
else
    note "compute-sanitizer not found: skipped"
fi

# --- 4. speed: igpt bench, iGPT-S shape, batch 1 / 8 / 32; then the PyTorch anchors --------------------
# The fused one-kernel decode step (the default) at every batch it covers, and the layer-by-layer
# kernels (IGPT_CUDA_FUSED=0) beside it; batches over 16 decode layer by layer anyway.
for b in ${BATCHES:-1 8 16 32}; do
    step "igpt bench S batch $b" "$OUT/bench_igpt.txt" 120 env IGPT_CUDA_PROFILE=1 "$BUILD/tools/igpt/igpt" bench \
        -c S --device cuda --batch "$b" --repeats 2
done
for b in ${LAYERED_BATCHES:-1 8}; do
    step "igpt bench S batch $b, layer by layer" "$OUT/bench_igpt.txt" 120 env IGPT_CUDA_FUSED=0 \
        "$BUILD/tools/igpt/igpt" bench -c S --device cuda --batch "$b" --repeats 2
done
grep -E "^(gpu|prefill|decode|complete|RESULT|fused decode profile)" "$OUT/bench_igpt.txt" | keep
export PYTHONUNBUFFERED=1
left=$((BUDGET - (SECONDS - T0)))  # the device tool's 600 s per command, less a margin
if [ "${SKIP_TORCH:-0}" = 1 ] || [ $left -lt 90 ]; then
    note "torch_bench: skipped (SKIP_TORCH or only $left s left)"
else
    step "torch_bench" "$OUT/bench_torch.txt" $((left < 300 ? left - 10 : 300)) python3 bench/torch_bench.py \
        --igpt-results "$OUT/bench_igpt.txt" ${TORCH_ARGS:-}
    grep -E "^(torch|transformers|hf:|static)" "$OUT/bench_torch.txt" | keep
    sed -n '/^Complete the bottom half/,$p' "$OUT/bench_torch.txt" | keep
fi

# --- 4b. training (issue 6): igpt train-bench on the 26M and iGPT-S shapes, batch 32, then the PyTorch side ---
left=$((BUDGET - (SECONDS - T0)))
if [ "${SKIP_TRAIN:-0}" = 1 ] || [ $left -lt 120 ]; then
    note "training bench: skipped (SKIP_TRAIN or only $left s left)"
else
    for shape in "--layers 8" ""; do
        step "igpt train-bench S $shape batch 32" "$OUT/bench_train.txt" 120 "$BUILD/tools/igpt/igpt" train-bench \
            -c S $shape -b 32 --steps 4 --warmup 1 --device cuda
    done
    grep -E "^(train bench|forward|whole step|RESULT)" "$OUT/bench_train.txt" | keep
    left=$((BUDGET - (SECONDS - T0)))
    if [ "${SKIP_TORCH:-0}" != 1 ] && [ $left -ge 150 ]; then
        step "torch_train_bench" "$OUT/bench_train.txt" $((left < 300 ? left - 10 : 300)) python3 \
            bench/torch_train_bench.py --igpt-results "$OUT/bench_train.txt"
        sed -n '/^Training throughput/,$p' "$OUT/bench_train.txt" | keep
    fi
fi

# --- 5. the whole native suite on this machine (CLI tests now default to --device auto = CUDA) ----------
left=$((BUDGET - (SECONDS - T0)))
if [ $left -lt 40 ]; then
    note "tests (all): skipped (only $left s left)"
else
    (cd "$BUILD/tests" && step "tests (all)" "$OUT/tests_all.txt" $((left - 15)) "$TESTS" --reporter compact)
    tail -3 "$OUT/tests_all.txt" | keep
fi
note "done in $((SECONDS - T0)) s (summary: $OUT/summary.txt)"
