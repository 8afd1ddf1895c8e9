#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test: the native Catch2 suite (CTest), then the
# browser build's tests (serve.py checks and the page in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure
if [ -f scripts/build_web.sh ] && [ -f tests/web/run.sh ]; then
    bash scripts/build_web.sh
    bash tests/web/run.sh
fi
