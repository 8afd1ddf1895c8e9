#!/usr/bin/env bash
# Browser benchmark next to the native one, in one run: completes the bottom half of a 32x32 image with each
# shipped model (MODELS, default "tiny small") at batch 1 and 8 in headless chromium (the threaded builds on 2
# threads, with relaxed SIMD and without, and the single-threaded build), runs `igpt bench -c <model> -b B -j 2`
# natively, and prints one table a model with the ratio wasm/native.
# Then the same wasm completion under node, without a page (igpt_bench_session): the engine alone, where
# headless chromium's software WebGL takes no CPU from it; and beside it, in the same run, what a web
# developer would use instead: ONNX Runtime Web 1.30 (wasm, SIMD, threads) under node on the ONNX export of
# the same model file (bench/onnx/; scripts/install_bench_deps.sh installs what it needs).
#   scripts/bench_web.sh [threads=2]
# Builds what is missing: the web app (scripts/build_web.sh) and the native CLI (build/).
# Environment: IGPT_WEB_BUILD (default build-web), IGPT_NATIVE_BUILD (default build), MODELS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$(realpath -m "${IGPT_WEB_BUILD:-$ROOT/build-web}")"
NATIVE="$(realpath -m "${IGPT_NATIVE_BUILD:-$ROOT/build}")"
THREADS="${1:-2}"
if [ ! -f "$WEB/www/igpt_web.js" ] || [ ! -f "$WEB/www/igpt_web_st.js" ] || [ ! -f "$WEB/www/igpt_web_rs.js" ]; then
    IGPT_WEB_BUILD="$WEB" bash "$ROOT/scripts/build_web.sh"
fi
if [ ! -x "$NATIVE/tools/igpt/igpt" ]; then
    cmake -S "$ROOT" -B "$NATIVE" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$NATIVE" -j 2 --target igpt
fi
if [ ! -d "$ROOT/tests/web/node_modules/playwright-core" ]; then
    (cd "$ROOT/tests/web" && npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund >/dev/null)
fi
for model in ${MODELS:-tiny small}; do
    node "$ROOT/tests/web/bench.js" "$WEB/www" "$model" "$THREADS" "$NATIVE/tools/igpt/igpt"
done
export NODE_PATH=/usr/share/nodejs
cmake --build "$WEB" -j 2 --target igpt_bench_session >/dev/null
cmake --build "$WEB/rs" -j 2 --target igpt_bench_session >/dev/null
echo "wasm under node, no page (two runs each), SIMD128:"
node --no-experimental-fetch "$WEB/web/igpt_bench_session.js" "$ROOT/assets/models/tiny.safetensors" "$THREADS" 1 1 8 8
echo "relaxed SIMD (node 20 needs --experimental-wasm-relaxed-simd):"
node --no-experimental-fetch --experimental-wasm-relaxed-simd "$WEB/rs/web/igpt_bench_session.js" \
    "$ROOT/assets/models/tiny.safetensors" "$THREADS" 1 1 8 8
echo "ONNX Runtime Web 1.30 under node (wasm, SIMD, $THREADS threads), the same model file exported to ONNX:"
bash "$ROOT/scripts/install_bench_deps.sh"
ONNX_DIR="$(mktemp -d)"
trap 'rm -rf "$ONNX_DIR"' EXIT
/usr/bin/python3 "$ROOT/bench/onnx/export_igpt_onnx.py" "$ROOT/assets/models/tiny.safetensors" "$ONNX_DIR" >/dev/null
for b in 1 8; do
    node "$ROOT/bench/onnx/ort_bench.js" "$ONNX_DIR" --backend web --batch "$b" --threads "$THREADS" --repeats 2 |
        grep -v '^RESULT'
done
