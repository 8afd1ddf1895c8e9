#!/usr/bin/python3
"""The browser build's numerics against the independent reference (tests/ref/igpt_ref.py, NumPy float64).

The CPU backend compiled to WebAssembly has kernels of its own (wasm SIMD matmul, attention and exp:
src/cpu/matmul_wasm.cpp), which the native Catch2 suite never runs. igpt_dump_logits (web/tools/
dump_logits.cpp, built by scripts/build_web.sh) runs that backend under node on 2 threads, through the
prefill path (all positions at once) and the decode path (a shared prompt fanned out, then one position at
a time for 8 sequences); every logit must match the reference within the native suite's tolerance:
|got - want| <= 1e-4 * max(|want|, rms(want)). Twice: the plain SIMD128 build, and the relaxed-SIMD build
(build-web/rs, its multiply-adds f32x4.relaxed_madd, node run with --experimental-wasm-relaxed-simd), whose
file must hold the final opcode (0xfd 0x85 0x02; web/tools/wasm_relaxed.py) and none of clang 14's prototype
(wabt's wasm-objdump, which stops at an opcode it does not know, disassembles it whole).

    tests/web/test_wasm_numerics.py [web build folder, default build-web]

Prints "wasm-numerics: N passed, M failed" last (tests/web/run.sh counts it); exit status 1 on a failure.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("FAIL numpy is missing for %s: apt-get install python3-numpy" % sys.executable)
    print("wasm-numerics: 0 passed, 1 failed")
    sys.exit(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(ROOT, "tests", "ref", "igpt_ref.py")
REL = 1e-4

# (name, make-model arguments or a shipped model, sequences, shared prompt length)
VARIANTS = [
    ("head dim 32, biases, f32", ["--width", "64", "--heads", "2", "--bias", "1", "--seed", "11"], 8, 24),
    ("head dim 48, f16", ["--width", "48", "--heads", "1", "--dtype", "f16", "--seed", "12"], 8, 24),
    ("head dim 8, int8", ["--width", "32", "--heads", "4", "--dtype", "int8", "--seed", "13"], 8, 24),
    ("shipped tiny model (32x32, 1024 positions)", os.path.join(ROOT, "assets", "models", "tiny.safetensors"), 2, 512),
]


def read_array(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"IGPTREF1":
        raise ValueError("%s: not an IGPTREF1 array" % path)
    (ndim,) = struct.unpack_from("<i", data, 8)
    dims = struct.unpack_from("<%dq" % ndim, data, 12)
    return np.frombuffer(data, dtype="<f8", offset=12 + 8 * ndim).reshape(dims)


def model_shape(path):
    out = subprocess.run([sys.executable, REF, "info", path], check=True, capture_output=True, text=True).stdout
    cfg = next(json.loads(line.split(":", 1)[1]) for line in out.splitlines() if line.startswith("igpt.config:"))
    return cfg["vocab"], cfg["image_h"] * cfg["image_w"]


def worst_error(got, want):
    rms = float(np.sqrt(np.mean(want * want)))
    scale = np.maximum(np.abs(want), rms)
    return float(np.max(np.abs(got - want) / scale))


def relaxed_opcodes(path):
    """(f32x4.relaxed_madd instructions, whether wabt's disassembler decoded the whole module): wasm-objdump
    knows the final relaxed-SIMD opcodes and stops, exit status 1, at clang 14's prototype one."""
    run = subprocess.run(["wasm-objdump", "-d", path], capture_output=True, text=True)
    return run.stdout.count("f32x4.relaxed_madd"), run.returncode == 0


def main(argv):
    build = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(ROOT, "build-web"))
    passed = failed = 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        print("%s %s%s" % ("ok  " if ok else "FAIL", what, ("  (" + detail + ")") if detail else ""))
        if ok:
            passed += 1
        else:
            failed += 1

    builds = [("SIMD128", os.path.join(build, "web", "igpt_dump_logits.js"), []),
              ("relaxed SIMD", os.path.join(build, "rs", "web", "igpt_dump_logits.js"),
               ["--experimental-wasm-relaxed-simd"])]
    for kind, tool, flags in builds:
        if not os.path.isfile(tool):
            check(False, "%s: igpt_dump_logits built" % kind, tool + " missing: run scripts/build_web.sh")
            continue
        if flags:
            madds, whole = relaxed_opcodes(tool[:-3] + ".wasm")
            check(madds > 0 and whole, "%s: the module's multiply-adds are final relaxed_madd" % kind,
                  "%d of them; %s" % (madds, "disassembled whole" if whole else "wasm-objdump stopped early"))
        with tempfile.TemporaryDirectory() as tmp:
            for i, (name, spec, S, k) in enumerate(VARIANTS):
                name = "%s: %s" % (kind, name)
                if isinstance(spec, str):
                    model = spec
                else:
                    model = os.path.join(tmp, "m%d.safetensors" % i)
                    subprocess.run([sys.executable, REF, "make-model", model] + spec, check=True)
                V, T = model_shape(model)
                rng = np.random.default_rng(100 + i)
                seqs = rng.integers(0, V, size=(S, T))
                seqs[:, 0] = -1  # start of sequence
                seqs[1:, :k] = seqs[0, :k]  # a shared prompt
                tokens = os.path.join(tmp, "t%d.txt" % i)
                with open(tokens, "w") as f:
                    for s in seqs:
                        f.write(" ".join(str(int(x)) for x in s) + "\n")
                want_path = os.path.join(tmp, "want%d.bin" % i)
                subprocess.run([sys.executable, REF, "dump", model, tokens, want_path], check=True)
                want = read_array(want_path)
                out = os.path.join(tmp, "got%d" % i)
                run = subprocess.run(["node", "--no-experimental-fetch"] + flags + [tool, model, tokens, out, str(k), "2"],
                                     capture_output=True, text=True, timeout=600)
                if run.returncode != 0:
                    check(False, name + ": igpt_dump_logits ran", run.stderr.strip()[-300:])
                    continue
                for path, what in ((".full.bin", "prefill, all positions"), (".cached.bin", "shared prompt + decode")):
                    got = read_array(out + path)
                    if got.shape != want.shape:
                        check(False, "%s: %s" % (name, what), "shape %s, want %s" % (got.shape, want.shape))
                        continue
                    err = worst_error(got, want)
                    check(err <= REL, "%s: %s" % (name, what), "worst error %.2e of the scale, limit %.0e" % (err, REL))
    print("wasm-numerics: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
