#!/usr/bin/env bash
# Every GPU check of the CUDA backend (issues 5 and 6) in one go, for a session with a lent GPU machine:
#  1. the build: binaries built on the dev machine (scripts/pack_device_run.sh) when they run there, else a
#     build with CUDA from the carried headers;
#  2. the [cuda] tests (inference: CUDA vs CPU logits, greedy tokens, NLL, sampler; training: gradients of
#     every op and 50-step loss curves against the CPU trainer), compute-sanitizer memcheck;
#  3. `igpt bench --device cuda` for iGPT-S at batch 1 / 8 / 32 (fused decode step; layer by layer at 8; the
#     fused step with tensor-core GEMVs, IGPT_CUDA_MMA=1, at 8 and 1, with the shared prompt read once,
#     IGPT_CUDA_SHARED_KV=1, and with both at 8; with split-K GEMVs, IGPT_CUDA_SPLITK=auto, at 8 and 1, and
#     with the shared prompt at 8; with one-pass attention, IGPT_CUDA_ONEPASS=1, at 8 and 1, and with the
#     others);
#  4. `igpt train-bench --device cuda` on the 26M and iGPT-S shapes at batch 32: bf16 GEMMs on f32 storage
#     with the batched-GEMM attention and with flash attention, and --cuda-math mixed (bf16 storage, flash);
#     each with IGPT_CUDA_PROFILE=1 (the step's time in GEMMs, attention, optimizer and the rest);
#  5. with TRAIN_SECONDS > 0 and the training tests green: `igpt train --device cuda` on CIFAR-10 for about
#     that long (TRAIN_CONFIG, TRAIN_BATCH, TRAIN_LR; TRAIN_INIT=<model file> continues that model, whose
#     preset TRAIN_CONFIG must name; TRAIN_MATH=bf16|mixed, TRAIN_ATTENTION=auto|gemm|flash, or by default
#     the fastest of bf16 / bf16 + flash / mixed in a train-bench of that shape among those whose tests
#     passed; the step count comes from that bench),
#     its f16 export, log and metrics;
#  6. the PyTorch sides in what time is left: bench/torch_train_bench.py (eager, torch.compile), then
#     bench/torch_bench.py (static-KV decoder under torch.compile, Hugging Face generate);
#  7. the whole native suite if time is still left.
# summary.txt ranks the decode paths (per batch) and the trainer variants (per shape), fastest first, for
# choosing the defaults. Every step has its own time limit; a failed step does not stop the ones after it.
# At most 8 files come back from the device tool: this writes summary.txt, build.txt, tests.txt,
# bench_igpt.txt, bench_train.txt, bench_torch.txt, train.txt and the trained model.
#
#   dev machine:  bash scripts/pack_device_run.sh        # -> .cache/dev (headers, binaries, CIFAR-10 tarball)
#   device tool:  run(command="TRAIN_SECONDS=180 bash scripts/gpu_check.sh", carry=[".cache/dev"], timeout_s=600)
#
# Environment: OUT (log folder, default out/gpu_check), DEV (default .cache/dev), JOBS (default: all cores),
# BUDGET (seconds the whole script may take, default 560), BATCHES, SKIP_TORCH=1, SKIP_TESTS=1, SKIP_BENCH=1
# (steps 3 and 4), TORCH_ARGS. Everything does not fit one 10-minute call any more: a first call without
# training (TRAIN_SECONDS=0), then one with SKIP_TESTS=1 SKIP_BENCH=1 SKIP_TORCH=1 and TRAIN_SECONDS.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUT"
DEV=${DEV:-$ROOT/.cache/dev}
JOBS=${JOBS:-$(nproc)}
BUDGET=${BUDGET:-560}
TRAIN_SECONDS=${TRAIN_SECONDS:-0}
TRAIN_ASKED=$TRAIN_SECONDS
TRAIN_CONFIG=${TRAIN_CONFIG:-small}
TRAIN_BATCH=${TRAIN_BATCH:-64}
TRAIN_LR=${TRAIN_LR:-1.5e-3}
TRAIN_MATH=${TRAIN_MATH:-auto}  # auto: the fastest variant whose [cuda][train] tests passed (step 5)
TRAIN_ATTENTION=${TRAIN_ATTENTION:-auto}
TRAINER_VARIANTS=("bf16 gemm" "bf16 flash" "mixed auto")  # --cuda-math, --cuda-attention: benched, trained with
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
T0=$SECONDS
export PYTHONUNBUFFERED=1

note() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$SUMMARY"; }
keep() { tee -a "$SUMMARY"; }  # lines worth reading first: to the summary and the output
# Lines "group value name", sorted with each group's fastest first: one ranking a group. $1: its title (a printf
# format of the group), $2: the value's printf format.
rank() {
    awk -v title="$1" -v vfmt="$2" '{ if ($1 != g) { g = $1; best = $2; printf title ":\n", g }
        printf "  %-20s " vfmt " (%.2fx the fastest)\n", $3, $2, $2 / best }'
}
left() { echo $((BUDGET - (SECONDS - T0))); }
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

# --- 1. the machine and the binaries ------------------------------------------------------------------
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
# cuBLAS 13 wherever this machine keeps it (the dev machine's binaries look in /usr/local/cuda/lib)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib \
    $(python3 -c "import nvidia, os; print(' '.join(os.path.join(p, 'cu13', 'lib') for p in nvidia.__path__))" 2>/dev/null); do
    [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
{
    nvidia-smi || true
    nvcc --version || true
    cmake --version | head -1 || true
    c++ --version | head -1 || true
    lscpu | grep -E "Model name|^CPU\(s\)" || true
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" || true
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    ls "$DEV" || true
} >"$OUT/build.txt" 2>&1
note "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1); $JOBS jobs"

# The dev machine's build: its binaries carry absolute paths of the dev checkout (test data, the CLI the
# tests spawn), so that path is made to point here.
BUILD=""
[ -f "$DEV/bin.tar.xz" ] && [ ! -d "$DEV/bin" ] && tar xJf "$DEV/bin.tar.xz" -C "$DEV"
if [ -f "$DEV/bin/build_dir" ]; then
    dev_build=$(cat "$DEV/bin/build_dir")
    dev_root=$(dirname "$dev_build")
    if [ "$dev_root" != "$ROOT" ] && [ ! -e "$dev_root" ]; then
        mkdir -p "$(dirname "$dev_root")" && ln -s "$ROOT" "$dev_root"
    fi
    b=$ROOT/$(basename "$dev_build")
    mkdir -p "$b/tools/igpt" "$b/tests"
    cp "$DEV/bin/igpt" "$b/tools/igpt/igpt" && cp "$DEV/bin/igpt_tests" "$b/tests/igpt_tests"
    if "$b/tools/igpt/igpt" --version >>"$OUT/build.txt" 2>&1 && "$b/tests/igpt_tests" --help >/dev/null 2>>"$OUT/build.txt"; then
        BUILD=$b
        note "binaries: the dev machine's ($(cat "$DEV/bin/commit" 2>/dev/null)), run from $BUILD"
    else
        note "binaries: the dev machine's do not run here (build.txt); building"
    fi
fi
if [ -z "$BUILD" ]; then
    HDR=$ROOT/.cache/devhdr
    [ -d "$HDR/eigen3" ] || { mkdir -p "$HDR" && tar xJf "$DEV/devhdr.tar.xz" -C "$HDR"; }
    BUILD=$ROOT/build-gpu
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    step "configure" "$OUT/build.txt" 120 cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DIGPT_WITH_CUDA=ON -DIGPT_SYSINC_FROM="$HDR" -DCMAKE_CUDA_ARCHITECTURES=90 -DIGPT_BUILD_TESTS=ON \
        -DIGPT_BUILD_TOOLS=ON || exit 1
    step "build" "$OUT/build.txt" 300 cmake --build "$BUILD" -j "$JOBS" --target igpt igpt_tests || exit 1
    grep -i -E "warning" "$OUT/build.txt" | head -20 | keep
fi
# the NumPy reference tests need a Python with NumPy; that machine's /usr/bin/python3 has none
python3 -c "import numpy" 2>/dev/null && export IGPT_PYTHON=$(command -v python3)
IGPT=$BUILD/tools/igpt/igpt
TESTS=$BUILD/tests/igpt_tests

# --- 2. correctness: the [cuda] tests, then compute-sanitizer memcheck -----------------------------------
train_ok=1
flash_ok=1
mixed_ok=1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    (cd "$BUILD/tests" && step "tests [cuda]" "$OUT/tests.txt" 240 "$TESTS" "[cuda]" --reporter compact --durations yes)
    tests_rc=$?
    grep -E "^cuda (train )?check:" "$OUT/tests.txt" | keep
    grep -E "skipped: no GPU|passed|failed" "$OUT/tests.txt" | tail -3 | keep
    # the training run needs the trainer's tests green: the f32 / bf16 ones always, flash and mixed ones for
    # those variants (a failure names its variant: "variant bf16+flash", "variant mixed+flash")
    fails=$(grep -E "test_train_cuda.*(FAILED|failed)" "$OUT/tests.txt")
    [ -n "$(echo "$fails" | grep -v -E "(bf16|mixed)\+flash" | grep .)" ] && train_ok=0
    [ $tests_rc -ne 0 ] && [ -z "$fails" ] && train_ok=0  # it crashed or timed out: nothing to tell apart
    echo "$fails" | grep -q "bf16+flash" && flash_ok=0
    echo "$fails" | grep -q "mixed+flash" && mixed_ok=0
    if command -v compute-sanitizer >/dev/null; then
        (cd "$BUILD/tests" && step "compute-sanitizer memcheck [sanitize]" "$OUT/tests.txt" 120 \
            compute-sanitizer --tool memcheck --error-exitcode 3 "$TESTS" "[sanitize]" --reporter compact)
    fi
fi

# --- 3 and 4: igpt's inference and training benchmarks (SKIP_BENCH=1 skips both) --------------------------
if [ "${SKIP_BENCH:-0}" != 1 ]; then
    # --- 3. inference speed: igpt bench, iGPT-S shape ------------------------------------------------------
    for b in ${BATCHES:-1 8 32}; do
        step "igpt bench S batch $b" "$OUT/bench_igpt.txt" 90 env IGPT_CUDA_PROFILE=1 "$IGPT" bench \
            -c S --device cuda --batch "$b" --repeats 2
    done
    step "igpt bench S batch 8, layer by layer" "$OUT/bench_igpt.txt" 90 env IGPT_CUDA_FUSED=0 "$IGPT" bench \
        -c S --device cuda --batch 8 --repeats 2
    # Not the defaults yet (written without a GPU): the GEMV phases on tensor cores (IGPT_CUDA_MMA=1), the
    # prompt's keys and values read from sample 0's copy (IGPT_CUDA_SHARED_KV=1), both, proj, mproj and
    # the head split over K (IGPT_CUDA_SPLITK=auto), alone and with the shared prompt, and one-pass attention
    # (IGPT_CUDA_ONEPASS=1), alone and with the others.
    for v in "MMA 8" "MMA 1" "SHARED_KV 8" "MMA,SHARED_KV 8" "SPLITK=auto 8" "SPLITK=auto 1" \
        "SPLITK=auto,SHARED_KV 8" "ONEPASS 8" "ONEPASS 1" "MMA,SHARED_KV,ONEPASS 8" \
        "SPLITK=auto,SHARED_KV,ONEPASS 8" "SPLITK=auto,ONEPASS 1"; do
        if [ "$(left)" -lt 300 ]; then  # keep time for the trainer's benches and the training run
            note "decode variants from $v on: skipped, $(left) s of BUDGET left"
            break
        fi
        set -- $v
        envs=()
        for f in ${1//,/ }; do
            case $f in *=*) envs+=("IGPT_CUDA_$f") ;; *) envs+=("IGPT_CUDA_$f=1") ;; esac
        done
        step "igpt bench S batch $2, fused + $1" "$OUT/bench_igpt.txt" 90 env "${envs[@]}" IGPT_CUDA_PROFILE=1 \
            "$IGPT" bench -c S --device cuda --batch "$2" --repeats 2
    done
    grep -E "^(gpu|prefill|decode|complete|RESULT|fused decode profile)" "$OUT/bench_igpt.txt" | keep
    # The decode paths side by side, fastest first at each batch: which one should be the default.
    grep "^RESULT igpt device=cuda decode=" "$OUT/bench_igpt.txt" |
        sed -E 's/.*decode=([^ ]+).* batch=([0-9]+) complete_s=([0-9.]+).*/\2 \3 \1/' | sort -k1,1n -k2,2g |
        rank "decode paths at batch %s, fastest first" "%.4f s" | keep

    # --- 4. training speed: igpt train-bench, 26M and iGPT-S shapes, batch 32 ----------------------------------
    for shape in "--layers 8" ""; do
        for v in "${TRAINER_VARIANTS[@]}"; do
            set -- $v
            step "igpt train-bench S $shape batch 32, $1 GEMMs, $2 attention" "$OUT/bench_train.txt" 90 \
                env IGPT_CUDA_PROFILE=1 "$IGPT" train-bench -c S $shape -b 32 --steps 4 --warmup 2 --device cuda \
                --cuda-math $1 --cuda-attention $2
        done
    done
    grep -E "^(train bench|whole step|forward|profile|RESULT)" "$OUT/bench_train.txt" | keep
    # The trainer's variants side by side, fastest first at each size: which one should be the default.
    grep "^RESULT igpt-train device=cuda" "$OUT/bench_train.txt" |
        sed -E 's/.*math=([^ ]+) attention=([^ ]+) .*params=([0-9]+) .* tokens_per_s=([0-9]+).*/\3 \4 \1+\2/' |
        sort -k1,1n -k2,2gr |
        rank "trainer variants at %s parameters, fastest first" "%9d tokens/s" | keep

fi

# --- 5. a model trained on CIFAR-10 (JPEG copy) --------------------------------------------------------
if [ "$TRAIN_SECONDS" -gt 0 ] && [ $train_ok = 1 ] && [ -f "$DEV/cifar10-jpg.tar.gz" ]; then
    TL=$OUT/train.txt
    data=/tmp/igpt_data
    mkdir -p $data && tar xzf "$DEV/cifar10-jpg.tar.gz" -C $data
    # the variants to bench: the one asked for, or those whose tests passed
    variants=("$TRAIN_MATH $TRAIN_ATTENTION")
    if [ "$TRAIN_MATH" = auto ]; then
        variants=()
        for v in "${TRAINER_VARIANTS[@]}"; do
            [ "$v" = "bf16 flash" ] && [ $flash_ok = 0 ] && continue
            [ "$v" = "mixed auto" ] && [ $mixed_ok = 0 ] && continue
            variants+=("$v")
        done
    fi
    rate=0
    for v in "${variants[@]}"; do
        set -- $v
        step "train-bench $TRAIN_CONFIG batch $TRAIN_BATCH, $1 $2" "$TL" 60 "$IGPT" train-bench -c "$TRAIN_CONFIG" \
            -b "$TRAIN_BATCH" --steps 4 --warmup 2 --device cuda --cuda-math "$1" --cuda-attention "$2"
        r=$(grep -oE "^RESULT igpt-train .*tokens_per_s=[0-9]+" "$TL" | tail -1 | sed 's/.*tokens_per_s=//')
        if [ "${r:-0}" -gt "$rate" ]; then
            rate=$r
            math=$1
            attention=$2
        fi
    done
    note "training with --cuda-math ${math:-?} --cuda-attention ${attention:-?}"
    # within BUDGET: a clean stop (SIGTERM at TRAIN_SECONDS + 45), the export and the logs need ~120 s more
    if [ $(($(left) - 120)) -lt "$TRAIN_SECONDS" ]; then
        TRAIN_SECONDS=$(($(left) - 120))
        note "training shortened to $TRAIN_SECONDS s to stay within BUDGET"
    fi
fi
if [ "$TRAIN_SECONDS" -ge 30 ] && [ $train_ok = 1 ] && [ -f "$DEV/cifar10-jpg.tar.gz" ]; then
    # the step count that fits: 85% of the bench's rate (the trainer samples batches and evaluates too)
    steps=$(python3 -c "print(max(50, int($TRAIN_SECONDS * ${rate:-0} * 0.85 / ($TRAIN_BATCH * 1024))))")
    note "training $TRAIN_CONFIG for about $TRAIN_SECONDS s: ${rate:-?} tokens/s in the bench -> $steps steps of $TRAIN_BATCH"
    run=/tmp/igpt_run
    # a fresh model of TRAIN_CONFIG on tiny's palette, or TRAIN_INIT's weights continued (its shape and palette)
    model_args=(--config "$TRAIN_CONFIG" --palette assets/models/tiny.safetensors)
    [ -n "${TRAIN_INIT:-}" ] && model_args=(--init "$TRAIN_INIT")
    step "igpt train $TRAIN_CONFIG" "$TL" $((TRAIN_SECONDS + 75)) timeout -s TERM $((TRAIN_SECONDS + 45)) \
        "$IGPT" train --data $data/train --val-data $data/test "${model_args[@]}" \
        --cache-dir $data/cache --crop-scale 1 --batch "$TRAIN_BATCH" --steps "$steps" \
        --lr "$TRAIN_LR" --warmup $((steps / 20 + 20)) --eval-every $((steps / 8 + 1)) --eval-images 256 \
        --final-eval-images 1000 --ckpt-every 200 --device cuda --cuda-math "${math:-bf16}" --cuda-attention "${attention:-gemm}" --seed 1 --out $run
    step "export f16" "$TL" 60 "$IGPT" export $run "$OUT/$TRAIN_CONFIG-cuda.safetensors" --dtype f16
    { echo "== metrics.jsonl"; cat $run/metrics.jsonl; echo "== baselines.json"; cat $run/baselines.json; } >>"$TL" 2>&1
    grep -E "^(trained|val bits|model|exported|stopped)" "$TL" | keep
    [ -f $run/metrics.jsonl ] && tail -2 $run/metrics.jsonl | keep
elif [ "$TRAIN_ASKED" -gt 0 ]; then
    note "training: skipped (training tests failed, no $DEV/cifar10-jpg.tar.gz, or under 30 s of BUDGET left)"
fi

# --- 6. the PyTorch sides ----------------------------------------------------------------------------------
if [ "${SKIP_TORCH:-0}" != 1 ] && [ "$(left)" -ge 100 ]; then
    l=$(left)
    step "torch_train_bench" "$OUT/bench_train.txt" $((l < 200 ? l - 20 : 180)) python3 \
        bench/torch_train_bench.py --igpt-results "$OUT/bench_train.txt"
    sed -n '/^Training throughput/,$p' "$OUT/bench_train.txt" | keep
fi
if [ "${SKIP_TORCH:-0}" != 1 ] && [ "$(left)" -ge 80 ]; then
    l=$(left)
    step "torch_bench" "$OUT/bench_torch.txt" $((l - 15)) python3 bench/torch_bench.py \
        --igpt-results "$OUT/bench_igpt.txt" ${TORCH_ARGS:---hf-batches 8 --static-batches 8,1}
    grep -E "^(torch|transformers|hf:|static)" "$OUT/bench_torch.txt" | keep
    sed -n '/^Complete the bottom half/,$p' "$OUT/bench_torch.txt" | keep
else
    note "PyTorch benches: skipped (SKIP_TORCH, or only $(left) s left)"
fi

# --- 7. the whole native suite (CLI tests default to --device auto = CUDA here) ---------------------------
if [ "${SKIP_TESTS:-0}" != 1 ] && [ "$(left)" -ge 60 ]; then
    (cd "$BUILD/tests" && step "tests (all)" "$OUT/tests.txt" $(($(left) - 15)) "$TESTS" --reporter compact)
    tail -3 "$OUT/tests.txt" | keep
fi
note "done in $((SECONDS - T0)) s (summary: $OUT/summary.txt)"
