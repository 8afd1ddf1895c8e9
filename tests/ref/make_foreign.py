#!/usr/bin/python3
"""Fixtures in the layouts of OpenAI's published iGPT checkpoints, for the import tests (issue 8).

Pure Python + NumPy (Debian's python3-numpy). The real checkpoints cannot be downloaded in the test
environment, so this writes small random models with exactly the published names, layouts and file
formats, and computes their logits in float64 with each layout's *own* math (Conv1D x @ W + b and the
513-row wte for Hugging Face; the [heads, head_dim, width] einsums for OpenAI's TensorFlow code), so the
C++ importer's mapping is checked against an independent reading of the foreign layout.

Modes
  hf OUTDIR [shape] [--dtype F32|F16|BF16] [--drop NAME] [--transpose NAME] [--int-tensor NAME] [--clusters K]
                    [--tokens FILE --logits OUT]
      OUTDIR/model.safetensors (ImageGPTForCausalImageModeling names), config.json,
      preprocessor_config.json ("clusters": K x 3 in [-1, 1]).
  tf OUTDIR [shape] [--shards N] [--drop NAME] [--transpose NAME] [--clusters K] [--compressed]
                    [--tokens FILE --logits OUT]
      OUTDIR/model.ckpt-7.index (LevelDB-format table of BundleEntryProto, written here from the format
      description), model.ckpt-7.data-0000S-of-0000N, kmeans_centers.npy. Also writes distractors a
      real checkpoint has (optimizer slots, global_step). --compressed marks the index blocks as Snappy
      (type 1; contents left raw) to exercise the reader's refusal.
  hf-from-igpt MODEL OUTDIR
      Writes a project model file (via tests/ref/igpt_ref.py's reader) in the Hugging Face layout, so a
      trained model can be sent through `igpt import hf` (f32 vs int8 bits-per-pixel checks).

  shape: --width 32 --layers 2 --heads 4 --image 8 --vocab 16 --mlp-mult 4 --eps 1e-5 --seed 1
  --tokens: one input sequence per line, -1 = start of sequence at position 0 (as igpt_ref.py dump);
  --logits: float64 (S, n, vocab) in igpt_ref.py's binary format (b"IGPTREF1", int32 ndim, int64 dims).
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    sys.stderr.write("make_foreign.py: numpy is missing; install it: apt-get install python3-numpy\n")
    sys.exit(3)


# ------------------------------------------------------------------------------------------------
# shared
# ------------------------------------------------------------------------------------------------
def write_ref_array(path, a):
    a = np.ascontiguousarray(a, dtype="<f8")
    with open(path, "wb") as f:
        f.write(b"IGPTREF1")
        f.write(struct.pack("<i", a.ndim))
        f.write(struct.pack("<%dq" % a.ndim, *a.shape))
        f.write(a.tobytes())


def read_tokens(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append([int(t) for t in line.split()])
    return rows


def rms(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def softmax_causal(s):
    n = s.shape[-1]
    s = np.where(np.triu(np.ones((n, n), dtype=bool), k=1), -np.inf, s)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def quick_gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def round_to(a, dtype):
    """float64 values as they will be stored (F32 / F16 / BF16), back in float64."""
    if dtype == "F16":
        return a.astype("<f2").astype(np.float64)
    f = a.astype("<f4")
    if dtype == "BF16":
        u = f.view("<u4").astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16  # round to nearest even
        f = u.astype("<u4").view("<f4")
    return f.astype(np.float64)


def encode(a, dtype):
    if dtype == "I32":
        return np.round(a * 1000).astype("<i4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    f = a.astype("<f4")
    if dtype == "BF16":
        return (f.view("<u4") >> 16).astype("<u2").tobytes()  # exact: values were rounded by round_to
    return f.tobytes()


def random_clusters(rng, k):
    return rng.uniform(-1.0, 1.0, size=(k, 3))


# ------------------------------------------------------------------------------------------------
# Hugging Face layout
# ------------------------------------------------------------------------------------------------
def hf_weights(a, rng):
    C, L, V, T, H = a.width, a.layers, a.vocab, a.image * a.image, a.mlp_mult * a.width
    W = {}
    W["transformer.wte.weight"] = rng.normal(0, 0.5, (V + 1, C))
    W["transformer.wpe.weight"] = rng.normal(0, 0.2, (T, C))
    for i in range(L):
        p = "transformer.h.%d." % i
        W[p + "ln_1.weight"] = 1.0 + rng.normal(0, 0.2, C)
        W[p + "attn.c_attn.weight"] = rng.normal(0, 0.6 / math.sqrt(C), (C, 3 * C))   # Conv1D: in x out
        W[p + "attn.c_attn.bias"] = rng.normal(0, 0.1, 3 * C)
        W[p + "attn.c_proj.weight"] = rng.normal(0, 0.6 / math.sqrt(C), (C, C))
        W[p + "attn.c_proj.bias"] = rng.normal(0, 0.1, C)
        W[p + "ln_2.weight"] = 1.0 + rng.normal(0, 0.2, C)
        W[p + "mlp.c_fc.weight"] = rng.normal(0, 1.0 / math.sqrt(C), (C, H))
        W[p + "mlp.c_fc.bias"] = rng.normal(0, 0.1, H)
        W[p + "mlp.c_proj.weight"] = rng.normal(0, 0.6 / math.sqrt(H), (H, C))
        W[p + "mlp.c_proj.bias"] = rng.normal(0, 0.1, C)
    W["transformer.ln_f.weight"] = 1.0 + rng.normal(0, 0.2, C)
    W["lm_head.weight"] = rng.normal(0, 1.0 / math.sqrt(C), (V, C))
    return W


def hf_forward(W, cfg, inputs):
    """HF ImageGPTForCausalImageModeling on one sequence; -1 = the start-of-sequence token (id vocab_size-1)."""
    C, nh, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    D = C // nh
    ids = np.array([cfg["vocab_size"] - 1 if t < 0 else t for t in inputs])
    n = len(ids)
    h = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:n]
    for i in range(cfg["n_layer"]):
        p = "transformer.h.%d." % i
        x = rms(h, W[p + "ln_1.weight"], eps)
        qkv = x @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        q, k, v = (t.reshape(n, nh, D).transpose(1, 0, 2) for t in (q, k, v))   # (heads, n, D)
        a = softmax_causal(q @ k.transpose(0, 2, 1) / math.sqrt(D)) @ v
        a = a.transpose(1, 0, 2).reshape(n, C)
        h = h + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        x = rms(h, W[p + "ln_2.weight"], eps)
        m = quick_gelu(x @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        h = h + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    return rms(h, W["transformer.ln_f.weight"], eps) @ W["lm_head.weight"].T


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, float64 array)."""
    header, chunks, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dt, arr in tensors:
        raw = encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(chunks))


def hf_config(C, L, nh, V, T, mlp_mult, eps):
    return {"architectures": ["ImageGPTForCausalImageModeling"], "model_type": "imagegpt",
            "activation_function": "quick_gelu", "n_embd": C, "n_layer": L, "n_head": nh,
            "n_positions": T, "vocab_size": V + 1, "layer_norm_epsilon": eps,
            "n_inner": None if mlp_mult == 4 else mlp_mult * C, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "tie_word_embeddings": False, "torch_dtype": "float32"}


def write_hf_dir(out, W, cfg, clusters, dtype="F32", drop=(), transpose=(), int_tensors=()):
    os.makedirs(out, exist_ok=True)
    tensors = []
    for name, arr in W.items():
        if name in drop:
            continue
        if name in transpose:
            arr = arr.T.copy() if arr.ndim == 2 else arr.reshape(2, -1)
        tensors.append((name, "I32" if name in int_tensors else dtype, arr))
    # A buffer old conversions carry (the causal mask); importers must ignore it.
    n = cfg["n_positions"]
    tensors.append(("transformer.h.0.attn.bias", "F32", np.tril(np.ones((1, 1, n, n)))))
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    pre = {"do_normalize": True, "do_resize": True, "image_processor_type": "ImageGPTImageProcessor",
           "resample": 2, "size": {"height": int(math.isqrt(n)), "width": int(math.isqrt(n))},
           "clusters": [[float(x) for x in row] for row in clusters]}
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f)


def mode_hf(a):
    rng = np.random.default_rng(a.seed)
    W = {k: round_to(v, a.dtype) for k, v in hf_weights(a, rng).items()}
    cfg = hf_config(a.width, a.layers, a.heads, a.vocab, a.image * a.image, a.mlp_mult, a.eps)
    write_hf_dir(a.out, W, cfg, random_clusters(rng, a.clusters or a.vocab), a.dtype, a.drop, a.transpose,
                 a.int_tensor)
    if a.tokens:
        write_ref_array(a.logits, np.stack([hf_forward(W, cfg, s) for s in read_tokens(a.tokens)]))


# ------------------------------------------------------------------------------------------------
# OpenAI TensorFlow layout
# ------------------------------------------------------------------------------------------------
def tf_weights(a, rng):
    C, L, V, T, nh = a.width, a.layers, a.vocab, a.image * a.image, a.heads
    D, H = C // nh, a.mlp_mult * C
    W = {"model/wte": rng.normal(0, 0.5, (V, C)), "model/wpe": rng.normal(0, 0.2, (T, C)),
         "model/sos": rng.normal(0, 0.5, C), "model/wtet": rng.normal(0, 1.0 / math.sqrt(C), (V, C))}
    for i in range(L):
        p = "model/h%d/" % i
        W[p + "ln_1/g"] = 1.0 + rng.normal(0, 0.2, C)
        for t in ("q", "k", "v", "c"):
            W[p + "attn/%s_proj" % t] = rng.normal(0, 0.6 / math.sqrt(C), (nh, D, C))
        W[p + "ln_2/g"] = 1.0 + rng.normal(0, 0.2, C)
        W[p + "mlp/c_fc/w"] = rng.normal(0, 1.0 / math.sqrt(C), (C, H))
        W[p + "mlp/c_proj/w"] = rng.normal(0, 0.6 / math.sqrt(H), (H, C))
    W["model/ln_f/g"] = 1.0 + rng.normal(0, 0.2, C)
    return W


def tf_forward(W, a, inputs):
    """openai/image-gpt src/model.py on one sequence (its einsums, no biases); -1 = sos at position 0."""
    n, eps = len(inputs), 1e-5
    h = np.stack([W["model/sos"] if t < 0 else W["model/wte"][t] for t in inputs]) + W["model/wpe"][:n]
    for i in range(a.layers):
        p = "model/h%d/" % i
        x = rms(h, W[p + "ln_1/g"], eps)
        q = np.einsum("sf,hef->hse", x, W[p + "attn/q_proj"])
        k = np.einsum("sf,hef->hse", x, W[p + "attn/k_proj"])
        v = np.einsum("sf,hef->hse", x, W[p + "attn/v_proj"])
        w = softmax_causal(q @ k.transpose(0, 2, 1) / math.sqrt(v.shape[-1]))
        h = h + np.einsum("hse,hef->sf", w @ v, W[p + "attn/c_proj"])
        x = rms(h, W[p + "ln_2/g"], eps)
        h = h + quick_gelu(x @ W[p + "mlp/c_fc/w"]) @ W[p + "mlp/c_proj/w"]
    return rms(h, W["model/ln_f/g"], eps) @ W["model/wtet"].T


CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, v):      # proto3: zero values are omitted
    return b"" if v == 0 else varint(field << 3 | 0) + varint(v)


def pb_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def bundle_entry(dtype, shape, shard, offset, size, crc):
    shape_pb = b"".join(pb_bytes(2, pb_varint(1, d)) for d in shape)
    return (pb_varint(1, dtype) + pb_bytes(2, shape_pb) + pb_varint(3, shard) + pb_varint(4, offset) +
            pb_varint(5, size) + varint(6 << 3 | 5) + struct.pack("<I", crc))


def build_block(entries, restart_interval=4):
    """LevelDB block: prefix-compressed entries + restart array."""
    out, restarts, last = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = 0
            while shared < min(len(last), len(k)) and last[shared] == k[shared]:
                shared += 1
        out += varint(shared) + varint(len(k) - shared) + varint(len(v)) + k[shared:] + v
        last = k
    if not restarts:
        restarts = [0]
    for r in restarts:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(path, items, compressed=False, block_size=200):
    """items: sorted (key bytes, value bytes). Data blocks of about block_size bytes, an empty metaindex,
    an index block, the 48-byte footer."""
    f = bytearray()
    ctype = b"\x01" if compressed else b"\x00"

    def put_block(contents):
        off = len(f)
        f.extend(contents + ctype + struct.pack("<I", masked_crc(contents + ctype)))
        return off, len(contents)

    index, cur, cur_size = [], [], 0
    for k, v in items:
        cur.append((k, v))
        cur_size += len(k) + len(v)
        if cur_size >= block_size:
            off, n = put_block(build_block(cur))
            index.append((cur[-1][0], varint(off) + varint(n)))
            cur, cur_size = [], 0
    if cur:
        off, n = put_block(build_block(cur))
        index.append((cur[-1][0], varint(off) + varint(n)))
    meta = put_block(build_block([]))
    idx = put_block(build_block(index, restart_interval=1))
    footer = varint(meta[0]) + varint(meta[1]) + varint(idx[0]) + varint(idx[1])
    footer += b"\x00" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    f.extend(footer)
    with open(path, "wb") as fh:
        fh.write(bytes(f))


def write_tf_dir(out, W, clusters, shards=2, drop=(), transpose=(), compressed=False):
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "model.ckpt-7")
    tensors = []  # (name, dtype enum, shape, raw bytes)
    for name, arr in W.items():
        if name in drop:
            continue
        if name in transpose:
            arr = arr.T.copy()
        tensors.append((name, 1, arr.shape, arr.astype("<f4").tobytes()))
        if name == "model/wte":   # optimizer slots, as a real training checkpoint has
            tensors.append((name + "/Adam", 1, arr.shape, arr.astype("<f4").tobytes()))
    tensors.append(("global_step", 9, (), struct.pack("<q", 1000000)))
    data = [bytearray() for _ in range(shards)]
    entries = {}
    for i, (name, dt, shape, raw) in enumerate(tensors):
        s = i % shards
        entries[name.encode()] = bundle_entry(dt, shape, s, len(data[s]), len(raw), masked_crc(raw))
        data[s] += raw
    for s in range(shards):
        with open("%s.data-%05d-of-%05d" % (prefix, s, shards), "wb") as fh:
            fh.write(bytes(data[s]))
    header = pb_varint(1, shards) + pb_bytes(3, pb_varint(1, 1))   # num_shards, version {producer 1}
    items = [(b"", header)] + sorted(entries.items())
    write_table(prefix + ".index", items, compressed)
    np.save(os.path.join(out, "kmeans_centers.npy"), clusters.astype(np.float32))


def mode_tf(a):
    rng = np.random.default_rng(a.seed)
    W = {k: round_to(v, "F32") for k, v in tf_weights(a, rng).items()}
    write_tf_dir(a.out, W, random_clusters(rng, a.clusters or a.vocab), a.shards, a.drop, a.transpose, a.compressed)
    if a.tokens:
        write_ref_array(a.logits, np.stack([tf_forward(W, a, s) for s in read_tokens(a.tokens)]))


# ------------------------------------------------------------------------------------------------
# a project model file -> the Hugging Face layout
# ------------------------------------------------------------------------------------------------
def mode_hf_from_igpt(a):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import igpt_ref
    cfg, P, palette = igpt_ref.load_model(a.model)
    C, V = cfg["width"], cfg["vocab"]
    H = cfg["mlp_mult"] * C
    W = {"transformer.wte.weight": np.concatenate([P["wte"], P["sos"][None, :]]),
         "transformer.wpe.weight": P["wpe"]}
    for i in range(cfg["layers"]):
        s, d = "h.%d." % i, "transformer.h.%d." % i
        b = lambda n, size: P[s + n] if cfg["bias"] else np.zeros(size)
        W[d + "ln_1.weight"] = P[s + "ln_1.g"]
        W[d + "attn.c_attn.weight"] = P[s + "attn.qkv.w"].T
        W[d + "attn.c_attn.bias"] = b("attn.qkv.b", 3 * C)
        W[d + "attn.c_proj.weight"] = P[s + "attn.proj.w"].T
        W[d + "attn.c_proj.bias"] = b("attn.proj.b", C)
        W[d + "ln_2.weight"] = P[s + "ln_2.g"]
        W[d + "mlp.c_fc.weight"] = P[s + "mlp.fc.w"].T
        W[d + "mlp.c_fc.bias"] = b("mlp.fc.b", H)
        W[d + "mlp.c_proj.weight"] = P[s + "mlp.proj.w"].T
        W[d + "mlp.c_proj.bias"] = b("mlp.proj.b", C)
    W["transformer.ln_f.weight"] = P["ln_f.g"]
    W["lm_head.weight"] = P["head.w"]
    W = {k: np.ascontiguousarray(v) for k, v in W.items()}
    T = cfg["image_h"] * cfg["image_w"]
    if cfg["image_h"] != cfg["image_w"]:
        raise SystemExit("make_foreign.py: the Hugging Face layout needs a square image")
    hcfg = hf_config(C, cfg["layers"], cfg["heads"], V, T, cfg["mlp_mult"], float(cfg["norm_eps"]))
    clusters = palette.astype(np.float64) / 127.5 - 1.0   # round((c + 1) * 127.5) gives the bytes back
    write_hf_dir(a.out, W, hcfg, clusters)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for m in ("hf", "tf"):
        p = sub.add_parser(m)
        p.add_argument("out")
        p.add_argument("--width", type=int, default=32)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--image", type=int, default=8)
        p.add_argument("--vocab", type=int, default=16)
        p.add_argument("--mlp-mult", type=int, default=4)
        p.add_argument("--eps", type=float, default=1e-5)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--drop", action="append", default=[])
        p.add_argument("--transpose", action="append", default=[])
        p.add_argument("--clusters", type=int, default=0)
        p.add_argument("--tokens")
        p.add_argument("--logits")
        if m == "hf":
            p.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
            p.add_argument("--int-tensor", action="append", default=[], help="store this tensor as I32")
        else:
            p.add_argument("--shards", type=int, default=2)
            p.add_argument("--compressed", action="store_true")
    p = sub.add_parser("hf-from-igpt")
    p.add_argument("model")
    p.add_argument("out")
    a = ap.parse_args()
    if getattr(a, "tokens", None) and not a.logits:
        ap.error("--tokens needs --logits")
    {"hf": mode_hf, "tf": mode_tf, "hf-from-igpt": mode_hf_from_igpt}[a.mode](a)


if __name__ == "__main__":
    main()
