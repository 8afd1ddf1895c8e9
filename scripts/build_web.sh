#!/usr/bin/env bash
# Builds the browser app (web/) with Debian's Emscripten 3.1.6 into build-web/www, the folder serve.py
# serves. Emscripten's SDL2 port cannot be downloaded here, so SDL2 and Dear ImGui come from Debian's source
# packages (apt-get source) and SDL2 is built for wasm once into a cache outside the build tree.
#
#   scripts/build_web.sh                 # everything (first run: ~12 min for SDL2 twice, cached afterwards)
#   IGPT_WEB_JOBS=2 IGPT_WEB_BUILD=build-web IGPT_CACHE=.cache scripts/build_web.sh
#
# Needs: emscripten, ninja-build, cmake, dpkg-dev (dpkg-source), and a deb-src entry for apt (added here
# when running as root; otherwise add one by hand, see /work/shared/TOOLCHAIN.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$(realpath -m "${IGPT_CACHE:-$ROOT/.cache}")"
BUILD="$(realpath -m "${IGPT_WEB_BUILD:-$ROOT/build-web}")"
JOBS="${IGPT_WEB_JOBS:-2}"
SRC="$CACHE/debsrc"
SDL_PREFIX="$CACHE/sdl2-wasm"        # with pthreads
SDL_ST_PREFIX="$CACHE/sdl2-wasm-st"  # without (the single-threaded build)
export NODE_PATH=/usr/share/nodejs   # emcc's JS optimizer needs acorn from Debian's node modules

log() { echo "build_web: $*" >&2; }

# --- 1. Debian sources of SDL2 and Dear ImGui ----------------------------------------------------------
fetch_sources() {
    mkdir -p "$SRC"
    if ls "$SRC"/libsdl2_*.dsc >/dev/null 2>&1 && ls "$SRC"/imgui_*.dsc >/dev/null 2>&1; then return; fi
    if ! apt-get source --print-uris libsdl2 >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
            log "adding a deb-src twin of /etc/apt/sources.list.d/debian.sources"
            sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
                > /etc/apt/sources.list.d/igpt-debian-src.sources
            apt-get update -qq
        else
            log "apt has no deb-src entry; add one (Types: deb-src) and run apt-get update"; exit 1
        fi
    fi
    (cd "$SRC" && apt-get source --download-only libsdl2 imgui)
}

# Unpacks a source package (Debian patches applied) into $SRC/<name> once.
unpack() {  # unpack <package> <folder>
    local pkg="$1" dir="$SRC/$2"
    if [ -d "$dir" ]; then return; fi
    local dsc; dsc="$(ls "$SRC"/"${pkg}"_*.dsc | head -1)"
    (cd "$SRC" && dpkg-source --no-check -x "$dsc" "$dir" >/dev/null)
}

# --- 2. SDL2 for wasm, built once per variant ----------------------------------------------------------
# Two variants: with pthreads (the app's threaded build) and without (its single-threaded fallback build,
# for pages that are not cross-origin isolated): wasm objects built with and without -pthread cannot be
# linked together.
build_sdl2() {  # build_sdl2 <prefix> <threads: ON|OFF>
    local prefix="$1" threads="$2" name; name="$(basename "$1")"
    if [ -f "$prefix/.done" ]; then return; fi
    log "building SDL2 for wasm (threads $threads) into $prefix (configure takes ~4-5 minutes, once)"
    rm -rf "$CACHE/$name-build" "$prefix"
    local cflags=(); [ "$threads" = ON ] && cflags=(-DCMAKE_C_FLAGS=-pthread)
    emcmake cmake -S "$SRC/sdl2" -B "$CACHE/$name-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DSDL_PTHREADS="$threads" -DSDL_THREADS="$threads" -DSDL_TEST=OFF -DSDL_SHARED=OFF -DSDL_STATIC=ON \
        "${cflags[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" >"$CACHE/$name-configure.log" 2>&1 \
        || { log "SDL2 configure failed, see $CACHE/$name-configure.log"; exit 1; }
    cmake --build "$CACHE/$name-build" -j "$JOBS" >"$CACHE/$name-build.log" 2>&1 \
        || { log "SDL2 build failed, see $CACHE/$name-build.log"; exit 1; }
    cmake --install "$CACHE/$name-build" >/dev/null
    rm -rf "$CACHE/$name-build"
    touch "$prefix/.done"
}

fetch_sources
unpack libsdl2 sdl2
unpack imgui imgui
build_sdl2 "$SDL_PREFIX" ON
build_sdl2 "$SDL_ST_PREFIX" OFF
[ "${1:-}" = "--deps-only" ] && exit 0

# --- 3. the app: the threaded build, then the single-threaded fallback (IGPT_WASM_THREADS=OFF, its own build
# folder $BUILD/st) and the relaxed-SIMD one ($BUILD/rs) into the same www/, then the service worker stamped
# with a hash of what was built ----
emcmake cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_BUILD_TESTS=OFF \
    -DIGPT_BUILD_TOOLS=OFF -DIGPT_SDL2_PREFIX="$SDL_PREFIX" -DIGPT_IMGUI_DIR="$SRC/imgui" >/dev/null
# Only the app's targets and the logits dumper of tests/web/test_wasm_numerics.py (the wasm build of the
# trainer, the Catch2 tests and the CLI is not needed here).
cmake --build "$BUILD" -j "$JOBS" --target igpt_web igpt_web_manifest igpt_dump_logits
emcmake cmake -S "$ROOT" -B "$BUILD/st" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_BUILD_TESTS=OFF \
    -DIGPT_BUILD_TOOLS=OFF -DIGPT_WASM_THREADS=OFF -DIGPT_SDL2_PREFIX="$SDL_ST_PREFIX" \
    -DIGPT_IMGUI_DIR="$SRC/imgui" -DIGPT_WEB_WWW="$BUILD/www" >/dev/null
cmake --build "$BUILD/st" -j "$JOBS" --target igpt_web
# The threaded build again with relaxed SIMD (fused multiply-adds) for browsers that have it (Chromium 114+),
# its own build folder $BUILD/rs, with its logits dumper for tests/web/test_wasm_numerics.py
emcmake cmake -S "$ROOT" -B "$BUILD/rs" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_BUILD_TESTS=OFF \
    -DIGPT_BUILD_TOOLS=OFF -DIGPT_WASM_RELAXED=ON -DIGPT_SDL2_PREFIX="$SDL_PREFIX" \
    -DIGPT_IMGUI_DIR="$SRC/imgui" -DIGPT_WEB_WWW="$BUILD/www" >/dev/null
cmake --build "$BUILD/rs" -j "$JOBS" --target igpt_web igpt_dump_logits
python3 "$ROOT/web/tools/stamp_sw.py" "$BUILD/www"
log "done: serve with  python3 serve.py --root $BUILD/www   (then open http://127.0.0.1:8000/)"
