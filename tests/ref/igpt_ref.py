#!/usr/bin/python3
"""Independent numerical reference for the Image GPT engine (issue 2).

Pure Python + NumPy (Debian's python3-numpy), no code shared with the C++ library: it parses the
safetensors model file itself and runs the forward pass in float64, so the C++ engine's reader, writer
and CPU backend can all be checked against it.

Modes
  make-model OUT [--width 32 --layers 2 --heads 4 --image-h 8 --image-w 8 --vocab 16 --mlp-mult 4
                  --bias 0|1 --dtype f32|f16|int8 --seed N --std S]
      Writes a small random model with this script's own safetensors writer.
  dump MODEL TOKENS OUT
      TOKENS: a text file, one sequence of *input* ids per line (whitespace separated; -1 = the
      start-of-sequence vector, valid at position 0 only), all lines the same length n.
      OUT: float64 logits of every position, shape (S, n, V), in the format below.
  nll MODEL TOKENS [--pixel-bits OUT]
      TOKENS: one image per line, n_ctx palette indices. Prints the bits per pixel (mean over all
      pixels of all images, 17 significant digits); --pixel-bits writes (S, n_ctx) float64 bits.
  info MODEL
      Prints the config and the tensors.

Binary output format (little-endian): b"IGPTREF1", int32 ndim, int64 dims[ndim], float64 data.

Model math (OpenAI Image GPT):
  h = [sos, wte[x0], ..., wte[x(n-2)]] + wpe[0:n]
  L pre-norm blocks: h += attn(norm(h)); h += mlp(norm(h))
  norm(x) = x / sqrt(mean(x^2) + eps) * g        (gain only)
  causal multi-head attention, q|k|v = x W_qkv^T + b, scale 1/sqrt(head_dim), output projection
  mlp: C -> H -> C, act(x) = x * sigmoid(1.702 x)
  logits = norm(h; ln_f) head^T                  (no bias)
"""
import argparse
import json
import math
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    sys.stderr.write("igpt_ref.py: numpy is missing; install it: apt-get install python3-numpy\n")
    sys.exit(3)

MAGIC = b"IGPTREF1"
DTYPES = {"F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2), "I8": (np.dtype("i1"), 1),
          "U8": (np.dtype("u1"), 1), "F64": (np.dtype("<f8"), 8)}


class RefError(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# safetensors reading / writing (independent of the C++ implementation)
# ------------------------------------------------------------------------------------------------
def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise RefError("file shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise RefError("header length %d larger than the file" % hlen)
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, t in header.items():
        dt, size = DTYPES[t["dtype"]]
        shape = tuple(int(s) for s in t["shape"])
        b, e = t["data_offsets"]
        n = int(np.prod(shape)) if shape else 1
        if e - b != n * size or e > len(data) or b < 0:
            raise RefError("tensor %s: bad offsets" % name)
        tensors[name] = np.frombuffer(data[b:e], dtype=dt).reshape(shape)
    return meta, tensors


def write_safetensors(path, tensors, meta):
    """tensors: list of (name, dtype string, numpy array); written in the given order."""
    header = {"__metadata__": meta}
    chunks = []
    off = 0
    for name, dts, arr in tensors:
        dt, _ = DTYPES[dts]
        raw = np.ascontiguousarray(arr, dtype=dt).tobytes()
        header[name] = {"dtype": dts, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)  # pad to 8 bytes, as the safetensors spec suggests
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def param_names(cfg):
    """(name, shape, is_matrix) in the canonical order of src/weights.h."""
    C, V, T = cfg["width"], cfg["vocab"], cfg["image_h"] * cfg["image_w"]
    H = cfg["mlp_mult"] * C
    bias = bool(cfg["bias"])
    out = [("sos", (C,), False), ("wte", (V, C), True), ("wpe", (T, C), True)]
    for i in range(cfg["layers"]):
        p = "h.%d." % i
        out.append((p + "ln_1.g", (C,), False))
        out.append((p + "attn.qkv.w", (3 * C, C), True))
        if bias:
            out.append((p + "attn.qkv.b", (3 * C,), False))
        out.append((p + "attn.proj.w", (C, C), True))
        if bias:
            out.append((p + "attn.proj.b", (C,), False))
        out.append((p + "ln_2.g", (C,), False))
        out.append((p + "mlp.fc.w", (H, C), True))
        if bias:
            out.append((p + "mlp.fc.b", (H,), False))
        out.append((p + "mlp.proj.w", (C, H), True))
        if bias:
            out.append((p + "mlp.proj.b", (C,), False))
    out.append(("ln_f.g", (C,), False))
    out.append(("head.w", (V, C), True))
    return out


def load_model(path):
    meta, tensors = read_safetensors(path)
    if "igpt.config" not in meta:
        raise RefError("no igpt.config metadata")
    cfg = json.loads(meta["igpt.config"])
    cfg.setdefault("mlp_mult", 4)
    cfg.setdefault("norm_eps", 1e-5)
    cfg.setdefault("bias", False)
    P = {}
    for name, shape, _ in param_names(cfg):
        if name not in tensors:
            raise RefError("missing tensor " + name)
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise RefError("tensor %s: shape %s, expected %s" % (name, t.shape, shape))
        if t.dtype == np.dtype("i1"):
            s = tensors.get(name + ".scale")
            if s is None:
                raise RefError("int8 tensor %s without %s.scale" % (name, name))
            # value = int8 * scale[row], computed in float64 (the scale itself is stored as f32)
            P[name] = t.astype(np.float64) * s.astype(np.float64).reshape(-1, 1)
        else:
            P[name] = t.astype(np.float64)
    palette = tensors.get("palette")
    return cfg, P, palette


def rms_norm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def forward(cfg, P, inputs):
    """inputs: (n,) input ids, -1 = start-of-sequence at position 0. Returns (n, V) float64 logits."""
    C, nh, eps = cfg["width"], cfg["heads"], float(cfg["norm_eps"])
    hd = C // nh
    n = len(inputs)
    h = np.empty((n, C), dtype=np.float64)
    for p, t in enumerate(inputs):
        if t < 0:
            if p != 0:
                raise RefError("start-of-sequence at position %d" % p)
            h[p] = P["sos"]
        else:
            h[p] = P["wte"][t]
    h += P["wpe"][:n]
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    for i in range(cfg["layers"]):
        pre = "h.%d." % i
        x = rms_norm(h, P[pre + "ln_1.g"], eps)
        qkv = x @ P[pre + "attn.qkv.w"].T
        if cfg["bias"]:
            qkv = qkv + P[pre + "attn.qkv.b"]
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        att_out = np.empty((n, C), dtype=np.float64)
        for hh in range(nh):
            sl = slice(hh * hd, (hh + 1) * hd)
            s = (q[:, sl] @ k[:, sl].T) / math.sqrt(hd)
            s[mask] = -np.inf
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            a = e / e.sum(axis=1, keepdims=True)
            att_out[:, sl] = a @ v[:, sl]
        y = att_out @ P[pre + "attn.proj.w"].T
        if cfg["bias"]:
            y = y + P[pre + "attn.proj.b"]
        h = h + y
        x = rms_norm(h, P[pre + "ln_2.g"], eps)
        f = x @ P[pre + "mlp.fc.w"].T
        if cfg["bias"]:
            f = f + P[pre + "mlp.fc.b"]
        f = f * (1.0 / (1.0 + np.exp(-1.702 * f)))
        y = f @ P[pre + "mlp.proj.w"].T
        if cfg["bias"]:
            y = y + P[pre + "mlp.proj.b"]
        h = h + y
    x = rms_norm(h, P["ln_f.g"], eps)
    return x @ P["head.w"].T


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# ------------------------------------------------------------------------------------------------
# I/O helpers
# ------------------------------------------------------------------------------------------------
def read_tokens(path):
    seqs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                seqs.append([int(t) for t in line.split()])
    if not seqs:
        raise RefError("no token sequences in " + path)
    if len(set(len(s) for s in seqs)) != 1:
        raise RefError("token sequences of different lengths")
    return seqs


def write_array(path, arr):
    arr = np.ascontiguousarray(arr, dtype="<f8")
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<i", arr.ndim))
        f.write(struct.pack("<%dq" % arr.ndim, *arr.shape))
        f.write(arr.tobytes())


# ------------------------------------------------------------------------------------------------
# random model writer
# ------------------------------------------------------------------------------------------------
def quantize_int8(w):
    """Per-row symmetric int8: scale = max|row| / 127 (1 for an all-zero row), q = round(w / scale)."""
    w = w.astype(np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def make_model(args):
    cfg = {"name": "custom", "vocab": args.vocab, "width": args.width, "layers": args.layers,
           "heads": args.heads, "image_h": args.image_h, "image_w": args.image_w,
           "mlp_mult": args.mlp_mult, "norm_eps": args.norm_eps, "bias": bool(args.bias)}
    rng = np.random.default_rng(args.seed)
    tensors = []
    for name, shape, is_matrix in param_names(cfg):
        if name.endswith(".g"):
            w = 1.0 + 0.2 * rng.standard_normal(shape)          # gains near 1, not exactly 1
        elif name.endswith(".b"):
            w = 0.1 * rng.standard_normal(shape)
        elif name in ("sos", "wte", "wpe"):
            w = rng.standard_normal(shape)
        else:
            fan_in = shape[1]
            w = args.std * rng.standard_normal(shape) / math.sqrt(fan_in)
        w = w.astype(np.float32)
        if is_matrix and args.dtype == "f16":
            tensors.append((name, "F16", w.astype(np.float16)))
        elif is_matrix and args.dtype == "int8":
            q, s = quantize_int8(w)
            tensors.append((name, "I8", q))
            tensors.append((name + ".scale", "F32", s))
        else:
            tensors.append((name, "F32", w))
    pal = rng.integers(0, 256, size=(args.vocab, 3), dtype=np.uint8)
    tensors.insert(0, ("palette", "U8", pal))
    meta = {"igpt.format": "1", "igpt.config": json.dumps(cfg),
            "igpt.provenance": json.dumps({"data": "random", "command": "igpt_ref.py make-model",
                                           "steps": 0, "seed": args.seed})}
    write_safetensors(args.out, tensors, meta)


# ------------------------------------------------------------------------------------------------
def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("out")
    m.add_argument("--width", type=int, default=32)
    m.add_argument("--layers", type=int, default=2)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--image-h", type=int, default=8)
    m.add_argument("--image-w", type=int, default=8)
    m.add_argument("--vocab", type=int, default=16)
    m.add_argument("--mlp-mult", type=int, default=4)
    m.add_argument("--norm-eps", type=float, default=1e-5)
    m.add_argument("--bias", type=int, default=0)
    m.add_argument("--dtype", choices=["f32", "f16", "int8"], default="f32")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--std", type=float, default=1.0, help="matrix init std times sqrt(fan_in)")
    d = sub.add_parser("dump")
    d.add_argument("model")
    d.add_argument("tokens")
    d.add_argument("out")
    n = sub.add_parser("nll")
    n.add_argument("model")
    n.add_argument("tokens")
    n.add_argument("--pixel-bits")
    i = sub.add_parser("info")
    i.add_argument("model")
    args = ap.parse_args(argv)

    if args.mode == "make-model":
        make_model(args)
    elif args.mode == "dump":
        cfg, P, _ = load_model(args.model)
        seqs = read_tokens(args.tokens)
        out = np.stack([forward(cfg, P, s) for s in seqs])
        write_array(args.out, out)
    elif args.mode == "nll":
        cfg, P, _ = load_model(args.model)
        imgs = read_tokens(args.tokens)
        T = cfg["image_h"] * cfg["image_w"]
        bits = []
        for x in imgs:
            if len(x) != T:
                raise RefError("image of %d tokens, the model takes %d" % (len(x), T))
            lp = log_softmax(forward(cfg, P, [-1] + x[:-1]))
            bits.append(-lp[np.arange(T), x] / math.log(2.0))
        bits = np.stack(bits)
        if args.pixel_bits:
            write_array(args.pixel_bits, bits)
        print("%.17g" % bits.mean())
    elif args.mode == "info":
        meta, tensors = read_safetensors(args.model)
        for k, v in meta.items():
            print("%s: %s" % (k, v))
        for k, v in tensors.items():
            print("%-24s %-8s %s" % (k, v.dtype, list(v.shape)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RefError, ValueError, KeyError, OSError) as e:
        sys.stderr.write("igpt_ref.py: %s\n" % e)
        sys.exit(2)
