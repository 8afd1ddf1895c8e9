// Completion benchmark in headless chromium (not a test): the bottom half of a sample image (16 of 32 rows
// kept, 512 tokens sampled per sample) at batch 1 and 8, with the threaded builds on N threads (relaxed SIMD,
// which Chromium picks, and plain SIMD128, wasm=simd128) and with the single-threaded build, next to the
// native `igpt bench` of the same config on the same machine, in the same run; prints decode tokens/s,
// seconds per completion and the ratio wasm/native.
//   node tests/web/bench.js [www root] [model name] [threads=2] [native igpt binary]
// (scripts/bench_web.sh builds what is missing and runs it.)
'use strict';
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const ROOT = path.resolve(process.argv[2] || path.join(REPO, 'build-web', 'www'));
const MODEL = process.argv[3] || '';
const THREADS = Number(process.argv[4] || 2);
const NATIVE = process.argv[5] || path.join(REPO, 'build', 'tools', 'igpt', 'igpt');
const BATCHES = [1, 8];

// Native figures: `igpt bench -c CONFIG -b B -j THREADS`, random weights of the shape of the web's model (the
// shipped models are named after their config presets; tiny for any other name).
const NATIVE_CONFIG = ['tiny', 'small', 'base', 'S', 'M', 'L'].includes(MODEL) ? MODEL : 'tiny';
function nativeBench(batch) {
  if (!fs.existsSync(NATIVE)) return null;
  const out = execFileSync(NATIVE, ['bench', '-c', NATIVE_CONFIG, '-b', String(batch), '-j', String(THREADS)],
                           { encoding: 'utf8' });
  const dec = out.match(/decode: .*?([\d.]+) tokens\/s/), comp = out.match(/complete: .*: ([\d.]+) s/);
  return { tps: dec ? Number(dec[1]) : NaN, seconds: comp ? Number(comp[1]) : NaN };
}

async function browserBench(browser, url, mode) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  await page.goto(url + `?threads=${THREADS}&rows=16&seed=1&top_k=0&temperature=1` + (mode ? '&wasm=' + mode : '') +
                  (MODEL ? '&model=' + encodeURIComponent(MODEL) : ''));
  await page.waitForFunction(() => typeof igptHost !== 'undefined' && igptHost.app &&
                             igptHost.state().model_state === 2 && igptHost.state().seen_tokens.length > 0,
                             null, { timeout: 120000 });
  // As a visitor would: the first Complete comes after the app's warm-up (a few tenths of a second after
  // the model is ready; App::warm_up), not in the same instant.
  await page.waitForFunction(() => igptHost.state().warmed_up, null, { timeout: 10000, polling: 100 });
  const rows = [];
  for (const batch of BATCHES) {
    // Twice: the first completion of a page may run partly in V8's baseline code (wasm functions move to the
    // optimising compiler once hot, which the warm-up is for); the row is the faster run, with the first
    // one's seconds beside it.
    let best = null, first = NaN;
    for (let run = 0; run < 2; ++run) {
      await page.evaluate((b) => { igptHost.action('samples', b); igptHost.action('complete'); }, batch);
      // polled through running(), not state(), whose copy of every token would take the threads' time
      await page.waitForFunction(() => !igptHost.running(), null, { timeout: 600000, polling: 50 });
      const s = await page.evaluate(() => igptHost.state());
      if (run === 0) first = s.stats.seconds;
      if (!best || s.stats.seconds < best.seconds)
        best = { batch, model: s.model, threaded: s.threaded, relaxed: s.relaxed_simd, software: s.software_webgl,
                 seconds: s.stats.seconds, prefill: s.stats.prefill_seconds,
                 tps: s.stats.decode_tokens_per_second, message: s.message };
    }
    best.first = first;
    rows.push(best);
  }
  await page.close();
  return rows;
}

(async () => {
  const proc = spawn('python3', [path.join(REPO, 'serve.py'), '--port', '0', '--root', ROOT, '--quiet'],
                     { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((res) => proc.stdout.on('data', (d) => {
    const m = String(d).match(/at (http:\/\/[\d.:]+\/)/);
    if (m) res(m[1]);
  }));
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'] });
  try {
    // Single-threaded figures are wall time in the page: 12 ms of work per frame, then the frame is drawn
    // (headless chromium draws WebGL on the CPU with SwiftShader, which costs more than a GPU would).
    const rs = await browserBench(browser, url, '');
    const mt = await browserBench(browser, url, 'simd128');
    const st = await browserBench(browser, url, 'st');
    const native = {};
    for (const b of BATCHES) native[b] = nativeBench(b);
    const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
    console.log(`model ${rs[0].model}; bottom half: 512 tokens kept, 512 sampled per sample; chromium ` +
                `(${execFileSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()}), ` +
                `${require('os').cpus()[0].model}, load ${require('os').loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    console.log('| build | batch | complete (s) | first run (s) | prefill (s) | decode tokens/s | native complete (s) | ' +
                'native decode tokens/s | time wasm/native |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    const rsName = `wasm, ${THREADS} threads, ${rs[0].relaxed ? 'relaxed SIMD' : 'SIMD128 (no relaxed SIMD here)'}`;
    for (const [name, rows] of [[rsName, rs], [`wasm, ${THREADS} threads, SIMD128`, mt],
                                ['wasm, single-threaded, SIMD128', st]]) {
      for (const r of rows) {
        const n = native[r.batch];
        console.log(`| ${name} | ${r.batch} | ${f(r.seconds)} | ${f(r.first)} | ${f(r.prefill, 3)} | ${f(r.tps, 0)} | ` +
                    `${n ? f(n.seconds) : '-'} | ${n ? f(n.tps, 0) : '-'} | ${n ? f(r.seconds / n.seconds) + 'x' : '-'} |`);
      }
    }
    if (!native[1]) console.log(`(no native figures: ${NATIVE} not built)`);
    if (rs[0].software)
      console.log('(this chromium renders WebGL on the CPU: the page draws a completion\'s progress 8 times a second)');
  } finally {
    await browser.close();
    proc.kill();
  }
})();
