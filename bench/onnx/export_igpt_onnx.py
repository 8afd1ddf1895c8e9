#!/usr/bin/python3
"""Export an igpt model file to ONNX (fp32) for KV-cached generation, the way a web developer would ship a
GPT-2-style decoder to ONNX Runtime: the Hugging Face / optimum "past_key_values / present" pattern, and a
decode step over a preallocated cache (faster from JavaScript):

  prefill.onnx   pixels (B, n) int64: the kept pixels; the graph puts the start-of-sequence vector in front,
                 so it runs n + 1 positions 0..n
                 -> logits (B, V) of the last position,
                    present.{l}.key, present.{l}.value (B, H, n + 1, hd) for l = 0..L-1
  decode.onnx    pixel (B, 1) int64: one pixel per sequence, at position P = the past length,
                 past_key_values.{l}.key, past_key_values.{l}.value (B, H, P, hd)
                 -> logits (B, V), present.{l}.key, present.{l}.value (B, H, P + 1, hd)
                 (the past and this position: the present of one step is fed as the past of the next)
  decode_static.onnx
                 pixel (B, 1) int64, position (1,) int64 = P,
                 cache.{l}.key, cache.{l}.value (B, H, capacity, hd): a fixed-size cache the caller owns; the
                 graph attends to its positions 0..P-1 (the rest is masked; it must hold finite values) and to
                 this step's own key and value
                 -> logits (B, V), new.{l}.key, new.{l}.value (B, H, 1, hd): this step's keys and values, which
                    the caller writes into its cache at P (no per-step concatenation and no cache-sized output:
                    the fast way to run it from JavaScript; ort_bench.js --cache static, its default)

Dynamic axes: batch, prompt length, past length, cache capacity. decode.onnx takes its position from the past's
length inside the graph, so a caller only feeds the pixel and the cache. The math is that of
tests/ref/igpt_ref.py and bench/torch_cpu_bench.py (pre-norm RMS norm with gain only, fused q|k|v, quick-GELU
x*sigmoid(1.702x), no biases); the norm is written x / sqrt(mean(x^2) + eps) * g and the activation
x * sigmoid(1.702 x), the forms ONNX Runtime's graph optimiser fuses (SimplifiedLayerNormalization, QuickGelu).

Also writes reference.json: logits computed by bench/torch_cpu_bench.py's TorchIGPT (its static KV cache, fp32)
for a fixed prompt of 512 pixels: the prefill at batch 1 and one decode step at batch 2 (two different pixels,
cache copied), which ort_bench.js checks before it times anything (both decode graphs). The three export modules
are first checked in PyTorch against TorchIGPT on the same inputs (normalised error <= 1e-5).

  /usr/bin/python3 bench/onnx/export_igpt_onnx.py MODEL.safetensors OUTDIR
"""
import argparse
import json
import math
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
sys.path.insert(0, BENCH)


def die(msg):
    print("export_igpt_onnx: " + msg, file=sys.stderr)
    sys.exit(1)


import torch_cpu_bench  # noqa: E402  (first: it says what to install when numpy or torch is missing; and
                        # TorchIGPT, the reference side of the check)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

OPSET = 14
PROMPT_SEED = 11  # reference prompt
TRACE_PIXELS = 7  # trace the prefill at another length than the reference, so the dynamic axes are exercised


def norm(x, g, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


class _Core(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.C, self.L, self.H, self.hd, self.eps = m.C, m.L, m.H, m.hd, m.eps
        self.sos, self.wte, self.wpe = m.sos, m.wte, m.wpe
        self.blocks = m.blocks
        self.ln_f, self.head = m.ln_f, m.head

    def block(self, l, h, past_k, past_v, mask):
        """h: (B, n, C). past_k/past_v: (B, H, P, hd) or None. Returns h, present k, present v."""
        g1, wqkv, wproj, g2, wfc, wmp = self.blocks[l]
        B, n = h.shape[0], h.shape[1]
        qkv = F.linear(norm(h, g1, self.eps), wqkv).view(B, n, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (1.0 / math.sqrt(self.hd)), qkv[1], qkv[2]  # (B, H, n, hd)
        if past_k is not None:
            k = torch.cat([past_k, k], 2)
            v = torch.cat([past_v, v], 2)
        s = torch.matmul(q, k.transpose(-1, -2))
        if mask is not None:
            s = s + mask
        a = torch.matmul(torch.softmax(s, dim=-1), v)  # (B, H, n, hd)
        h = h + F.linear(a.transpose(1, 2).reshape(B, n, self.C), wproj)
        f = F.linear(norm(h, g2, self.eps), wfc)
        h = h + F.linear(f * torch.sigmoid(1.702 * f), wmp)
        return h, k, v

    def head_logits(self, h_last):
        return F.linear(norm(h_last, self.ln_f, self.eps), self.head)


class Prefill(_Core):
    def forward(self, pixels):
        B, n = pixels.shape[0], pixels.shape[1] + 1
        h = torch.cat([self.sos.view(1, 1, -1).expand(B, 1, self.C), self.wte[pixels]], 1) + self.wpe[:n]
        i = torch.arange(n)
        mask = torch.zeros(n, n).masked_fill(i.view(1, -1) > i.view(-1, 1), float("-inf"))  # causal
        presents = []
        for l in range(self.L):
            h, k, v = self.block(l, h, None, None, mask)
            presents += [k, v]
        return (self.head_logits(h[:, -1]), *presents)


class Decode(_Core):
    def forward(self, pixel, *past):
        pos = past[0].shape[2]
        h = self.wte[pixel] + self.wpe[pos]  # (B, 1, C)
        presents = []
        for l in range(self.L):
            h, k, v = self.block(l, h, past[2 * l], past[2 * l + 1], None)
            presents += [k, v]
        return (self.head_logits(h[:, -1]), *presents)


class DecodeStatic(_Core):
    """The decode step over a fixed-size cache the caller owns and updates: attends to cache positions
    0..position-1 (entries at or after position are ignored, but must be finite: zeros, or stale values) and
    to this step's own key and value, and returns only those (B, H, 1, hd); the caller writes them into its
    cache at `position`."""

    def forward(self, pixel, position, *cache):
        h = self.wte[pixel] + self.wpe[position]  # (B, 1, C)
        valid = torch.arange(cache[0].shape[2]) < position  # (Tcap,)
        news = []
        for l in range(self.L):
            g1, wqkv, wproj, g2, wfc, wmp = self.blocks[l]
            B = h.shape[0]
            qkv = F.linear(norm(h, g1, self.eps), wqkv).view(B, 1, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * (1.0 / math.sqrt(self.hd)), qkv[1], qkv[2]  # (B, H, 1, hd)
            kc, vc = cache[2 * l], cache[2 * l + 1]
            s_c = torch.where(valid, torch.matmul(q, kc.transpose(-1, -2)), torch.tensor(float("-inf")))
            s_n = (q * k).sum(-1, keepdim=True)  # (B, H, 1, 1)
            w = torch.softmax(torch.cat([s_c, s_n], -1), dim=-1)
            a = torch.matmul(w[..., :-1], vc) + w[..., -1:] * v
            h = h + F.linear(a.transpose(1, 2).reshape(B, 1, self.C), wproj)
            f = F.linear(norm(h, g2, self.eps), wfc)
            h = h + F.linear(f * torch.sigmoid(1.702 * f), wmp)
            news += [k, v]
        return (self.head_logits(h[:, -1]), *news)


def kv_names(prefix, L):
    return [f"{prefix}.{l}.{w}" for l in range(L) for w in ("key", "value")]


def export(m, outdir):
    L, H, hd, V = m.L, m.H, m.hd, m.cfg["vocab"]
    present = kv_names("present", L)
    past = kv_names("past_key_values", L)
    pre_path = os.path.join(outdir, "prefill.onnx")
    dec_path = os.path.join(outdir, "decode.onnx")
    st_path = os.path.join(outdir, "decode_static.onnx")
    cache_in = kv_names("cache", L)
    new_out = kv_names("new", L)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes: handled by dynamic_axes
        pixels = torch.randint(0, V, (2, TRACE_PIXELS))
        torch.onnx.export(Prefill(m), (pixels,), pre_path, opset_version=OPSET, do_constant_folding=True,
                          input_names=["pixels"], output_names=["logits"] + present,
                          dynamic_axes={"pixels": {0: "batch", 1: "prompt_pixels"}, "logits": {0: "batch"},
                                        **{p: {0: "batch", 2: "prompt_length"} for p in present}})
        P0 = TRACE_PIXELS + 1
        pixel = torch.randint(0, V, (2, 1))
        pkv = tuple(torch.randn(2, H, P0, hd) for _ in range(2 * L))
        torch.onnx.export(Decode(m), (pixel, *pkv), dec_path, opset_version=OPSET, do_constant_folding=True,
                          input_names=["pixel"] + past, output_names=["logits"] + present,
                          dynamic_axes={"pixel": {0: "batch"}, "logits": {0: "batch"},
                                        **{p: {0: "batch", 2: "past_length"} for p in past},
                                        **{p: {0: "batch", 2: "total_length"} for p in present}})
        cache = tuple(torch.randn(2, H, P0 + 3, hd) for _ in range(2 * L))
        torch.onnx.export(DecodeStatic(m), (pixel, torch.tensor([P0]), *cache), st_path, opset_version=OPSET,
                          do_constant_folding=True, input_names=["pixel", "position"] + cache_in,
                          output_names=["logits"] + new_out,
                          dynamic_axes={"pixel": {0: "batch"}, "logits": {0: "batch"},
                                        **{p: {0: "batch", 2: "capacity"} for p in cache_in},
                                        **{p: {0: "batch"} for p in new_out}})
    return pre_path, dec_path, st_path


def reference(m, path):
    """Logits from TorchIGPT (static cache, fp32): prefill of sos + 512 pixels at batch 1, one decode step at
    batch 2 with the cache copied; also the same through this file's Prefill/Decode modules in PyTorch (a check
    of the exported modules' math before ONNX)."""
    V, T = m.cfg["vocab"], m.T
    k = T // 2
    rng = np.random.default_rng(PROMPT_SEED)
    prompt = rng.integers(0, V, size=k)
    nxt = rng.integers(0, V, size=2)
    with torch.inference_mode():
        c1 = m.new_cache(1)
        pt = torch.from_numpy(prompt)
        pre = m.prefill(pt, c1)[0]
        nt = torch.from_numpy(nxt)
        dec = m.step(nt, m.fan_out(c1, k + 1, 2), k + 1)
        # the export modules, eagerly
        out = Prefill(m)(pt.view(1, -1))
        kv = [t.expand(2, -1, -1, -1) for t in out[1:]]
        dec2 = Decode(m)(nt.view(2, 1), *kv)[0]
        junk = torch.Generator().manual_seed(3)  # finite junk after position: must be ignored
        big = [torch.cat([t, 10 * torch.randn(2, m.H, T - k - 1, m.hd, generator=junk)], 2) for t in kv]
        dec3 = DecodeStatic(m)(nt.view(2, 1), torch.tensor([k + 1]), *big)[0]
        e_pre = float((out[0][0] - pre).abs().max() / pre.abs().max())
        e_dec = float((dec2 - dec).abs().max() / dec.abs().max())
        e_st = float((dec3 - dec).abs().max() / dec.abs().max())
    if not all(e <= 1e-5 for e in (e_pre, e_dec, e_st)):
        die(f"the export modules disagree with TorchIGPT: normalised errors {e_pre:.2e}, {e_dec:.2e}, {e_st:.2e}")
    ref = {
        "config": m.cfg.get("name", "?"), "vocab": V, "layers": m.L, "heads": m.H, "head_dim": m.hd,
        "width": m.C, "positions": T, "opset": OPSET,
        "prompt": [int(x) for x in prompt],
        "prefill_logits": [float(x) for x in pre.numpy()],
        "decode_pixels": [int(x) for x in nxt],
        "decode_position": k + 1,
        "decode_logits": [[float(x) for x in row] for row in dec.numpy()],
        "note": "prefill: pixels=[prompt] (sos + 512 pixels, batch 1) -> logits of position 512; decode: the "
                "prefill's cache copied to batch 2, pixel=[[p0],[p1]] at position 513 -> logits (2, V). "
                "Computed by bench/torch_cpu_bench.py's TorchIGPT in fp32.",
    }
    with open(path, "w") as f:
        json.dump(ref, f, separators=(",", ":"))
    return e_pre, e_dec, e_st


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.error = lambda msg: die(f"{msg} (usage: export_igpt_onnx.py MODEL OUTDIR)")
    ap.add_argument("model", help="igpt model file (.safetensors)")
    ap.add_argument("outdir", help="folder for prefill.onnx, decode.onnx, reference.json (created)")
    a = ap.parse_args()
    if os.path.isdir(a.model):
        die(f"{a.model}: a folder, not a model file")
    if not os.path.isfile(a.model):
        die(f"{a.model}: no such model file")
    try:
        m = torch_cpu_bench.TorchIGPT(a.model)
    except Exception as e:  # noqa: BLE001  (any malformed file: one line)
        die(f"{a.model}: not a readable igpt model file ({e})")
    try:
        os.makedirs(a.outdir, exist_ok=True)
    except OSError as e:
        die(f"{a.outdir}: cannot create the folder ({e.strerror})")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    m.cfg.setdefault("name", f"C{m.C}-L{m.L}-H{m.H}")
    try:
        pre_path, dec_path, st_path = export(m, a.outdir)
    except OSError as e:
        die(f"{a.outdir}: cannot write ({e.strerror})")
    e_pre, e_dec, e_st = reference(m, os.path.join(a.outdir, "reference.json"))
    print(f"{m.cfg['name']} (width {m.C}, {m.L} layers, {m.H} heads, vocab {m.cfg['vocab']}, {m.T} positions): "
          f"wrote {pre_path} ({os.path.getsize(pre_path) / 1e6:.1f} MB), {dec_path} "
          f"({os.path.getsize(dec_path) / 1e6:.1f} MB), {st_path} ({os.path.getsize(st_path) / 1e6:.1f} MB), "
          f"reference.json; export modules (PyTorch, before ONNX) vs TorchIGPT: normalised errors {e_pre:.1e} "
          f"(prefill), {e_dec:.1e} (decode), {e_st:.1e} (static decode)")


if __name__ == "__main__":
    main()
