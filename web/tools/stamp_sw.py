#!/usr/bin/env python3
"""Writes <www>/sw.js from web/sw.js with VERSION = a hash of the app shell's files in <www>, so that every
build that changes the page, its scripts, its wasm or its sample images replaces the offline copy.
    python3 web/tools/stamp_sw.py build-web/www          (scripts/build_web.sh runs it last)"""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(www):
    h = hashlib.sha256()
    names = []
    for base, dirs, files in os.walk(www):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(base, f)
            rel = os.path.relpath(path, www)
            # models are cached apart (models.js); the service worker itself is what is being written
            if rel.endswith('.safetensors') or rel == 'sw.js':
                continue
            names.append(rel)
            h.update(rel.encode() + b'\0')
            with open(path, 'rb') as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    version = h.hexdigest()[:16]
    with open(os.path.join(HERE, '..', 'sw.js')) as f:
        text = f.read()
    with open(os.path.join(www, 'sw.js'), 'w') as f:
        f.write(text.replace('@IGPT_SW_VERSION@', version))
    print(f'stamp_sw: sw.js version {version} ({len(names)} files)')
    return 0


if __name__ == '__main__':
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
