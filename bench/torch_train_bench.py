#!/usr/bin/env python3
"""PyTorch anchors for `igpt train-bench --device cuda` (issue 6): training throughput (tokens/s) of the igpt
model (RMS norm with gain, fused qkv, quick-GELU MLP, untied head, learned sos; no biases) on random 32x32
images of 512 colours, batch 32 x 1024 tokens, bf16 autocast, scaled_dot_product_attention (flash), fused
AdamW, on one GPU: eager, then torch.compile. Shapes: iGPT-S (512 wide, 24 layers, 8 heads) and a 26M model
(512 wide, 8 layers, 8 heads). Warm-up (and compilation) excluded; each figure is the mean over --steps.
Rows from `igpt train-bench` (lines starting "RESULT igpt-train") join the table with --igpt-results.

  python3 bench/torch_train_bench.py --igpt-results igpt_train.txt --json torch_train.json

Written where PyTorch is not installed: only syntax-checked there (py_compile), not run.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

from bench_util import read_results, write_json

T, V = 1024, 512
SHAPES = {"S": (512, 24, 8), "26M": (512, 8, 8)}


def log(msg):
    print(msg, flush=True)


class Block(torch.nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln1 = torch.nn.Parameter(torch.ones(C))
        self.ln2 = torch.nn.Parameter(torch.ones(C))
        self.qkv = torch.nn.Linear(C, 3 * C, bias=False)
        self.proj = torch.nn.Linear(C, C, bias=False)
        self.fc = torch.nn.Linear(C, 4 * C, bias=False)
        self.mproj = torch.nn.Linear(4 * C, C, bias=False)

    @staticmethod
    def norm(x, g):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(x.dtype) * g

    def forward(self, x):
        B, n, C = x.shape
        q, k, v = self.qkv(self.norm(x, self.ln1)).split(C, dim=-1)
        q, k, v = (t.view(B, n, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(o.transpose(1, 2).reshape(B, n, C))
        h = self.fc(self.norm(x, self.ln2))
        return x + self.mproj(h * torch.sigmoid(1.702 * h))


class IGPT(torch.nn.Module):
    def __init__(self, C, L, NH):
        super().__init__()
        self.sos = torch.nn.Parameter(torch.randn(C) * 0.02)
        self.wte = torch.nn.Parameter(torch.randn(V, C) * 0.02)
        self.wpe = torch.nn.Parameter(torch.randn(T, C) * 0.02)
        self.blocks = torch.nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.lnf = torch.nn.Parameter(torch.ones(C))
        self.head = torch.nn.Linear(C, V, bias=False)

    def forward(self, tok):  # tok (B, T): targets; inputs shifted right behind sos
        B = tok.shape[0]
        x = torch.cat([self.sos.expand(B, 1, -1), self.wte[tok[:, :-1]]], dim=1) + self.wpe
        for b in self.blocks:
            x = b(x)
        logits = self.head(Block.norm(x, self.lnf))
        return F.cross_entropy(logits.float().view(-1, V), tok.view(-1))


def bench(name, compiled, batch, steps, warmup):
    C, L, NH = SHAPES[name]
    torch.manual_seed(0)
    model = IGPT(C, L, NH).cuda()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

    def step(tok):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model_fn(tok)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    model_fn = torch.compile(model) if compiled else model
    tok = torch.randint(0, V, (batch, T), device="cuda")
    t0 = time.perf_counter()
    for _ in range(warmup):
        step(tok)
    torch.cuda.synchronize()
    log(f"{name} {'compile' if compiled else 'eager'}: warm-up {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    for _ in range(steps):
        step(tok)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tps = batch * T / dt
    log(f"{name} {'compile' if compiled else 'eager'}: {n_params / 1e6:.1f}M parameters, {dt * 1e3:.1f} ms/step, "
        f"{tps:,.0f} tokens/s")
    del model, opt, model_fn
    torch.cuda.empty_cache()
    return {"impl": f"PyTorch {'torch.compile' if compiled else 'eager'} (bf16 autocast, SDPA, fused AdamW)",
            "shape": name, "params": n_params, "batch": batch, "tokens_per_s": tps}


def igpt_rows(path):
    return [{"impl": f"igpt {kv.get('device')} ({kv.get('math')} GEMMs, {kv.get('attention', 'gemm')} attention, "
                     f"fp32 weights, device AdamW)",
             "shape": kv.get("config"), "params": int(kv.get("params", 0)), "batch": int(kv["batch"]),
             "tokens_per_s": float(kv["tokens_per_s"])}
            for kv in read_results(path, "RESULT igpt-train", log)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="26M,S")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--igpt-results")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        log("torch_train_bench: no CUDA device")
        return 1
    log(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for name in [s for s in a.shapes.split(",") if s]:
        for compiled in ([False] if a.skip_compile else [False, True]):
            try:
                rows.append(bench(name, compiled, a.batch, a.steps, a.warmup))
            except Exception as e:  # keep the other rows
                log(f"{name} {'compile' if compiled else 'eager'} failed ({type(e).__name__}: {e})")
    rows = igpt_rows(a.igpt_results) + rows
    log("")
    log(f"Training throughput, batch {a.batch} x {T} tokens:")
    log(f"| {'implementation':<58} | shape | parameters | tokens/s |")
    log(f"|{'-' * 60}|-------|------------|----------|")
    for r in sorted(rows, key=lambda r: (r["params"], -r["tokens_per_s"])):
        log(f"| {r['impl']:<58} | {r['shape']:>5} | {r['params'] / 1e6:>9.1f}M | {r['tokens_per_s']:>8,.0f} |")
    write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
