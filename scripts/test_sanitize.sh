#!/usr/bin/env bash
# Sanitizer runs of the native test suite (issue 9):
#   1. AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer) over the whole Catch2 suite (build-asan).
#   2. ThreadSanitizer over the threaded tests: completion sessions, the reference/threaded inference
#      tests and the CLI tests (build-tsan).
#   3. ThreadSanitizer over CUDA kernels that tests/cuda_emu runs on the CPU (the trainer's flash attention,
#      the inference backend's attention and sampling), built so that a block's threads are OS threads: a
#      missing __syncthreads is a reported race. Small: two test files, built on their own (build-emu-tsan).
# Any report fails the run: UBSan does not recover (-fno-sanitize-recover), ASan/TSan halt on error.
# Nothing is suppressed.
#
#   bash scripts/test_sanitize.sh                # all three
#   bash scripts/test_sanitize.sh asan|tsan|emu  # one of them
# Environment: JOBS (build jobs, default 2), CXX/CC (default clang++/clang; g++ works too).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
JOBS=${JOBS:-2}
export CC=${CC:-clang} CXX=${CXX:-clang++}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

configure_build() {  # dir, extra cmake args...
    local dir=$1
    shift
    # No CUDA backend here: the sanitizers cover the host code, and the CUDA runtime is not theirs to check.
    cmake -S . -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIGPT_BUILD_TESTS=ON -DIGPT_BUILD_TOOLS=ON \
        -DIGPT_WITH_CUDA=OFF "$@" >/dev/null
    cmake --build "$dir" -j"$JOBS" --target igpt_tests igpt
}

status=0
if [ "$which" = all ] || [ "$which" = asan ]; then
    t0=$SECONDS
    configure_build build-asan -DIGPT_SANITIZE=ON -DIGPT_TSAN=OFF
    echo "== ASan+UBSan: whole Catch2 suite"
    # detect_leaks: LeakSanitizer at exit. The CLI tests run the sanitized igpt binary too (same options).
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if (cd build-asan/tests && ./igpt_tests --reporter compact); then
        echo "ASan+UBSan: PASS ($((SECONDS - t0)) s including the build)"
    else
        echo "ASan+UBSan: FAIL"
        status=1
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi
if [ "$which" = all ] || [ "$which" = tsan ]; then
    t0=$SECONDS
    configure_build build-tsan -DIGPT_TSAN=ON -DIGPT_SANITIZE=OFF
    echo "== TSan: threaded tests"
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    # Catch2 v2: tags listed one after another (comma) select the union.
    tags="[session],[reference],[cli],[hardening]"
    # Clang 14's TSan cannot map its shadow memory under high ASLR entropy on some kernels; run it without
    # address randomisation when setarch is there (it changes nothing else).
    runner=()
    command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null && runner=(setarch "$(uname -m)" -R)
    if (cd build-tsan/tests && "${runner[@]}" ./igpt_tests --reporter compact "$tags"); then
        echo "TSan: PASS ($((SECONDS - t0)) s including the build)"
    else
        echo "TSan: FAIL"
        status=1
    fi
fi
if [ "$which" = all ] || [ "$which" = emu ]; then
    t0=$SECONDS
    echo "== TSan: CUDA kernels on CPU threads (tests/cuda_emu)"
    mkdir -p build-emu-tsan
    # IGPT_CUDA_EMU_THREADS: each CUDA thread an OS thread (the default, fibers, would hide races from TSan)
    # (-fno-strict-aliasing: the kernels read 16-byte words through element pointers, as nvcc allows)
    "$CXX" -std=c++17 -O1 -g -fno-strict-aliasing -fsanitize=thread -DIGPT_CUDA_EMU -DIGPT_CUDA_EMU_THREADS \
        -Itests/cuda_emu -Isrc -Isrc/train/cuda tests/test_flash_emu.cpp tests/test_attention_emu.cpp tests/test_main.cpp \
        -x c++ src/cuda/attention_decode.cu src/cuda/attention_prefill.cu src/cuda/sampling.cu -x none \
        -o build-emu-tsan/kernels_emu_tsan -pthread
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    runner=()
    command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null && runner=(setarch "$(uname -m)" -R)
    # Catch2 v2: tags listed one after another (comma) select the union.
    if "${runner[@]}" build-emu-tsan/kernels_emu_tsan --reporter compact "[flash],[cuda_kernels]"; then
        echo "TSan (emulated CUDA kernels): PASS ($((SECONDS - t0)) s including the build)"
    else
        echo "TSan (emulated CUDA kernels): FAIL"
        status=1
    fi
fi
exit $status
