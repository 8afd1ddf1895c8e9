#!/usr/bin/env python3
"""PyTorch anchors for `igpt bench --device cuda` (issue 5): complete the bottom half of a 32x32 image
(513 inputs kept: sos + 512 pixels; 512 pixels sampled) with the iGPT-S shape (width 512, 24 layers,
8 heads, 1024 positions, 512 colours + sos), random weights, fp16, on one GPU.

  1. Hugging Face ImageGPTForCausalImageModeling.generate (dynamic KV cache), batch 1 / 8 / 32.
  2. A hand-written decoder with a static KV cache, one decode step compiled with
     torch.compile(mode="reduce-overhead") (CUDA graphs), sampling inside the step, batch 1 and 8.

Warm-up (and compilation) is excluded from every timing; each timing is the best of --repeats runs
(--hf-repeats for Hugging Face).
Prints one table; rows from `igpt bench` (lines starting "RESULT igpt") join it with --igpt-results.

  python3 bench/torch_bench.py --igpt-results igpt_results.txt --json torch.json

Written where PyTorch is not installed: it has only been syntax-checked there (py_compile), not run.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

from bench_util import read_results, write_json

WIDTH, LAYERS, HEADS, N_CTX, COLOURS = 512, 24, 8, 1024, 512
KEPT = 512  # pixels kept; the input is sos + these


def log(msg):
    print(msg, flush=True)


def timed(fn, repeats):
    best = math.inf
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


# --- 1. Hugging Face ImageGPT ------------------------------------------------------------------------
def hf_model():
    from transformers import ImageGPTConfig, ImageGPTForCausalImageModeling

    cfg = ImageGPTConfig(vocab_size=COLOURS + 1, n_positions=N_CTX, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS,
                         activation_function="quick_gelu")
    model = None
    for attn in ("sdpa", "eager"):
        try:
            model = ImageGPTForCausalImageModeling._from_config(cfg, attn_implementation=attn).half()
            log(f"hf: ImageGPT with attn_implementation={attn}")
            break
        except Exception as e:  # older/newer versions differ in what they accept
            log(f"hf: attn_implementation={attn} not available ({type(e).__name__}: {e})")
    if model is None:
        model = ImageGPTForCausalImageModeling(cfg).half()
    return model.cuda().eval()


def bench_hf(batches, repeats):
    rows = []
    try:
        model = hf_model()
    except Exception as e:
        log(f"hf: skipped ({type(e).__name__}: {e})")
        return rows
    sos = COLOURS
    for b in batches:
        g = torch.Generator(device="cuda").manual_seed(1)
        prompt = torch.randint(0, COLOURS, (1, KEPT), device="cuda", generator=g)
        ids = torch.cat([torch.full((1, 1), sos, device="cuda", dtype=torch.long), prompt], dim=1).repeat(b, 1)
        kwargs = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, use_cache=True, pad_token_id=sos)

        def run(n_new):
            with torch.inference_mode():
                return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, **kwargs)

        try:
            try:
                run(16)  # warm-up
            except Exception as e:  # a transformers version that refuses some of the options: its defaults
                log(f"hf: generate options refused ({type(e).__name__}: {e}); using do_sample=True only")
                kwargs = dict(do_sample=True, use_cache=True, pad_token_id=sos)
                run(16)
            outs = []
            t = timed(lambda: outs.append(run(N_CTX - KEPT)), repeats)
            if outs[-1].shape[1] != 1 + N_CTX:
                log(f"hf: batch {b}: generated {outs[-1].shape[1] - ids.shape[1]} tokens, expected {N_CTX - KEPT}")
        except Exception as e:
            log(f"hf: batch {b} failed ({type(e).__name__}: {e})")
            continue
        steps = N_CTX - KEPT
        rows.append({"impl": "HF ImageGPT generate (fp16, KV cache)", "batch": b, "complete_s": t,
                     "step_ms": 1e3 * t / steps})
        log(f"hf: batch {b}: {t:.3f} s, {1e3 * t / steps:.2f} ms/token")
    del model
    torch.cuda.empty_cache()
    return rows


# --- 2. Static KV cache + torch.compile --------------------------------------------------------------
class StaticDecoder(torch.nn.Module):
    """The igpt model (RMS norm with gain, fused qkv, quick-GELU MLP, untied head, learned sos) with a
    static KV cache (layers, batch, heads, n_ctx, head_dim) held as buffers, gpt-fast style."""

    def __init__(self, batch, dtype=torch.float16):
        super().__init__()
        C, L, V, T = WIDTH, LAYERS, COLOURS, N_CTX
        self.D = C // HEADS

        def w(*shape, std=0.02):
            return torch.nn.Parameter(torch.randn(*shape, dtype=torch.float32).mul_(std).to(dtype), requires_grad=False)

        self.sos = w(C)
        self.wte = w(V, C)
        self.wpe = w(T, C)
        self.ln1 = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(C, dtype=dtype), requires_grad=False) for _ in range(L)])
        self.ln2 = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(C, dtype=dtype), requires_grad=False) for _ in range(L)])
        self.qkv = torch.nn.ParameterList([w(3 * C, C) for _ in range(L)])
        self.proj = torch.nn.ParameterList([w(C, C, std=0.02 / math.sqrt(2 * L)) for _ in range(L)])
        self.fc = torch.nn.ParameterList([w(4 * C, C) for _ in range(L)])
        self.mproj = torch.nn.ParameterList([w(C, 4 * C, std=0.02 / math.sqrt(2 * L)) for _ in range(L)])
        self.lnf = torch.nn.Parameter(torch.ones(C, dtype=dtype), requires_grad=False)
        self.head = w(V, C)
        self.register_buffer("k_cache", torch.zeros(L, batch, HEADS, T, self.D, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(L, batch, HEADS, T, self.D, dtype=dtype))
        self.register_buffer("causal", torch.tril(torch.ones(T, T, dtype=torch.bool)))

    @staticmethod
    def norm(x, g):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * g

    def embed(self, tokens, pos):  # tokens (B, n) with -1 = sos; pos (n,) positions
        e = self.wte[tokens.clamp(min=0)]
        e = torch.where((tokens < 0).unsqueeze(-1), self.sos.expand_as(e), e)
        return e + self.wpe[pos]

    def forward(self, tokens, pos):
        """tokens (B, n), pos (n,) long on the device: writes the cache at pos, returns logits (B, V) of the
        last position. n = 1 is the decode step; n > 1 from position 0 is the prefill."""
        B, n = tokens.shape
        C, D = WIDTH, self.D
        x = self.embed(tokens, pos)
        mask = self.causal[pos].view(1, 1, n, N_CTX)  # query at p sees keys 0..p
        for l in range(LAYERS):
            h = self.norm(x, self.ln1[l])
            q, k, v = (h @ self.qkv[l].t()).split(C, dim=-1)
            q, k, v = (t.view(B, n, HEADS, D).transpose(1, 2) for t in (q, k, v))
            kc, vc = self.k_cache[l], self.v_cache[l]
            kc[:, :, pos] = k
            vc[:, :, pos] = v
            o = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask)
            x = x + o.transpose(1, 2).reshape(B, n, C) @ self.proj[l].t()
            f = self.norm(x, self.ln2[l]) @ self.fc[l].t()
            x = x + (f * torch.sigmoid(1.702 * f)) @ self.mproj[l].t()
        x = self.norm(x[:, -1], self.lnf)
        return (x @ self.head.t()).float()


def sample(logits):  # temperature 1, no truncation; exponential-race trick (no host sync)
    probs = torch.softmax(logits, dim=-1)
    return torch.argmax(probs / torch.empty_like(probs).exponential_(1), dim=-1)


def bench_static(batches, repeats):
    rows = []
    for b in batches:
        try:
            torch.manual_seed(0)
            model = StaticDecoder(b).cuda().eval()

            def step(tok, pos):
                return sample(model(tok.view(-1, 1), pos))

            step_c = torch.compile(step, mode="reduce-overhead", fullgraph=True)
            prompt = torch.randint(0, COLOURS, (1, KEPT), device="cuda")
            inputs = torch.cat([torch.full((1, 1), -1, device="cuda", dtype=torch.long), prompt], 1).repeat(b, 1)
            pre_pos = torch.arange(KEPT + 1, device="cuda")
            out = torch.empty(b, N_CTX, dtype=torch.long, device="cuda")

            def complete():
                with torch.no_grad():
                    tok = sample(model(inputs, pre_pos))  # eager prefill of the kept half
                    out[:, KEPT] = tok
                    pos = torch.tensor([KEPT + 1], device="cuda")
                    for p in range(KEPT + 1, N_CTX):
                        torch.compiler.cudagraph_mark_step_begin()
                        tok = step_c(tok, pos).clone()
                        out[:, p] = tok
                        pos += 1

            t0 = time.perf_counter()
            complete()  # warm-up: compiles and records the graphs
            torch.cuda.synchronize()
            log(f"static+compile: batch {b}: warm-up (compile) {time.perf_counter() - t0:.1f} s")
            t = timed(complete, repeats)
            steps = N_CTX - KEPT
            rows.append({"impl": "PyTorch static KV + torch.compile reduce-overhead (fp16)", "batch": b,
                         "complete_s": t, "step_ms": 1e3 * t / steps})
            log(f"static+compile: batch {b}: {t:.3f} s, {1e3 * t / steps:.3f} ms/token")
            del model, step_c
            torch.cuda.empty_cache()
        except Exception as e:
            log(f"static+compile: batch {b} failed ({type(e).__name__}: {e})")
    return rows


def igpt_rows(path):
    rows = []
    for kv in read_results(path, "RESULT igpt", log):
        decode = kv.get("decode", "").split("+")
        path_name = {"fused": "one fused kernel per step", "layered": "layer-by-layer kernels"}.get(decode[0], "")
        path_name += "".join({"mma": ", tensor-core GEMVs", "shared": ", prompt KV read once"}.get(o, "")
                             for o in decode[1:])
        row = {"impl": f"igpt {kv.get('device', '?')} ({path_name}, graph, device sampling)",
               "batch": int(kv["batch"]), "complete_s": float(kv["complete_s"])}
        if "step_ms" in kv:
            row["step_ms"] = float(kv["step_ms"])
        if "ideal_ms" in kv:
            row["ideal_ms"] = float(kv["ideal_ms"])
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf-batches", default="1,8,32")
    ap.add_argument("--static-batches", default="8,1")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of the static decoder (best is kept)")
    ap.add_argument("--hf-repeats", type=int, default=1, help="timed runs of HF generate (slow: seconds each)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-static", action="store_true")
    ap.add_argument("--igpt-results", help="file with `igpt bench` output (RESULT lines)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        log("torch_bench: no CUDA device")
        return 1
    log(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    try:
        import transformers

        log(f"transformers {transformers.__version__}")
    except Exception:
        pass
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = True
    rows = []
    if not a.skip_hf:
        rows += bench_hf([int(x) for x in a.hf_batches.split(",") if x], a.hf_repeats)
    if not a.skip_static:
        rows += bench_static([int(x) for x in a.static_batches.split(",") if x], a.repeats)
    rows = igpt_rows(a.igpt_results) + rows

    log("")
    log("Complete the bottom half of a 32x32 image, iGPT-S shape (512 wide, 24 layers, 8 heads), random weights:")
    log(f"| {'implementation':<62} | batch | seconds | ms per step |")
    log(f"|{'-' * 64}|-------|---------|-------------|")
    for r in sorted(rows, key=lambda r: (r["batch"], r["complete_s"])):
        step = f"{r['step_ms']:.3f}" if "step_ms" in r else "-"
        log(f"| {r['impl']:<62} | {r['batch']:>5} | {r['complete_s']:>7.3f} | {step:>11} |")
    write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
