#!/usr/bin/env python3
"""Draws the browser app's sample images (the project's own, procedurally generated; no third-party
pictures) into assets/samples/*.png and writes assets/samples/index.json. Python standard library only.

    python3 scripts/make_samples.py
"""
import json
import math
import os
import struct
import zlib

SIZE = 192
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'assets', 'samples')


def write_png(path, w, h, pixel):
    rows = bytearray()
    for y in range(h):
        rows.append(0)
        for x in range(w):
            r, g, b = pixel(x / w, y / h)
            rows += bytes((max(0, min(255, int(r))), max(0, min(255, int(g))), max(0, min(255, int(b)))))

    def chunk(tag, data):
        c = tag + data
        return struct.pack('>I', len(data)) + c + struct.pack('>I', zlib.crc32(c) & 0xffffffff)
    png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
    png += chunk(b'IDAT', zlib.compress(bytes(rows), 9)) + chunk(b'IEND', b'')
    with open(path, 'wb') as f:
        f.write(png)


def mix(a, b, t):
    t = max(0.0, min(1.0, t))
    return tuple(a[i] + (b[i] - a[i]) * t for i in range(3))


def sunset(x, y):
    horizon = 0.62
    if y < horizon:
        sky = mix((250, 190, 90), (70, 40, 110), (horizon - y) / horizon)
        d = math.hypot(x - 0.5, y - 0.5)
        return mix((255, 240, 180), sky, (d - 0.12) / 0.02) if d < 0.14 else sky
    sea = mix((40, 50, 100), (10, 20, 50), (y - horizon) / (1 - horizon))
    if abs(x - 0.5) < 0.12 * (1 - (y - horizon)) and int(y * 90) % 3 == 0:
        return (250, 200, 120)
    return sea


def mountains(x, y):
    far = 0.45 + 0.08 * math.sin(x * 9.0) + 0.05 * math.sin(x * 23.0 + 1.0)
    near = 0.62 + 0.10 * math.sin(x * 5.0 + 2.0) + 0.03 * math.sin(x * 31.0)
    if y > near:
        return mix((60, 110, 60), (30, 70, 35), (y - near) * 3)
    if y > far:
        return (240, 240, 250) if y < far + 0.04 else (90, 100, 130)
    return mix((170, 210, 245), (60, 120, 210), 1 - y / far)


def ball(x, y):
    if y > 0.55:
        depth = (y - 0.55) / 0.45
        u = (x - 0.5) / (0.2 + depth) * 4
        v = 1.0 / (0.05 + depth) * 0.5
        base = (230, 230, 230) if (math.floor(u) + math.floor(v)) % 2 == 0 else (60, 60, 70)
        shadow = math.hypot((x - 0.5) * 1.5, (y - 0.78) * 4)
        return mix(base, (20, 20, 25), 0.7 * (1 - shadow)) if shadow < 1 else base
    else:
        base = mix((200, 220, 240), (120, 150, 200), y / 0.55)
    dx, dy = x - 0.5, y - 0.45
    d = math.hypot(dx, dy)
    if d < 0.25:
        nz = math.sqrt(max(0.0, 1 - (d / 0.25) ** 2))
        light = max(0.0, (-dx * 0.5 - dy * 0.6) / 0.25 + nz * 0.6)
        return mix((120, 10, 20), (255, 90, 80), light)
    return base


def flower(x, y):
    dx, dy = x - 0.5, y - 0.5
    r, a = math.hypot(dx, dy), math.atan2(dy, dx)
    if r < 0.09:
        return mix((250, 200, 40), (160, 90, 20), r / 0.09)
    petal = 0.36 * abs(math.cos(2.5 * a))
    if r < petal:
        return mix((250, 120, 190), (180, 40, 120), r / max(petal, 1e-6))
    return mix((60, 140, 70), (20, 70, 40), y)


def rainbow(x, y):
    if y > 0.8:
        return (70, 150, 60) if int(x * 40 + y * 10) % 2 else (60, 135, 55)
    d = math.hypot(x - 0.5, (y - 0.85) * 1.1)
    bands = [(230, 50, 50), (240, 140, 40), (240, 220, 60), (70, 180, 80), (60, 110, 220), (120, 70, 180)]
    i = int((0.48 - d) / 0.035)
    if 0 <= i < len(bands):
        return bands[i]
    return mix((200, 225, 250), (110, 160, 230), 1 - y)


def house(x, y):
    if y > 0.78:
        return (90, 160, 70)
    if 0.25 < x < 0.7 and 0.5 < y <= 0.78:
        if 0.42 < x < 0.52 and y > 0.62:
            return (110, 60, 30)
        if (0.3 < x < 0.4 or 0.56 < x < 0.66) and 0.56 < y < 0.66:
            return (250, 230, 140)
        return (225, 200, 160)
    if 0.2 < x < 0.75 and 0.3 < y <= 0.5 and abs(x - 0.475) < (y - 0.3) * 1.4:
        return (170, 50, 40)
    if 0.8 < x < 0.84 and 0.55 < y <= 0.78:
        return (100, 70, 40)
    if math.hypot(x - 0.82, y - 0.5) < 0.1:
        return (40, 120, 50)
    return mix((150, 200, 250), (240, 245, 255), y)


SAMPLES = [('sunset.png', sunset), ('mountains.png', mountains), ('ball.png', ball), ('flower.png', flower),
           ('rainbow.png', rainbow), ('house.png', house)]

if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    for name, fn in SAMPLES:
        write_png(os.path.join(OUT, name), SIZE, SIZE, fn)
    with open(os.path.join(OUT, 'index.json'), 'w') as f:
        json.dump({'samples': [n for n, _ in SAMPLES],
                   'license': 'drawn procedurally by scripts/make_samples.py; part of this project'}, f, indent=2)
        f.write('\n')
    print('make_samples: wrote', len(SAMPLES), 'images to', os.path.normpath(OUT))
