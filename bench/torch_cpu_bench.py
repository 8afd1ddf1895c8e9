#!/usr/bin/python3
"""The CPU baselines of issue 2, run beside `igpt bench` in the same call: complete the bottom half of a
32x32 image (sos + 512 pixels kept, 512 pixels sampled) with PyTorch and with ONNX Runtime on the CPU, fp32,
the same model file as igpt, and print one table of the three.

The PyTorch side is what a user would write for speed (Debian's python3-torch 1.13, its BLAS OpenBLAS):
  - a hand-written decoder with a static KV cache (preallocated, written in place; one fused q|k|v product),
    under torch.inference_mode(), torch.set_num_threads(threads);
  - the prompt prefilled once at batch 1, its cache copied to the B samples (as igpt's session does), then
    511 decode steps of the B samples, each sampling its next colour with torch.multinomial.
ONNX Runtime: onnxruntime-node 1.30.0 (CPU execution provider, intra-op threads = threads, all graph
optimisations) on the model's ONNX export (bench/onnx/export_igpt_onnx.py), its decode step over a
preallocated cache that JavaScript updates in place (bench/onnx/ort_bench.js; several times faster than the
Hugging Face past/present pattern at batch 8). Its logits are checked against the PyTorch model's first.
Warm-up excluded (one short completion first); each figure is the best of --repeats runs, igpt's too
(`igpt bench --repeats`). Before timing, the PyTorch model's logits are checked against the independent
NumPy reference (tests/ref/igpt_ref.py, float64) on the same file, so both sides run the same model.

  scripts/bench_cpu.sh                    # installs python3-torch + OpenBLAS, builds igpt, runs this
  bench/torch_cpu_bench.py --igpt build/tools/igpt/igpt --configs tiny,S --batches 1,8 --json cpu.json
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, HERE)

# The anchors (2 threads, fp32, AMD EPYC Zen 3; best of PyTorch 1.13 + OpenBLAS and ONNX Runtime 1.30).
ANCHORS = {("tiny", 1): 1.07, ("tiny", 8): 3.92, ("small", 1): 4.56, ("small", 8): 16.1,
           ("base", 1): 14.3, ("base", 8): 54.0, ("S", 1): 24.1, ("S", 8): 88.3}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    print("torch_cpu_bench: " + msg, file=sys.stderr)
    sys.exit(1)


try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    die(f"{e.name} is missing: run scripts/bench_cpu.sh (it installs python3-torch and OpenBLAS), "
        "and run this with /usr/bin/python3")

import igpt_ref  # noqa: E402
from bench_util import write_json  # noqa: E402


class TorchIGPT:
    """OpenAI's Image GPT in PyTorch, fp32, read from an igpt model file (through igpt_ref's own reader)."""

    def __init__(self, path):
        cfg, P, _ = igpt_ref.load_model(path)
        if cfg["bias"]:
            die(f"{path}: projections with biases are not benched")
        self.cfg = cfg
        self.C, self.L, self.H = cfg["width"], cfg["layers"], cfg["heads"]
        self.hd = self.C // self.H
        self.T = cfg["image_h"] * cfg["image_w"]
        self.eps = float(cfg["norm_eps"])
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        self.sos, self.wte, self.wpe = t(P["sos"]), t(P["wte"]), t(P["wpe"])
        self.blocks = []
        for i in range(self.L):
            p = "h.%d." % i
            self.blocks.append(tuple(t(P[p + n]) for n in
                                     ("ln_1.g", "attn.qkv.w", "attn.proj.w", "ln_2.g", "mlp.fc.w", "mlp.proj.w")))
        self.ln_f, self.head = t(P["ln_f.g"]), t(P["head.w"])
        self.P = P  # float64, as igpt_ref read them: for check_against_reference

    def norm(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def new_cache(self, B):
        return torch.empty(self.L, 2, B, self.H, self.T, self.hd)

    def forward(self, h, cache, pos):
        """h: (B, n, C) embedded inputs at positions pos..pos+n-1; writes their keys and values into cache
        (L, 2, B, H, T, hd) and attends causally over 0..pos+n-1. Returns the logits of the last position."""
        B, n, C = h.shape
        H, hd, end = self.H, self.hd, pos + n
        scale = 1.0 / math.sqrt(hd)
        mask = None
        if n > 1:
            mask = torch.ones(n, end, dtype=torch.bool).triu(pos + 1)
        for l, (g1, wqkv, wproj, g2, wfc, wmp) in enumerate(self.blocks):
            qkv = F.linear(self.norm(h, g1), wqkv).view(B, n, 3, H, hd)
            q = qkv[:, :, 0].transpose(1, 2)
            cache[l, 0, :, :, pos:end] = qkv[:, :, 1].transpose(1, 2)
            cache[l, 1, :, :, pos:end] = qkv[:, :, 2].transpose(1, 2)
            s = torch.matmul(q, cache[l, 0, :, :, :end].transpose(-1, -2)) * scale
            if mask is not None:
                s = s.masked_fill(mask, float("-inf"))
            a = torch.matmul(torch.softmax(s, dim=-1), cache[l, 1, :, :, :end])
            h = h + F.linear(a.transpose(1, 2).reshape(B, n, C), wproj)
            f = F.linear(self.norm(h, g2), wfc)
            h = h + F.linear(f * torch.sigmoid(1.702 * f), wmp)
        return F.linear(self.norm(h[:, -1], self.ln_f), self.head)

    def prefill(self, pixels, cache):
        """One sequence: sos + pixels (LongTensor) at positions 0..len; logits (1, V) of the last."""
        n = pixels.numel()
        h = torch.cat([self.sos.view(1, 1, -1), self.wte[pixels].view(1, n, -1)], 1) + self.wpe[:n + 1]
        return self.forward(h, cache, 0)

    def step(self, tokens, cache, pos):
        """One pixel per sequence (LongTensor of B) at position pos; logits (B, V)."""
        return self.forward((self.wte[tokens] + self.wpe[pos]).view(tokens.numel(), 1, -1), cache, pos)

    def fan_out(self, cache1, n, B):
        """A batch-1 cache's first n positions copied to B sequences."""
        cache = self.new_cache(B)
        cache[:, :, :, :, :n] = cache1[:, :, :, :, :n]
        return cache

    def complete(self, prompt, B, steps=None, generator=None):
        """prompt: the kept pixels (LongTensor); returns (B, len(prompt) + sampled) tokens."""
        k = prompt.numel()
        steps = self.T - k if steps is None else steps
        cache1 = self.new_cache(1)
        logits = self.prefill(prompt, cache1).expand(B, -1)
        cache = self.fan_out(cache1, k + 1, B)
        out = torch.empty(B, k + steps, dtype=torch.long)
        out[:, :k] = prompt
        for i in range(steps):
            tok = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).view(B)
            out[:, k + i] = tok
            if i + 1 == steps:
                break
            logits = self.step(tok, cache, k + 1 + i)
        return out


def check_against_reference(m, n=24):
    """Logits of n inputs (sos + n-1 pixels), prefill and one cached decode step, against igpt_ref."""
    rng = np.random.default_rng(7)
    toks = rng.integers(0, m.cfg["vocab"], size=n - 1)
    ref = igpt_ref.forward(m.cfg, m.P, np.concatenate([[-1], toks]))
    with torch.inference_mode():
        cache = m.new_cache(1)
        tt = torch.from_numpy(toks)
        a = m.prefill(tt[:n - 2], cache)[0].double().numpy()
        b = m.step(tt[n - 2:], cache, n - 1)[0].double().numpy()
    err = max(np.abs(a - ref[n - 2]).max() / np.abs(ref[n - 2]).max(),
              np.abs(b - ref[n - 1]).max() / np.abs(ref[n - 1]).max())
    if not err <= 1e-4:
        die(f"the PyTorch model disagrees with the NumPy reference: normalised error {err:.2e} > 1e-4")
    return err


def torch_seconds(m, B, repeats):
    prompt = torch.randint(0, m.cfg["vocab"], (m.T // 2,), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        m.complete(prompt, B, steps=8, generator=g)  # warm-up: allocator, BLAS threads
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = m.complete(prompt, B, generator=g)
            best = min(best, time.perf_counter() - t0)
    if out.shape != (B, m.T) or int(out.min()) < 0 or int(out.max()) >= m.cfg["vocab"]:
        die("PyTorch completion produced a malformed result")
    return best


def igpt_seconds(igpt, path, B, threads, repeats):
    cmd = [igpt, "bench", path, "-b", str(B), "-j", str(threads), "--device", "cpu", "--repeats", str(repeats)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    mres = re.search(r"^RESULT igpt .*complete_s=([\d.]+)", r.stdout, re.M)
    if r.returncode != 0 or not mres:
        die(f"{' '.join(cmd)} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    dec = re.search(r"^decode: .*? ([\d.]+) tokens/s", r.stdout, re.M)
    return float(mres.group(1)), float(dec.group(1)) if dec else float("nan")


def ort_seconds(onnx_dir, B, threads, repeats):
    """onnxruntime-node (bench/onnx/ort_bench.js) on the model's ONNX export: complete seconds, or None."""
    cmd = ["node", os.path.join(HERE, "onnx", "ort_bench.js"), onnx_dir, "--backend", "node", "--batch", str(B),
           "--threads", str(threads), "--repeats", str(repeats)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    mres = re.search(r"^RESULT ort .*complete_s=([\d.]+)", r.stdout, re.M)
    if r.returncode != 0 or not mres:
        die(f"{' '.join(cmd)} failed (exit {r.returncode}): {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return float(mres.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--igpt", default=os.path.join(REPO, "build", "tools", "igpt", "igpt"))
    ap.add_argument("--configs", default="tiny,small,base,S")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default="")
    ap.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime (export and onnxruntime-node)")
    a = ap.parse_args()
    onnx = not a.no_onnx
    if onnx and not os.path.isdir(os.path.join(HERE, "onnx", "node_modules", "onnxruntime-node")):
        die("onnxruntime-node is not installed: run scripts/install_bench_deps.sh (or pass --no-onnx)")
    if not os.access(a.igpt, os.X_OK):
        die(f"{a.igpt}: not built (cmake --build build)")
    torch.set_num_threads(a.threads)
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    libs = open("/proc/self/maps").read()
    blas_lib = "OpenBLAS" if "openblas" in libs else ("MKL" if "mkl" in libs else "reference BLAS (slow!)")
    configs = [c for c in a.configs.split(",") if c]
    batches = [int(b) for b in a.batches.split(",") if b]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rows = []
    with tempfile.TemporaryDirectory(prefix="igpt-cpu-bench-") as tmp:
        palette = os.path.join(REPO, "assets", "models", "tiny.safetensors")
        for c in configs:
            path = os.path.join(tmp, c + ".safetensors")
            r = subprocess.run([a.igpt, "init", "-c", c, "--palette", palette, "-o", path, "--seed", "1"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                die(f"igpt init -c {c}: {r.stderr.strip()}")
            m = TorchIGPT(path)
            err = check_against_reference(m)
            log(f"{c}: PyTorch logits match the NumPy reference (normalised error {err:.1e})")
            onnx_dir = os.path.join(tmp, c + "-onnx")
            if onnx:  # the export checks itself against TorchIGPT, ort_bench.js its logits against the export's
                r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "onnx", "export_igpt_onnx.py"), path,
                                    onnx_dir], capture_output=True, text=True)
                if r.returncode != 0:
                    die(f"ONNX export of {c}: {r.stderr.strip()}")
            for B in batches:
                # interleaved, so that both sides of a row ran in the same minutes
                ig, ig_tps = igpt_seconds(a.igpt, path, B, a.threads, a.repeats)
                pt = torch_seconds(m, B, a.repeats)
                ort = ort_seconds(onnx_dir, B, a.threads, a.repeats) if onnx else None
                best = min(pt, ort) if ort else pt
                row = {"config": c, "batch": B, "igpt_s": ig, "igpt_decode_tps": ig_tps, "torch_s": pt,
                       "ort_s": ort, "speedup": best / ig, "anchor_s": ANCHORS.get((c, B))}
                log(f"{c} batch {B}: igpt {ig:.3f} s, PyTorch {pt:.3f} s, ONNX Runtime "
                    f"{'%.3f s' % ort if ort else '-'} ({best / ig:.1f}x the faster)")
                rows.append(row)
    print(f"CPU: {cpu}, {a.threads} threads; PyTorch {torch.__version__} ({blas.group(1) if blas else '?'}, "
          f"BLAS library loaded: {blas_lib}), fp32; load average {' '.join('%.1f' % x for x in os.getloadavg())}")
    print("complete the bottom half of a 32x32 image (512 kept, 512 sampled), random weights, best of "
          f"{a.repeats} after a warm-up")
    print("| config | batch | igpt (s) | PyTorch, static KV cache (s) | ONNX Runtime, static KV cache (s) | "
          "igpt speed-up vs the faster | issue's anchor (s) | speed-up vs anchor |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        anc = r["anchor_s"]
        print(f"| {r['config']} | {r['batch']} | {r['igpt_s']:.3f} | {r['torch_s']:.3f} | "
              f"{'%.3f' % r['ort_s'] if r['ort_s'] else '-'} | **{r['speedup']:.1f}x** | {anc if anc else '-'} | "
              f"{'%.1fx' % (anc / r['igpt_s']) if anc else '-'} |")
    write_json(a.json, rows)


if __name__ == "__main__":
    main()
