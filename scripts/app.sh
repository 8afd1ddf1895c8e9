#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install the dependencies, build the native igpt CLI and the
# browser app (WebAssembly), then serve the app with the shipped models at http://127.0.0.1:${PORT:-8000}/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_BUILD_TESTS=OFF >/dev/null
cmake --build build -j2 --target igpt
bash scripts/build_web.sh
echo "igpt CLI: build/tools/igpt/igpt --help"
exec python3 serve.py --root build-web/www --port "${PORT:-8000}" "$@"
