// Completion benchmark in headless chromium (not a test): the bottom half of a sample image (16 of 32 rows
// kept) at batch 1 and 8 with 2 threads, as the performance section asks.
//   node tests/web/bench.js [www root] [model name] [threads=2]
'use strict';
const { spawn } = require('child_process');
const path = require('path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const ROOT = path.resolve(process.argv[2] || path.join(REPO, 'build-web', 'www'));
const MODEL = process.argv[3] || '';
const THREADS = Number(process.argv[4] || 2);

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
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(url + `?threads=${THREADS}&rows=16&seed=1` + (MODEL ? '&model=' + encodeURIComponent(MODEL) : ''));
    await page.waitForFunction(() => typeof igptHost !== 'undefined' && igptHost.app &&
                               igptHost.state().model_state === 2 && igptHost.state().seen_tokens.length > 0,
                               null, { timeout: 120000 });
    for (const batch of [1, 8]) {
      await page.evaluate((b) => { igptHost.action('samples', b); igptHost.action('complete'); }, batch);
      await page.waitForFunction(() => !igptHost.state().running, null, { timeout: 600000, polling: 50 });
      const s = await page.evaluate(() => igptHost.state());
      console.log(`chromium wasm, model ${s.model}, ${THREADS} threads, batch ${batch}: ${s.message}`);
    }
  } finally {
    await browser.close();
    proc.kill();
  }
})();
