#!/usr/bin/env bash
# Copies the header-only dependencies (Eigen, stb, nlohmann/json, CLI11, Catch2, LBFGS++) from this
# machine's /usr/include into .cache/devhdr/ (real copies, no symlinks), laid out like /usr/include, for a
# machine that has a compiler but not the Debian packages — the lent GPU machine. Build there with
# -DIGPT_SYSINC_FROM=$PWD/.cache/devhdr (scripts/gpu_check.sh does). About 15 MB; .cache/ is git-ignored,
# so name .cache/devhdr in the device run's carry list.
#
#   bash scripts/pack_device_headers.sh [dest]      # default .cache/devhdr
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.cache/devhdr}
rm -rf "$dest"
mkdir -p "$dest/eigen3"
copy() {  # source under /usr/include, destination under $dest
    if [ -e "/usr/include/$1" ]; then
        cp -rL "/usr/include/$1" "$dest/$2"
    else
        echo "pack_device_headers: /usr/include/$1 missing (apt-get install the package; see scripts/install_deps.sh)" >&2
        return 1
    fi
}
copy eigen3/Eigen eigen3/Eigen
copy eigen3/unsupported eigen3/unsupported
copy stb stb
copy nlohmann nlohmann
copy CLI CLI
copy catch2 catch2
copy LBFGSpp LBFGSpp || true   # only the probe (linear classifier) uses it
copy LBFGS.h LBFGS.h || true
copy LBFGSB.h LBFGSB.h || true
echo "pack_device_headers: $(du -sh "$dest" | cut -f1) in $dest"
