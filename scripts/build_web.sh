#!/usr/bin/env bash
# Builds the browser app (web/) with Debian's Emscripten 3.1.6 into build-web/www, the folder serve.py
# serves. Emscripten's SDL2 port cannot be downloaded here, so SDL2 and Dear ImGui come from Debian's source
# packages (apt-get source) and SDL2 is built for wasm once into a cache outside the build tree.
#
#   scripts/build_web.sh                 # everything (first run: ~6 min for SDL2, cached afterwards)
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
SDL_PREFIX="$CACHE/sdl2-wasm"
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

# --- 2. SDL2 for wasm, built once ------------------------------------------------------------------------
build_sdl2() {
    if [ -f "$SDL_PREFIX/.done" ]; then return; fi
    log "building SDL2 for wasm into $SDL_PREFIX (configure takes ~4-5 minutes, once)"
    rm -rf "$CACHE/sdl2-build" "$SDL_PREFIX"
    emcmake cmake -S "$SRC/sdl2" -B "$CACHE/sdl2-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DSDL_PTHREADS=ON -DSDL_THREADS=ON -DSDL_TEST=OFF -DSDL_SHARED=OFF -DSDL_STATIC=ON \
        -DCMAKE_C_FLAGS=-pthread -DCMAKE_INSTALL_PREFIX="$SDL_PREFIX" >"$CACHE/sdl2-configure.log" 2>&1 \
        || { log "SDL2 configure failed, see $CACHE/sdl2-configure.log"; exit 1; }
    cmake --build "$CACHE/sdl2-build" -j "$JOBS" >"$CACHE/sdl2-build.log" 2>&1 \
        || { log "SDL2 build failed, see $CACHE/sdl2-build.log"; exit 1; }
    cmake --install "$CACHE/sdl2-build" >/dev/null
    rm -rf "$CACHE/sdl2-build"
    touch "$SDL_PREFIX/.done"
}

fetch_sources
unpack libsdl2 sdl2
unpack imgui imgui
build_sdl2
[ "${1:-}" = "--deps-only" ] && exit 0

# --- 3. the app ------------------------------------------------------------------------------------------
emcmake cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_BUILD_TESTS=OFF \
    -DIGPT_BUILD_TOOLS=OFF -DIGPT_SDL2_PREFIX="$SDL_PREFIX" -DIGPT_IMGUI_DIR="$SRC/imgui" >/dev/null
# Only the app's targets (the wasm build of the trainer, tests and tools is not needed here).
cmake --build "$BUILD" -j "$JOBS" --target igpt_web igpt_web_manifest
log "done: serve with  python3 serve.py --root $BUILD/www   (then open http://127.0.0.1:8000/)"
