#!/usr/bin/env bash
# Everything one `scripts/gpu_check.sh` run on the lent GPU machine needs that the working tree lacks, in
# .cache/dev/ (git-ignored; name it in the device tool's carry list; about 27 MB, the tool's limit is 64 MiB
# with the tree):
#   devhdr.tar.xz        the header-only dependencies (scripts/pack_device_headers.sh), for a build there;
#   bin.tar.xz           igpt and igpt_tests built here for that machine (CUDA for sm_90 = H100/H200, AVX2, no
#                        AVX-512), saving the build there when they run;
#   cifar10-jpg.tar.gz   the training data, when the model-training step is wanted (DATA, default
#                        ../shared/data/cifar10-jpg.tar.gz).
#
#   bash scripts/pack_device_run.sh        # builds build-dev/ first (a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/dev
DATA=${DATA:-../shared/data/cifar10-jpg.tar.gz}
rm -rf "$dest" && mkdir -p "$dest/bin"
bash scripts/pack_device_headers.sh .cache/devhdr-pack >/dev/null
tar cJf "$dest/devhdr.tar.xz" -C .cache/devhdr-pack .
rm -rf .cache/devhdr-pack
PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGPT_WITH_CUDA=ON -DIGPT_AVX512=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DIGPT_BUILD_TESTS=ON -DIGPT_BUILD_TOOLS=ON >/dev/null
cmake --build build-dev -j "$(nproc)" --target igpt igpt_tests
strip -o "$dest/bin/igpt" build-dev/tools/igpt/igpt
strip -o "$dest/bin/igpt_tests" build-dev/tests/igpt_tests
echo "$PWD/build-dev" >"$dest/bin/build_dir"
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes)" >"$dest/bin/commit"
tar cJf "$dest/bin.tar.xz" -C "$dest" bin && rm -rf "$dest/bin"  # 20 MB -> ~5: the tool carries 64 MiB in all
if [ -f "$DATA" ]; then cp "$DATA" "$dest/"; else echo "pack_device_run: no $DATA: the training step will be skipped" >&2; fi
du -sh "$dest"/* "$dest"
