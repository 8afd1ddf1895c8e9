#!/usr/bin/env node
// ONNX Runtime baselines for igpt's completion benchmark: complete the bottom half of a 32x32 image (sos + 512
// kept pixels prefilled once at batch 1, the cache copied to B samples, 511 decode steps sampling 512 pixels
// each), the work bench/torch_cpu_bench.py's TorchIGPT.complete does, with the graphs of export_igpt_onnx.py.
//
//   node bench/onnx/ort_bench.js ONNX_DIR [--backend node|web] [--batch B] [--threads N] [--repeats R]
//                                [--cache static|present]
//
//   --backend node   onnxruntime-node 1.30.0 (native CPU execution provider), intraOpNumThreads = N
//   --backend web    onnxruntime-web 1.30.0, its WebAssembly backend (SIMD, threaded build) in Node.js,
//                    ort.env.wasm.numThreads = N
// Both with graph optimisation level "all". Two ways to carry the KV cache between decode steps:
//   --cache static   (default) decode_static.onnx: the cache is one preallocated (B, H, 1024, hd) buffer per
//                    layer and key/value, owned by JS and fed as the same input tensors every step (the graph
//                    masks positions >= position); the graph returns only the step's new keys and values,
//                    which JS writes in place at `position` (B*H rows of hd floats)
//   --cache present  decode.onnx, the Hugging Face / optimum pattern: past_key_values.* -> present.* (the graph
//                    concatenates), each step's present.* output tensors fed straight back as the next past
// Before timing, the logits of the prefill (batch 1) and of one decode step (batch 2, cache copied) are checked
// against ONNX_DIR/reference.json (TorchIGPT, fp32), for both decode graphs, and the two decode graphs against
// each other over 4 steps (which checks the cache writes): normalised max error (max |a - b| / max |ref|) must
// be <= 1e-4.
// Timing: a warm-up completion of 8 steps, then the best of R full completions.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const TOL = 1e-4;

function die(msg) {
  process.stderr.write('ort_bench: ' + String(msg).split('\n')[0] + '\n');
  process.exit(1);
}

const USAGE = 'usage: node ort_bench.js ONNX_DIR [--backend node|web] [--batch B] [--threads N] [--repeats R] ' +
  '[--cache static|present]';

function parseArgs(argv) {
  const o = { dir: null, backend: 'node', batch: 1, threads: 2, repeats: 2, cache: 'static' };
  const ints = { '--batch': ['batch', 1, 64], '--threads': ['threads', 1, 256], '--repeats': ['repeats', 1, 20] };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    }
    if (a.startsWith('--') && a.includes('=')) [a, v] = [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)];
    if (a === '--backend' || a === '--cache' || a in ints) {
      if (v === undefined) {
        if (i + 1 >= argv.length) die(`${a} needs a value (${USAGE})`);
        v = argv[++i];
      }
      if (a === '--backend') {
        if (v !== 'node' && v !== 'web') die(`--backend must be node or web, not "${v}"`);
        o.backend = v;
      } else if (a === '--cache') {
        if (v !== 'static' && v !== 'present') die(`--cache must be static or present, not "${v}"`);
        o.cache = v;
      } else {
        const [key, lo, hi] = ints[a];
        if (!/^\d+$/.test(v) || +v < lo || +v > hi) die(`${a} must be an integer in [${lo}, ${hi}], not "${v}"`);
        o[key] = +v;
      }
    } else if (a.startsWith('-')) {
      die(`unknown option ${a} (${USAGE})`);
    } else if (o.dir === null) {
      o.dir = a;
    } else {
      die(`unexpected argument "${a}" (${USAGE})`);
    }
  }
  if (o.dir === null) die(`no ONNX_DIR given (${USAGE})`);
  return o;
}

// Seeded RNG (mulberry32), uniform in [0, 1).
function makeRng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Draw from softmax(row): one pass for the max, one for exp and the sum, then a cumulative search.
function sample(row, V, rng, scratch) {
  let mx = -Infinity;
  for (let j = 0; j < V; j++) if (row[j] > mx) mx = row[j];
  let sum = 0;
  for (let j = 0; j < V; j++) sum += scratch[j] = Math.exp(row[j] - mx);
  let u = rng() * sum;
  for (let j = 0; j < V; j++) {
    u -= scratch[j];
    if (u < 0) return j;
  }
  return V - 1;
}

function normErr(got, ref) {
  let e = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= e)) e = d; // NaN propagates
    if (Math.abs(ref[i]) > m) m = Math.abs(ref[i]);
  }
  return e / m;
}

function threadCount() {
  try {
    return fs.readdirSync('/proc/self/task').length;
  } catch {
    return NaN;
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = path.resolve(o.dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
    die(`${o.dir}: no such folder (make it with export_igpt_onnx.py)`);
  for (const f of ['prefill.onnx', 'decode.onnx', 'decode_static.onnx', 'reference.json'])
    if (!fs.existsSync(path.join(dir, f)))
      die(`${path.join(o.dir, f)}: missing (make it with export_igpt_onnx.py MODEL ${o.dir})`);
  let ref;
  try {
    ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  } catch (e) {
    die(`${path.join(o.dir, 'reference.json')}: unreadable (${e.message})`);
  }
  for (const k of ['vocab', 'positions', 'prompt', 'prefill_logits', 'decode_pixels', 'decode_logits'])
    if (!(k in ref)) die(`${path.join(o.dir, 'reference.json')}: no "${k}" (re-export it)`);

  // ---- the runtime
  let ort;
  let threadNote = '';
  const threadsBefore = threadCount();
  const opts = { graphOptimizationLevel: 'all' };
  try {
    if (o.backend === 'node') {
      ort = require('onnxruntime-node');
      Object.assign(opts, { executionProviders: ['cpu'], intraOpNumThreads: o.threads, interOpNumThreads: 1,
                            executionMode: 'sequential' });
    } else {
      ort = require('onnxruntime-web');
      ort.env.wasm.numThreads = o.threads;
      ort.env.wasm.simd = true;
      ort.env.wasm.proxy = false;
      Object.assign(opts, { executionProviders: ['wasm'] });
    }
  } catch (e) {
    die(`cannot load onnxruntime-${o.backend} (${e.message.split('\n')[0]}); run "npm ci" in ${__dirname}`);
  }
  const origWarn = console.warn;
  const warnings = [];
  console.warn = (...a) => warnings.push(a.join(' ')); // ort-web's fallback-to-one-thread notice, kept
  let pre, dec, decS;
  try {
    pre = await ort.InferenceSession.create(path.join(dir, 'prefill.onnx'), opts);
    dec = await ort.InferenceSession.create(path.join(dir, 'decode.onnx'), opts);
    decS = await ort.InferenceSession.create(path.join(dir, 'decode_static.onnx'), opts);
  } catch (e) {
    console.warn = origWarn;
    die(`cannot load the ONNX graphs in ${o.dir} (${e.message})`);
  }
  console.warn = origWarn;
  const threadsAfter = threadCount();
  if (o.backend === 'web') {
    const got = ort.env.wasm.numThreads;
    const fell = warnings.some((w) => /multi-threading is not supported|Falling back/i.test(w));
    threadNote = `wasm threads: requested ${o.threads}, env.wasm.numThreads after init ${got}` +
      (fell ? ' (ort-web fell back to ONE thread: ' + warnings.join(' | ') + ')' : '') +
      `, OS threads of this process ${threadsBefore} -> ${threadsAfter}`;
  } else {
    threadNote = `native intra-op threads: ${o.threads}, OS threads of this process ` +
      `${threadsBefore} -> ${threadsAfter}`;
  }

  const presentNames = pre.outputNames.filter((n) => n.startsWith('present.'));
  const pastNames = dec.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const cacheNames = decS.inputNames.filter((n) => n.startsWith('cache.'));
  const newNames = decS.outputNames.filter((n) => n.startsWith('new.'));
  if (!pre.inputNames.includes('pixels') || !dec.inputNames.includes('pixel') || presentNames.length === 0 ||
      pastNames.length !== presentNames.length || !decS.inputNames.includes('position') ||
      cacheNames.length !== presentNames.length || newNames.length !== presentNames.length)
    die(`${o.dir}: the graphs do not have export_igpt_onnx.py's inputs/outputs (re-export them)`);
  const V = ref.vocab, T = ref.positions;

  const i64 = (arr, dims) => new ort.Tensor('int64', BigInt64Array.from(arr, (x) => BigInt(x)), dims);

  // A decoder state for B samples from a batch-1 prefill's outputs (present.* of n positions): the cache is
  // copied to the B samples once; step(pixel) runs one decode step and returns the (B, V) logits.
  function presentState(p, B) {
    let feeds = {};
    for (let i = 0; i < presentNames.length; i++) {
      const t = p[presentNames[i]];
      const src = t.data, n = src.length;
      const dst = new Float32Array(n * B);
      for (let b = 0; b < B; b++) dst.set(src, b * n);
      feeds[pastNames[i]] = new ort.Tensor('float32', dst, [B, ...t.dims.slice(1)]);
    }
    return {
      async step(pixel) {
        feeds.pixel = pixel;
        const r = await dec.run(feeds);
        feeds = {};
        for (let j = 0; j < pastNames.length; j++) feeds[pastNames[j]] = r[presentNames[j]]; // present -> past
        return r.logits.data;
      },
    };
  }

  function staticState(p, B) {
    const [, H, n, hd] = p[presentNames[0]].dims;
    const bufs = [], feeds = {};
    for (let i = 0; i < presentNames.length; i++) {
      const src = p[presentNames[i]].data;
      const dst = new Float32Array(B * H * T * hd);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) dst.set(src.subarray(h * n * hd, (h + 1) * n * hd), (b * H + h) * T * hd);
      bufs.push(dst);
      feeds[cacheNames[i]] = new ort.Tensor('float32', dst, [B, H, T, hd]); // the same tensors every step
    }
    const position = new BigInt64Array(1);
    let pos = n;
    return {
      async step(pixel) {
        feeds.pixel = pixel;
        position[0] = BigInt(pos);
        feeds.position = new ort.Tensor('int64', position, [1]);
        const r = await decS.run(feeds);
        for (let i = 0; i < newNames.length; i++) { // write this step's keys/values at pos
          const nd = r[newNames[i]].data, dst = bufs[i];
          for (let bh = 0; bh < B * H; bh++) dst.set(nd.subarray(bh * hd, bh * hd + hd), (bh * T + pos) * hd);
        }
        pos++;
        return r.logits.data;
      },
    };
  }
  const makeState = (mode, p, B) => (mode === 'static' ? staticState(p, B) : presentState(p, B));

  // ---- the checks against TorchIGPT, and of the two cache modes against each other
  let ePre, eDec, eDecS, eModes = 0;
  try {
    const p = await pre.run({ pixels: i64(ref.prompt, [1, ref.prompt.length]) });
    if (p.logits.dims.join() !== `1,${V}`) die(`prefill logits have shape [${p.logits.dims}], expected [1,${V}]`);
    if (p[presentNames[0]].dims[2] !== ref.prompt.length + 1) die('the prefill present has the wrong length');
    ePre = normErr(p.logits.data, ref.prefill_logits);
    const sp = makeState('present', p, 2), ss = makeState('static', p, 2);
    let px = ref.decode_pixels;
    const lp = await sp.step(i64(px, [2, 1])), ls = await ss.step(i64(px, [2, 1]));
    if (lp.length !== 2 * V || ls.length !== 2 * V)
      die(`decode logits have ${lp.length}, ${ls.length} values, expected 2 x ${V}`);
    eDec = normErr(lp, ref.decode_logits.flat());
    eDecS = normErr(ls, ref.decode_logits.flat());
    for (let i = 0; i < 4; i++) { // 4 more steps on both: the cache writes of one step feed the next
      px = [(37 * i + 5) % V, (101 * i + 300) % V];
      eModes = Math.max(eModes, normErr(await ss.step(i64(px, [2, 1])), await sp.step(i64(px, [2, 1]))));
    }
  } catch (e) {
    die(`running the graphs failed (${e.message})`);
  }
  const f = (x) => x.toExponential(1);
  if (!(ePre <= TOL && eDec <= TOL && eDecS <= TOL && eModes <= TOL))
    die(`ONNX Runtime (${o.backend}) logits disagree with TorchIGPT: normalised max error prefill ${f(ePre)}, ` +
        `decode ${f(eDec)}, static decode ${f(eDecS)}, static vs present over 4 more steps ${f(eModes)} ` +
        `(tolerance ${TOL})`);
  console.error(`check vs TorchIGPT (reference.json): normalised max error prefill ${f(ePre)}, decode ${f(eDec)}, ` +
    `static decode ${f(eDecS)}; static vs present over 4 more steps ${f(eModes)} (tolerance ${TOL})`);
  console.error(threadNote);

  // ---- the completion
  const k = T / 2;
  const promptRng = makeRng(5);
  const prompt = Array.from({ length: k }, () => Math.floor(promptRng() * V));
  const rng = makeRng(1);
  const scratch = new Float64Array(V);

  async function complete(B, steps) {
    const t0 = performance.now();
    const p = await pre.run({ pixels: i64(prompt, [1, k]) });
    const state = makeState(o.cache, p, B);
    let logits = p.logits.data;
    let stride = 0; // the prefill's one row serves all B samples
    const out = new Int32Array(B * (k + steps));
    for (let b = 0; b < B; b++) out.set(prompt, b * (k + steps));
    const t1 = performance.now();
    for (let i = 0; i < steps; i++) {
      const pixel = new BigInt64Array(B);
      for (let b = 0; b < B; b++) {
        const tok = sample(logits.subarray(b * stride, b * stride + V), V, rng, scratch);
        out[b * (k + steps) + k + i] = tok;
        pixel[b] = BigInt(tok);
      }
      if (i + 1 === steps) break;
      logits = await state.step(new ort.Tensor('int64', pixel, [B, 1]));
      stride = V;
    }
    const t2 = performance.now();
    for (let j = 0; j < out.length; j++)
      if (!(out[j] >= 0 && out[j] < V)) die('the completion produced a pixel out of range');
    return { total: (t2 - t0) / 1e3, prefill: (t1 - t0) / 1e3, decode: (t2 - t1) / 1e3 };
  }

  const B = o.batch;
  try {
    await complete(B, 8); // warm-up
    let best = null;
    let cpu = 0, wall = 0;
    for (let r = 0; r < o.repeats; r++) {
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const t = await complete(B, T - k);
      const c = process.cpuUsage(c0);
      wall += (performance.now() - w0) / 1e3;
      cpu += (c.user + c.system) / 1e6;
      if (best === null || t.total < best.total) best = t;
    }
    const steps = T - k - 1;
    const tps = (steps * B) / best.decode;
    const ratio = cpu / wall;
    const cpuName = (os.cpus()[0] || {}).model || '?';
    console.log(`onnxruntime-${o.backend} 1.30.0${o.backend === 'web' ? ' (wasm, SIMD)' : ' (CPU EP)'}, ` +
      `${o.cache} KV cache, ` +
      `${ref.config} (width ${ref.width}, ${ref.layers} layers), batch ${B}, ${o.threads} threads on ${cpuName}: ` +
      `complete ${best.total.toFixed(3)} s (prefill of ${k + 1} positions ${best.prefill.toFixed(3)} s, ` +
      `${steps} decode steps ${best.decode.toFixed(3)} s, ${tps.toFixed(0)} tokens/s), ` +
      `best of ${o.repeats} after a warm-up; ` +
      `CPU time / wall time ${ratio.toFixed(2)}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    if (o.backend === 'web' && o.threads > 1 && ort.env.wasm.numThreads === 1)
      console.log(`NOTE: onnxruntime-web ran on ONE thread, not ${o.threads}: multi-threading is unavailable here`);
    console.log(`RESULT ort backend=${o.backend} config=${ref.config} batch=${B} threads=${o.threads} ` +
      `complete_s=${best.total.toFixed(4)} decode_tps=${tps.toFixed(1)}`);
  } catch (e) {
    die(`the completion failed (${e.message})`);
  }
  for (const sess of [pre, dec, decS]) await sess.release?.();
  process.exit(0);
}

main().catch((e) => die(e && e.message ? e.message : e));
