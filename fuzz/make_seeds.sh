#!/usr/bin/env bash
# Seed corpora for the fuzzers, one folder per target under OUT (default build-fuzz/corpus), from real files:
# tiny models made by `igpt init` (f32, f16, int8, with biases), palettes made by `igpt palette`, CIFAR JPEGs
# (../shared/data/cifar10-jpg.tar.gz or IGPT_CIFAR_JPG=folder), the sample PNGs in assets/, plus the
# synthetic files of make_seeds.py (PNGs of every colour type and bit depth, BMP, TGA, GIF, PNM, HDR, image
# bombs, CIFAR records, a token cache, a checkpoint). Nothing here is committed; it takes a few seconds.
#
#   bash fuzz/make_seeds.sh [OUT]          IGPT=path/to/igpt to use a given binary
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-fuzz/corpus}
rm -rf "$out"
mkdir -p "$out"
python3 fuzz/make_seeds.py "$out"

# An igpt binary: $IGPT, an existing build, or a fresh Release build in build/.
igpt=${IGPT:-}
if [ -z "$igpt" ]; then
    for c in build/tools/igpt/igpt build-*/tools/igpt/igpt; do
        if [ -x "$c" ]; then igpt=$c; break; fi
    done
fi
if [ -z "$igpt" ]; then
    echo "make_seeds: building igpt in build/"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j2 --target igpt >/dev/null
    igpt=build/tools/igpt/igpt
fi

# A few CIFAR-10 JPEGs.
jpg=$out/.jpg
mkdir -p "$jpg"
if [ -n "${IGPT_CIFAR_JPG:-}" ] && [ -d "$IGPT_CIFAR_JPG" ]; then
    find "$IGPT_CIFAR_JPG" -name '*.jpg' | sort | head -n 6 | xargs -r cp -t "$jpg"
else
    tgz=${IGPT_CIFAR_TGZ:-../shared/data/cifar10-jpg.tar.gz}
    if [ -f "$tgz" ]; then
        python3 - "$tgz" "$jpg" <<'EOF'
import os, sys, tarfile
n = 0
with tarfile.open(sys.argv[1], "r|gz") as t:  # streamed: stops after the first few members
    for m in t:
        if m.isfile() and m.name.endswith(".jpg"):
            data = t.extractfile(m).read()
            open(os.path.join(sys.argv[2], "cifar%d.jpg" % n), "wb").write(data)
            n += 1
            if n == 6:
                break
EOF
    fi
fi
cp "$jpg"/*.jpg "$out/image_decode/" 2>/dev/null || true
cp assets/samples/*.png "$out/image_decode/" 2>/dev/null || true
# A truncated JPEG and a truncated PNG.
for f in "$out"/image_decode/cifar0.jpg "$out"/image_decode/house.png; do
    [ -f "$f" ] && head -c $(( $(stat -c %s "$f") / 2 )) "$f" > "${f%.*}_truncated.${f##*.}"
done

# Palettes and tiny models from the CLI (the palette is trained on whatever images are there).
imgs=("$jpg"/*.jpg)
[ -f "${imgs[0]}" ] || imgs=("$out"/image_decode/rgb8.png "$out"/image_decode/rgba8.png)
tmp=$out/.cli
mkdir -p "$tmp" "$out/model_file" "$out/palette_file"
"$igpt" palette "${imgs[@]}" -k 4 --samples 400 --size 8 -o "$tmp/pal4.safetensors" >/dev/null 2>&1
"$igpt" palette "${imgs[@]}" -k 16 --samples 400 --size 8 -o "$tmp/pal16.safetensors" >/dev/null 2>&1
small=(--width 8 --layers 1 --heads 2 --size 4)
"$igpt" init --palette "$tmp/pal4.safetensors" "${small[@]}" -o "$tmp/m_f32.safetensors" >/dev/null
"$igpt" init --palette "$tmp/pal4.safetensors" "${small[@]}" --dtype f16 -o "$tmp/m_f16.safetensors" >/dev/null
"$igpt" init --palette "$tmp/pal4.safetensors" "${small[@]}" --dtype int8 -o "$tmp/m_int8.safetensors" >/dev/null
"$igpt" init --palette "$tmp/pal16.safetensors" --width 8 --layers 2 --heads 1 --size 3 --bias \
    -o "$tmp/m_bias.safetensors" >/dev/null
cp "$tmp"/m_*.safetensors "$tmp"/pal*.safetensors "$out/model_file/"
cp "$tmp"/m_f32.safetensors "$tmp"/pal*.safetensors "$out/palette_file/"
head -c 1000 "$tmp/m_f32.safetensors" > "$out/model_file/m_truncated.safetensors"
rm -rf "$jpg" "$tmp"

for d in "$out"/*/; do
    printf "  %-16s %3d seeds, %6d bytes\n" "$(basename "$d")" "$(ls "$d" | wc -l)" "$(cat "$d"/* | wc -c)"
done
