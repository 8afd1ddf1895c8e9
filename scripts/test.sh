#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test: the native Catch2 suite (CTest), then the
# browser build's tests (serve.py checks and the page in headless Chromium), then the whole native suite
# again under AddressSanitizer + UndefinedBehaviorSanitizer, then ThreadSanitizer over the CUDA kernels that
# tests/cuda_emu runs on CPU threads (the ThreadSanitizer run of the threaded tests is
# `bash scripts/test_sanitize.sh tsan`; it takes long to build, so it is not part of this command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure
bash scripts/build_web.sh
bash tests/web/run.sh
bash scripts/test_sanitize.sh asan
bash scripts/test_sanitize.sh emu
