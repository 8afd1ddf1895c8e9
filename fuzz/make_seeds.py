#!/usr/bin/env python3
"""Synthetic seed files for the fuzzers (python3 standard library only): images in every format and pixel
kind stb decodes, absurd image headers, CIFAR-10 records, a token cache and a training checkpoint.

    python3 fuzz/make_seeds.py OUT_DIR      # writes OUT_DIR/<target>/<name>
"""
import json
import os
import struct
import sys
import zlib


def png(w, h, color_type, bit_depth, rows, plte=None, trns=None, interlace=0, extra_chunks=()):
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace))
    if plte:
        out += chunk(b"PLTE", plte)
    if trns:
        out += chunk(b"tRNS", trns)
    for t, d in extra_chunks:
        out += chunk(t, d)
    out += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return out


def rows_of(w, h, bytes_per_px, f, filt=0):
    data = bytearray()
    for y in range(h):
        data.append(filt)
        for x in range(w):
            data += bytes(f(x, y, c) & 0xFF for c in range(bytes_per_px))
    return bytes(data)


def adam7_rows(w, h, bpp, f):
    # Interlaced 8-bit image: the seven passes, each its own filtered sub-image.
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    data = bytearray()
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, w, dx))
        ys = list(range(y0, h, dy))
        if not xs or not ys:
            continue
        for y in ys:
            data.append(0)
            for x in xs:
                data += bytes(f(x, y, c) & 0xFF for c in range(bpp))
    return bytes(data)


def bmp(w, h, bpp=24):
    row = ((w * bpp // 8) + 3) & ~3
    pixels = bytearray()
    for y in range(h):
        r = bytearray()
        for x in range(w):
            r += bytes(((x * 40 + y) & 0xFF, (y * 30) & 0xFF, (x * y) & 0xFF) + ((255,) if bpp == 32 else ()))
        r += b"\0" * (row - len(r))
        pixels += r
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + bytes(pixels)


def tga(w, h, rle=False):
    out = struct.pack("<BBBHHBHHHHBB", 0, 0, 10 if rle else 2, 0, 0, 0, 0, 0, w, h, 24, 0)
    if not rle:
        return out + bytes((x * 50 + y) & 0xFF for y in range(h) for x in range(w) for _ in range(3))
    body = bytearray()
    for y in range(h):
        body += bytes([0x80 | (w - 1), y * 20 & 0xFF, 100, 200])  # one run per row
    return out + bytes(body)


def gif(w, h):
    # 4-colour GIF, LZW with a clear code before every pixel run short enough that codes stay 3 bits.
    lzw_min = 2
    clear, end = 4, 5
    codes = []
    pix = [(x + y) % 4 for y in range(h) for x in range(w)]
    for i, p in enumerate(pix):
        if i % 2 == 0:
            codes.append(clear)
        codes.append(p)
    codes.append(end)
    bits, nbits, data = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += 3
        while nbits >= 8:
            data.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        data.append(bits & 0xFF)
    blocks = bytearray()
    for i in range(0, len(data), 255):
        blk = data[i:i + 255]
        blocks += bytes([len(blk)]) + blk
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF1, 0, 0)  # global table of 4 colours
    out += bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    out += b"\x21\xf9\x04\x01\x0a\x00\x02\x00"  # graphic control: transparent index 2
    out += b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + bytes([lzw_min]) + bytes(blocks) + b"\0;"
    return out


def main():
    out = sys.argv[1]
    def put(target, name, data):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        with open(os.path.join(out, target, name), "wb") as f:
            f.write(data)

    f = lambda x, y, c: x * 37 + y * 11 + c * 90
    img = "image_decode"
    put(img, "gray8.png", png(5, 3, 0, 8, rows_of(5, 3, 1, f)))
    put(img, "gray1.png", png(9, 2, 0, 1, b"\0\xaa\x80\0\x55\x00"))
    put(img, "gray16.png", png(3, 2, 0, 16, rows_of(3, 2, 2, f)))
    put(img, "graya.png", png(4, 4, 4, 8, rows_of(4, 4, 2, f, filt=1)))
    put(img, "rgb8.png", png(7, 5, 2, 8, rows_of(7, 5, 3, f, filt=2)))
    put(img, "rgb16.png", png(2, 2, 2, 16, rows_of(2, 2, 6, f, filt=3)))
    put(img, "rgba8.png", png(6, 6, 6, 8, rows_of(6, 6, 4, f, filt=4)))
    put(img, "rgba16.png", png(2, 3, 6, 16, rows_of(2, 3, 8, f)))
    put(img, "palette4.png", png(4, 2, 3, 4, b"\0\x01\x23\0\x32\x10", plte=bytes(range(48)), trns=b"\x00\x80"))
    put(img, "palette8.png", png(3, 3, 3, 8, rows_of(3, 3, 1, lambda x, y, c: x + y), plte=bytes(range(15))))
    put(img, "interlaced.png", png(9, 9, 2, 8, adam7_rows(9, 9, 3, f), interlace=1))
    put(img, "text_gamma.png", png(2, 2, 2, 8, rows_of(2, 2, 3, f), extra_chunks=[(b"tEXt", b"k\0v"), (b"gAMA", b"\0\0\xb1\x8f")]))
    # Absurd sizes: headers that promise gigapixels (image bombs) with almost no data.
    put(img, "bomb.png", png(100000, 100000, 2, 8, b"\0" * 64))
    put(img, "bomb_wide.png", png(1 << 24, 1, 0, 8, b"\0" * 16))
    put(img, "bomb.bmp", bmp(2, 2)[:18] + struct.pack("<ii", 1 << 20, 1 << 20) + bmp(2, 2)[26:])
    put(img, "rgb24.bmp", bmp(5, 3))
    put(img, "rgba32.bmp", bmp(3, 4, 32))
    put(img, "raw.tga", tga(4, 3))
    put(img, "rle.tga", tga(5, 2, rle=True))
    put(img, "p6.ppm", b"P6\n4 3\n255\n" + bytes(range(36)))
    put(img, "p5.pgm", b"P5\n# comment\n3 2\n255\n" + bytes(range(0, 240, 40)))
    put(img, "bomb.ppm", b"P6\n99999 99999\n255\n" + bytes(16))
    put(img, "anim.gif", gif(3, 2))
    put(img, "flat.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 3\n" + bytes([128, 64, 32, 129] * 6))
    put(img, "rle.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 8\n" +
        bytes([2, 2, 0, 8]) + bytes([0x80 + 8, 100, 0x80 + 8, 50, 0x80 + 8, 25, 0x80 + 8, 130]))
    put(img, "not_an_image.txt", b"hello, this is not an image\n")

    # CIFAR-10 binary: records of a label byte + 3072 pixel bytes.
    rec = lambda label, seed: bytes([label]) + bytes((i * seed + 7) & 0xFF for i in range(3072))
    put("cifar_batch", "two_records.bin", rec(3, 5) + rec(9, 11))
    put("cifar_batch", "one_record.bin", rec(0, 1))

    # Token cache: "IGPTTOK1", u64 key, i64 n, i32 h, i32 w, i32 k, i32 0, u16 tokens (n, h, w), i16 labels (n).
    n, h, w, k = 2, 4, 4, 16
    tok = b"IGPTTOK1" + struct.pack("<QqiiiI", 0x1234, n, h, w, k, 0)
    tok += struct.pack("<%dH" % (n * h * w), *[(i * 5) % k for i in range(n * h * w)]) + struct.pack("<2h", 3, -1)
    put("token_cache", "two_images.tok", tok)

    # Checkpoint: "IGPTCKP1", u64 JSON length, JSON, palette (k*3), params, adam_m, adam_v (f32 each).
    cfg = {"name": "custom", "vocab": 4, "width": 8, "layers": 1, "heads": 2, "image_h": 4, "image_w": 4,
           "mlp_mult": 4, "norm_eps": 1e-5, "bias": False}
    C, V, T, L, H = 8, 4, 16, 1, 32
    n_params = C + V * C + T * C + L * (C + 3 * C * C + C * C + C + H * C + C * H) + C + V * C
    head = json.dumps({"format": 1, "config": cfg, "options": {"batch": 2}, "step": 3, "epoch": 0, "pos": 6,
                       "wall_seconds": 1.5, "n_params": n_params, "palette_k": V}).encode()
    body = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    body += struct.pack("<%df" % (3 * n_params), *[((i % 17) - 8) * 0.01 for i in range(3 * n_params)])
    put("checkpoint_file", "tiny.ckpt", b"IGPTCKP1" + struct.pack("<Q", len(head)) + head + body)


if __name__ == "__main__":
    main()
