#!/usr/bin/env bash
# Installs everything the project builds and tests with, from Debian's packages (run as root on Debian 12),
# and any further packages named as arguments.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config git ca-certificates
      libeigen3-dev libstb-dev catch2 nlohmann-json3-dev libcli11-dev liblbfgspp-dev
      python3 python3-numpy
      emscripten wabt chromium dpkg-dev
      clang libclang-rt-14-dev)
pkgs+=("$@")  # more, for a caller that needs them (scripts/install_bench_deps.sh)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js with npm (for the browser tests): the machine image may bring its own (NodeSource's nodejs
# includes npm and conflicts with Debian's npm package), so only ask apt when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "dependencies: all installed"
