// End-to-end test of the browser app in Debian's headless chromium, driven by playwright-core.
//   node tests/web/e2e.js [www root]        (tests/web/run.sh runs it; root defaults to build-web/www)
// Starts serve.py on a free loopback port, opens the page, waits for the model, drags the crop line with the
// mouse, completes, and checks: crossOriginIsolated, the kept rows equal the input's quantised rows, the rest
// filled, the samples fill in progressively frame by frame, frames keep being drawn while it runs (and none
// when nothing changes; input at once), cancel, a corrupt image and a
// missing model give one-line errors and the app keeps working, a model file opened from disk (the "Open
// model file..." button's file chooser) is listed as local and completes, a corrupt one dropped on the page
// and a too-large one give one-line errors and keep the model, settings survive a reload. Then: the first
// load's bytes (< 5 MB), the service worker's offline copy (a reload with the server stopped still starts
// and completes, cross-origin isolated), "clear cache" empties both caches. Chromium runs the relaxed-SIMD
// build; wasm=simd128 runs the plain threaded one, which completes too. A page that is NOT cross-origin
// isolated (serve.py --no-isolation) runs the single-threaded build, says so, completes (the same tokens as
// the plain threaded build) and cancels; a threaded start whose workers cannot load falls back to that
// build, and a model the cache refuses (quota) is kept in memory and the page says so. Screenshots go to
// build-web/test-web/.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const ROOT = path.resolve(process.argv[2] || path.join(REPO, 'build-web', 'www'));
const OUT = process.env.IGPT_WEB_TEST_OUT || path.join(REPO, 'build-web', 'test-web');
// Rows kept after the drag: 4 samples x (32 - KEEP) rows of pixels on one thread, enough that the completion
// spans several frames (at most 8 a second on software WebGL) on a fast machine too: with 25 rows kept it
// took ~0.15 s on a 2-core Xeon with AVX-512, 2 frames.
const KEEP = 8;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                       '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let passed = 0, failed = 0;
function check(ok, what, detail = '') {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? '  (' + detail + ')' : ''}`);
  return ok;
}

const FIRST_LOAD_LIMIT = 5 * 1000 * 1000;  // bytes: wasm + JS + page + the tiny model

function startServer(extra = [], port = 0) {
  return new Promise((resolve, reject) => {
    const proc = spawn('python3', [path.join(REPO, 'serve.py'), '--port', String(port), '--root', ROOT, '--quiet',
                                   ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/at (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) resolve({ proc, url: m[1] });
    });
    proc.on('exit', (code) => reject(new Error('serve.py exited with ' + code)));
  });
}

const launchChromium = () => chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
                                                args: CHROMIUM_ARGS, headless: true });

async function waitFor(page, fn, arg, timeout, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return true;
  } catch (e) {
    return check(false, 'timed out waiting for ' + what);
  }
}

const countFrames = () => new Promise((res) => {
  let n = 0; const t0 = performance.now();
  const tick = () => { n++; if (performance.now() - t0 < 1000) requestAnimationFrame(tick); else res(n); };
  requestAnimationFrame(tick);
});
const state = (page) => page.evaluate(() => igptHost.state());
const appReady = () => typeof igptHost !== 'undefined' && igptHost.app && igptHost.state().model_state === 2 &&
                       igptHost.state().seen_tokens.length > 0;
// Names of the service worker's caches and what the app-shell one holds.
const cacheInfo = (page) => page.evaluate(async () => {
  const keys = await caches.keys();
  const app = keys.find((k) => k.startsWith('igpt-app-'));
  const files = app ? (await (await caches.open(app)).keys()).map((r) => new URL(r.url).pathname) : [];
  return { keys, files };
});

// Completes and watches from inside the page, frame by frame, how far sample 0 has been drawn and how fast
// frames come while it runs (screenshots alone miss a completion that is quicker than the screenshots: the
// tiny model needs only a second or two); gives up after limitMs. -> {levels, frames, ms, n_ctx}
// The app draws a frame only when the picture changed (and progress at most 8 times a second where WebGL
// runs on the CPU): `frames` counts the frames it drew (frames_drawn), `levels` the fill levels they showed.
const watchCompletion = (page, limitMs = 300000) => page.evaluate((limit) => new Promise((resolve) => {
  igptHost.action('complete');
  const levels = new Set();
  let started = false, drawn0 = igptHost.state().frames_drawn, drawn = drawn0, level = -1;
  const t0 = performance.now();
  const tick = () => {
    const st = igptHost.state();
    const t = performance.now() - t0;
    if (st.running) started = true;
    if (!started) drawn0 = st.frames_drawn;
    if (st.frames_drawn !== drawn && level >= 0) levels.add(level);  // the last frame drew that level
    drawn = st.frames_drawn;
    if (st.results && st.results.length) level = st.results[0].filled;
    if ((st.running || (!started && t < 5000)) && t < limit) requestAnimationFrame(tick);
    else resolve({ levels: [...levels], frames: drawn - drawn0, ms: t, n_ctx: st.n_ctx, software: st.software_webgl });
  };
  requestAnimationFrame(tick);
}), limitMs);
// Frames the app drew in `ms` of a page left alone (nothing changes: none should be drawn).
const idleDrawn = (page, ms) => page.evaluate((ms) => new Promise((resolve) => {
  const d0 = igptHost.state().frames_drawn;
  setTimeout(() => resolve(igptHost.state().frames_drawn - d0), ms);
}), ms);

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const server = await startServer();
  const browser = await launchChromium();
  const consoleLines = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push('pageerror: ' + e.message));
    // Every response of the first visit (page, workers, service worker), with its transferred size.
    const firstLoad = [];
    let counting = true;
    context.on('response', (r) => {
      if (counting) firstLoad.push(r.request().sizes().then((z) => ({ url: r.url(), status: r.status(),
        bytes: z.responseBodySize + z.responseHeadersSize })).catch(() => ({ url: r.url(), bytes: 0 })));
    });

    // The tiny model (the default is the manifest's first, the larger small model; see threadedStartFails).
    await page.goto(server.url + '?model=tiny&seed=3&samples=4&rows=20&temperature=1&top_k=0&threads=1');
    check(await page.evaluate(() => self.crossOriginIsolated === true), 'page is crossOriginIsolated');
    if (!await waitFor(page, () => typeof igptHost !== "undefined" && igptHost.app && igptHost.state().model_state === 2 &&
                       igptHost.state().seen_tokens.length > 0 && igptHost.state().seen_rect[2] > 0,
                       null, 60000, 'model + sample image')) return;
    let s = await state(page);
    check(s.model !== '' && s.n_ctx > 0, 'model loaded from the manifest', `${s.model}, n_ctx ${s.n_ctx}`);
    check(s.threaded && s.mode_note === '', 'cross-origin isolated page runs the threaded build');
    // Chromium has relaxed SIMD (since 114): shell.js picks the build whose multiply-adds are fused.
    check(s.relaxed_simd === true, 'a browser with relaxed SIMD runs the relaxed-SIMD build (igpt_web_rs)');
    // The warm-up (App::warm_up): short completions, cancelled, right after the model is ready, so that the
    // first Complete runs compiled code. It ends by itself and leaves nothing behind.
    const warmed = await waitFor(page, () => igptHost.state().warmed_up, null, 10000, 'the warm-up');
    s = await state(page);
    check(warmed && s.results.length === 0 && !s.running && !s.error, 'the warm-up ends by itself, leaving no results',
          s.message);
    // The first load: wait until the service worker holds the wasm build too, then add up the bytes.
    await waitFor(page, () => caches.keys().then(async (ks) => {
      const k = ks.find((x) => x.startsWith('igpt-app-'));
      return k && !!(await (await caches.open(k)).match('igpt_web_rs.wasm'));
    }), null, 30000, 'service worker to cache the app');
    counting = false;
    const loads = await Promise.all(firstLoad);
    const total = loads.reduce((a, l) => a + l.bytes, 0);
    const top = loads.slice().sort((a, b) => b.bytes - a.bytes).slice(0, 4)
      .map((l) => `${new URL(l.url).pathname.split('/').pop()} ${(l.bytes / 1e6).toFixed(2)}`).join(', ');
    console.log(`first load: ${loads.length} responses, ${(total / 1e6).toFixed(2)} MB (largest: ${top} MB)`);
    check(total < FIRST_LOAD_LIMIT, 'first load with the tiny model under 5 MB', `${(total / 1e6).toFixed(2)} MB`);
    check(s.settings.rows === 20 && s.settings.samples === 4 && s.settings.seed === 3 && s.settings.threads === 1,
          'settings from the URL');

    // Drag the crop line with the mouse from row 20 to row KEEP (snaps to rows).
    const [x, y, w, h] = s.seen_rect;
    const H = s.n_ctx / s.image_w, cell = h / H;
    await page.mouse.move(x + w / 2, y + 20 * cell);
    await page.mouse.down();
    await page.mouse.move(x + w / 2, y + 15.3 * cell, { steps: 4 });
    await page.mouse.move(x + w / 2, y + (KEEP + 0.2) * cell, { steps: 4 });
    await page.mouse.up();
    await page.waitForTimeout(200);
    s = await state(page);
    check(s.settings.rows === KEEP, `crop line dragged by mouse to row ${KEEP}`, 'rows ' + s.settings.rows);
    await page.screenshot({ path: path.join(OUT, 'before.png') });
    const idleFps = await page.evaluate(countFrames);

    // Complete, and watch how far the samples have been drawn and how fast frames come while the worker
    // threads run.
    const watch = await watchCompletion(page, 120000);
    await waitFor(page, () => !igptHost.state().running, null, 120000, 'completion to finish');
    s = await state(page);
    check(s.results.length > 0 && s.tile_rects.length > 0, 'completion started', s.message);
    const [tx, ty, tw, th] = s.tile_rects[0];
    const partial = watch.levels.filter((f) => f > KEEP * s.image_w && f < watch.n_ctx).length;
    check(partial >= 2, 'sample tiles fill in progressively',
          `${partial} partial fill levels drawn in ${watch.frames} frames, ${(watch.ms / 1000).toFixed(2)} s`);
    // Headless chromium draws WebGL with SwiftShader on the CPU, which the inference threads (and, on the
    // test machine, everything else) share: the display's rate cannot be asked for. What must not happen is
    // inference in the frame, which stops the frames outright (0-1 per second).
    const fps = watch.frames / Math.max(0.001, watch.ms / 1000);
    check(fps >= 3 && (!watch.software || fps <= 12), 'UI keeps drawing during completion',
          `${fps.toFixed(1)} frames/s drawn while running (${watch.software ? 'software WebGL: at most 8 a second' :
          'display rate'}), rAF at ${idleFps}/s idle`);
    await page.waitForTimeout(300);
    const idle = await idleDrawn(page, 1000);
    check(idle === 0, 'a page left alone draws no frames', `${idle} frames drawn in 1 s`);
    const before = (await state(page)).frames_drawn;
    await page.mouse.move(x + w / 2, y + h / 2);
    await page.waitForTimeout(150);
    const after = (await state(page)).frames_drawn;
    check(after > before, 'input is drawn at once', `${after - before} frames drawn after a mouse move`);
    s = await state(page);
    const kept = KEEP * s.image_w;
    let keptOk = true, filledOk = true, varied = false;
    for (const r of s.results) {
      keptOk = keptOk && r.kept === kept && r.tokens.slice(0, kept).every((t, i) => t === s.seen_tokens[i]);
      filledOk = filledOk && r.filled === s.n_ctx;
      varied = varied || new Set(r.tokens.slice(kept)).size > 1;
    }
    check(s.results.length === 4, '4 samples', s.message);
    check(keptOk, 'kept rows equal the input\'s quantised rows');
    check(filledOk && varied, 'the rest of every sample was filled', s.message);
    check(!s.error && /done in/.test(s.message), 'status line reports the time', s.message);
    await page.screenshot({ path: path.join(OUT, 'screenshot.png') });
    const tokensBefore = JSON.stringify(s.results.map((r) => r.tokens));
    isolatedTokens = tokensBefore;

    // Download one sample and the grid: PNG files named with the settings.
    const sampleName = new RegExp(`_rows${KEEP}_.*_seed3_sample3\\.png$`);
    for (const [act, arg, re] of [['png', 2, sampleName], ['grid', 0, /_grid\.png$/]]) {
      const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 10000 }),
                                      page.evaluate(([a, i]) => igptHost.action(a, i), [act, arg])]);
      const file = path.join(OUT, dl.suggestedFilename());
      await dl.saveAs(file);
      const head = fs.readFileSync(file).subarray(0, 8).toString('latin1');
      check(re.test(dl.suggestedFilename()) && head === '\x89PNG\r\n\x1a\n', `download ${act} as PNG`,
            dl.suggestedFilename());
    }

    // Entropy overlay + a pixel tooltip (hover a generated pixel), for the screenshot.
    await page.evaluate(() => igptHost.setSettings({ overlay: true }));
    await page.mouse.move(tx + tw * 0.5, ty + th * 0.8);
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(OUT, 'overlay.png') });
    await page.evaluate(() => igptHost.setSettings({ overlay: false }));

    // The crop line drags by touch (phones, tablets): touch events on the canvas, as a touch screen sends them.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
    const touch = (type, row) => cdp.send('Input.dispatchTouchEvent', {
      type, touchPoints: type === 'touchEnd' ? [] : [{ x: x + w / 2, y: y + row * cell }] });
    await touch('touchStart', KEEP + 0.5);
    for (const row of [KEEP - 2, KEEP - 5, 18.4]) { await page.waitForTimeout(50); await touch('touchMove', row); }
    await page.waitForTimeout(50);
    await touch('touchEnd');
    await page.waitForTimeout(200);
    s = await state(page);
    check(s.settings.rows === 18, 'crop line dragged by touch to row 18', 'rows ' + s.settings.rows);
    await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: false });
    await page.evaluate((k) => igptHost.action('rows', k), KEEP);

    // Open images the visitor's ways: the file picker and drag-and-drop onto the page (then undo both).
    await page.setInputFiles('#file-input', path.join(REPO, 'assets', 'samples', 'house.png'));
    await waitFor(page, () => igptHost.state().input === 'house.png', null, 10000, 'file picker');
    s = await state(page);
    check(s.input === 'house.png' && s.input_size[0] === 192 && !s.error, 'open an image with the file picker', s.message);
    const flower = fs.readFileSync(path.join(REPO, 'assets', 'samples', 'flower.png')).toString('base64');
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped-flower.png', { type: 'image/png' }));
      document.getElementById('canvas').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
    }, flower);
    await waitFor(page, () => igptHost.state().input === 'dropped-flower.png', null, 10000, 'drop');
    s = await state(page);
    check(s.input === 'dropped-flower.png' && s.results.length === 0, 'open an image by drag-and-drop', s.message);
    await page.evaluate(() => { igptHost.action('undo'); igptHost.action('undo'); });
    s = await state(page);
    check(JSON.stringify(s.results.map((r) => r.tokens)) === tokensBefore, 'undo back to the completed samples');

    // A corrupt image: one-line error, the input and results stay.
    await page.evaluate(() => igptHost.openBytes(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4]), 'corrupt.png'));
    s = await state(page);
    check(s.error && s.message.includes('corrupt.png') && !s.message.includes('\n'), 'corrupt image: one-line error',
          s.message);
    check(JSON.stringify(s.results.map((r) => r.tokens)) === tokensBefore && s.seen_tokens.length > 0,
          'corrupt image: the image and samples are kept');

    // A model that fails to download, and one that is not a model: one-line errors, the current model stays.
    const modelBefore = s.model;
    await page.evaluate(() => igptHost.setManifest(JSON.stringify({ models: [
      { name: 'missing', file: 'missing.safetensors', size: 10 },
      { name: 'not a model', file: '../samples/ball.png' }] })));
    await waitFor(page, () => /cannot load model/.test(igptHost.state().message), null, 10000, 'model error');
    s = await state(page);
    check(s.error && s.model_state === 2 && s.model === modelBefore, 'missing model: error, model kept', s.message);
    await page.evaluate(() => igptHost.action('model', 1));
    await waitFor(page, () => /not a model/.test(igptHost.state().message), null, 10000, 'corrupt model error');
    s = await state(page);
    check(s.error && s.model_state === 2 && s.model === modelBefore && !s.message.includes('\n'),
          'corrupt model: one-line error, model kept', s.message);

    // Re-roll, undo, use as input, cancel -- and the app still completes afterwards.
    await page.evaluate(() => igptHost.action('reroll', 1));
    await waitFor(page, () => !igptHost.state().running, null, 60000, 're-roll');
    s = await state(page);
    check(s.results[1].filled === s.n_ctx && JSON.stringify(s.results[0].tokens) === JSON.stringify(JSON.parse(tokensBefore)[0]),
          're-roll replaces one sample only');
    await page.evaluate(() => igptHost.action('undo'));
    s = await state(page);
    check(JSON.stringify(s.results.map((r) => r.tokens)) === tokensBefore, 'undo restores the samples');
    await page.evaluate(() => igptHost.action('use', 2));
    s = await state(page);
    check(s.input === 'sample 3' && s.results.length === 0 && s.seen_tokens.every((t, i) => t === JSON.parse(tokensBefore)[2][i]),
          'use a sample as the new input');
    await page.evaluate(() => igptHost.action('undo'));
    s = await state(page);
    check(s.input !== 'sample 3' && JSON.stringify(s.results.map((r) => r.tokens)) === tokensBefore, 'undo after use');
    await page.evaluate(() => { igptHost.action('samples', 16); igptHost.action('rows', 0); igptHost.action('complete'); });
    await page.waitForTimeout(300);
    await page.evaluate(() => igptHost.action('cancel'));
    s = await state(page);
    check(!s.running && s.message === 'cancelled', 'cancel stops at once');
    // Emscripten's table of live GL textures: 16 tiles (sample + overlay each), then 2.
    const liveTextures = () => page.evaluate(() => (typeof GL === 'undefined' ? NaN : GL.textures.filter((t) => t).length));
    const tex16 = await liveTextures();
    await page.evaluate(() => { igptHost.action('samples', 2); igptHost.action('rows', 28); igptHost.action('complete'); });
    await waitFor(page, () => !igptHost.state().running, null, 60000, 'completion after cancel');
    s = await state(page);
    check(s.results.length === 2 && s.results.every((r) => r.filled === s.n_ctx), 'completes again after cancel',
          s.message);
    const tex2 = await liveTextures();
    check(tex16 - tex2 >= 28, 'fewer samples free the GL textures of the tiles that go', `${tex16} -> ${tex2} live`);

    // A model file from the visitor's disk: the "Open model file..." button opens the file chooser; the file
    // (the build's random dev model under another name) is listed as "<file> (local)" and completes.
    const localName = 'my-igpt-s.safetensors (local)';
    const modelBytes = fs.readFileSync(path.join(ROOT, 'assets', 'models', 'dev-random.safetensors'));
    // The controls lose their progress line a frame after a completion ends, which moves the button: read
    // where it is once the layout has settled.
    await page.waitForTimeout(300);
    s = await state(page);
    const [bx, by, bw, bh] = s.open_model_rect;
    let chooser = null;
    for (let attempt = 0; attempt < 2 && !chooser; ++attempt) {  // a click the frame loop misses: once more
      try {
        [chooser] = await Promise.all([page.waitForEvent('filechooser', { timeout: 5000 }),
                                       page.mouse.click(bx + bw / 2, by + bh / 2)]);
      } catch (e) { /* reported below */ }
    }
    check(chooser !== null && !chooser.isMultiple(), '"Open model file..." opens a file chooser', `button at ${bx},${by}`);
    if (chooser) await chooser.setFiles({ name: 'my-igpt-s.safetensors', mimeType: 'application/octet-stream',
                                          buffer: modelBytes });
    else await page.setInputFiles('#model-input', { name: 'my-igpt-s.safetensors', mimeType: 'application/octet-stream',
                                                    buffer: modelBytes });
    await waitFor(page, (n) => igptHost.state().model === n && igptHost.state().model_state === 2, localName, 20000,
                  'local model');
    s = await state(page);
    check(s.model === localName && !s.error && s.models.some((m) => m.name === localName && m.local),
          'local model file: listed as "(local)" and loaded', s.message);
    await page.evaluate(() => igptHost.action('complete'));
    await waitFor(page, () => !igptHost.state().running, null, 60000, 'completion with the local model');
    s = await state(page);
    check(s.model === localName && s.results.length === 2 && s.results.every((r) => r.filled === s.n_ctx) &&
          /done in/.test(s.message), 'local model: completion runs', s.message);
    await page.screenshot({ path: path.join(OUT, 'local-model.png') });
    const localTokens = JSON.stringify(s.results.map((r) => r.tokens));
    const inputBefore = s.input, settingsBefore = JSON.stringify(s.settings);

    // A corrupt model file dropped on the page: one-line error; model, list, image, samples and settings stay.
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'broken.safetensors', { type: 'application/octet-stream' }));
      document.getElementById('canvas').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
    }, modelBytes.subarray(0, 3000).toString('base64'));
    await waitFor(page, () => /cannot load model/.test(igptHost.state().message), null, 10000, 'corrupt local model');
    s = await state(page);
    check(s.error && /broken\.safetensors/.test(s.message) && !s.message.includes('\n') && s.model === localName &&
          s.model_state === 2, 'corrupt model file: one-line error, local model kept', s.message);
    check(!s.models.some((m) => /broken/.test(m.name)) && s.models.some((m) => m.name === localName) &&
          s.input === inputBefore && JSON.stringify(s.results.map((r) => r.tokens)) === localTokens &&
          JSON.stringify(s.settings) === settingsBefore, 'corrupt model file: not listed; image, samples, settings kept');

    // A file over the browser's limit (1 GB) is refused before it is read.
    await page.evaluate(() => igptHost.openModelFile({ name: 'huge.safetensors', size: 3 * 2 ** 30,
                                                      arrayBuffer: () => { throw new Error('must not be read'); } }));
    await page.waitForTimeout(200);
    s = await state(page);
    check(s.error && /too large/.test(s.message) && !s.message.includes('\n') && s.model === localName &&
          !s.models.some((m) => /huge/.test(m.name)), 'too-large model file: one-line error, model kept', s.message);

    // Settings come back after a reload (URL + localStorage).
    await page.waitForTimeout(600);  // settings are saved at most every 400 ms
    await page.goto(server.url);      // no URL parameters: localStorage only
    await waitFor(page, () => typeof igptHost !== "undefined" && igptHost.app && igptHost.state().model_state === 2, null, 60000,
                  'reload');
    s = await state(page);
    check(s.settings.rows === 28 && s.settings.samples === 2 && s.settings.seed === 3, 'settings survive a reload',
          JSON.stringify(s.settings));
    check(/from the browser cache/.test(s.message), 'model comes from the cache the second time', s.message);
    check(await page.evaluate(() => !!navigator.serviceWorker.controller && self.crossOriginIsolated),
          'second visit: served by the service worker and still cross-origin isolated');
    let ci = await cacheInfo(page);
    check(['/', '/index.html', '/shell.js', '/igpt_web_rs.js', '/igpt_web_rs.wasm', '/igpt_web_rs.worker.js',
           '/assets/models/manifest.json', '/assets/samples/house.png'].every((f) => ci.files.includes(f)) &&
          !ci.files.some((f) => /igpt_web(_st)?\.wasm/.test(f)), 'the app shell is in the service worker\'s cache',
          `${ci.files.length} files`);

    // Offline: the server is gone; a reload starts from the service worker's cache, the model from the
    // model cache, and a completion runs -- still cross-origin isolated, still threaded.
    server.proc.kill();
    await new Promise((r) => server.proc.once('exit', r));
    await page.reload();
    const offlineUp = await waitFor(page, appReady, null, 60000, 'offline reload');
    if (offlineUp) {
      s = await state(page);
      check(await page.evaluate(() => self.crossOriginIsolated) && s.threaded, 'offline reload: threaded, isolated');
      await page.evaluate(() => { igptHost.action('samples', 1); igptHost.action('rows', 28); igptHost.action('complete'); });
      await waitFor(page, () => !igptHost.state().running, null, 60000, 'offline completion');
      s = await state(page);
      check(s.results.length === 1 && s.results[0].filled === s.n_ctx, 'offline: the app starts and completes',
            s.message);
    }
    // "clear cache" deletes both the model cache and the offline copy.
    await page.evaluate(() => igptHost.action('clear_cache'));
    await waitFor(page, () => /cleared/.test(igptHost.state().message), null, 10000, 'clear cache');
    ci = await cacheInfo(page);
    check(!ci.keys.some((k) => k.startsWith('igpt-')), '"clear cache" empties the model cache and the offline copy',
          ci.keys.join(', '));
  } finally {
    const errors = consoleLines.filter((l) => /pageerror|Aborted|RuntimeError/.test(l));
    check(errors.length === 0, 'no page errors', errors.slice(0, 3).join(' | '));
    fs.writeFileSync(path.join(OUT, 'console.log'), consoleLines.join('\n') + '\n');
    await browser.close();
    server.proc.kill();
  }
  await singleThreaded(await plainSimd(isolatedTokens));
  await threadedStartFails();
}

// The threaded build without relaxed SIMD (wasm=simd128 in the URL; what browsers without relaxed SIMD run):
// starts and completes the main run's first completion (seed 3, 4 samples, KEEP rows, 1 thread). Its samples
// are those the single-threaded build, which has the same SIMD128 kernels, must reproduce; the relaxed build's
// fused multiply-adds round differently, so its samples may part from these (how far is printed).
async function plainSimd(relaxedTokens) {
  const server = await startServer();
  const browser = await launchChromium();
  const lines = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('pageerror', (e) => lines.push('pageerror: ' + e.message));
    await page.goto(server.url + `?wasm=simd128&model=tiny&seed=3&samples=4&rows=${KEEP}&temperature=1&top_k=0&threads=1`);
    if (!await waitFor(page, appReady, null, 90000, 'SIMD128 threaded app')) return null;
    let s = await state(page);
    check(s.threaded && s.relaxed_simd === false && s.mode_note === '',
          'wasm=simd128: the threaded build without relaxed SIMD (igpt_web) runs');
    await page.evaluate(() => igptHost.action('complete'));
    await waitFor(page, () => !igptHost.state().running, null, 120000, 'SIMD128 completion');
    s = await state(page);
    const kept = KEEP * s.image_w;
    check(s.results.length === 4 && s.results.every((r) => r.kept === kept && r.filled === s.n_ctx &&
          r.tokens.slice(0, kept).every((t, i) => t === s.seen_tokens[i])) && /done in/.test(s.message),
          'wasm=simd128: completes, kept rows equal the input\'s quantised rows', s.message);
    check(lines.length === 0, 'wasm=simd128: no page errors', lines.slice(0, 3).join(' | '));
    const tokens = s.results.map((r) => r.tokens);
    if (relaxedTokens) {
      const other = JSON.parse(relaxedTokens);
      const firstDiff = tokens.map((t, i) => {
        const j = t.findIndex((x, k) => x !== other[i][k]);
        return j < 0 ? 'same' : j;
      });
      console.log(`relaxed SIMD vs SIMD128 samples (seed 3): first differing token per sample: ${firstDiff.join(', ')}`);
    }
    return JSON.stringify(tokens);
  } finally {
    await browser.close();
    server.proc.kill();
  }
}

// the main run's first completion: seed 3, 4 samples, KEEP rows kept, 1 thread (relaxed SIMD)
let isolatedTokens = null;

// A page that is not cross-origin isolated (serve.py --no-isolation): the single-threaded build starts, says
// why in the UI, completes (kept rows = the input's quantised rows; the same tokens as the plain threaded
// build for the same settings), fills the tiles progressively while frames keep coming, and cancels.
async function singleThreaded(expectTokens) {
  const server = await startServer(['--no-isolation']);
  const browser = await launchChromium();
  const lines = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('console', (m) => lines.push(m.text()));
    page.on('pageerror', (e) => lines.push('pageerror: ' + e.message));
    await page.goto(server.url + `?model=tiny&seed=3&samples=4&rows=${KEEP}&temperature=1&top_k=0`);
    check(await page.evaluate(() => self.crossOriginIsolated === false), 'no-isolation page is not isolated');
    if (!await waitFor(page, appReady, null, 90000, 'single-threaded app')) return;
    let s = await state(page);
    check(!s.threaded && /single-threaded mode/.test(s.mode_note) && /not cross-origin isolated/.test(s.mode_note),
          'single-threaded build runs and the UI says why', s.mode_note);
    const idleFps = await page.evaluate(countFrames);
    const watch = await watchCompletion(page);
    await waitFor(page, () => !igptHost.state().running, null, 300000, 'single-threaded completion');
    s = await state(page);
    const kept = KEEP * s.image_w;
    check(s.results.length === 4 && s.results.every((r) => r.kept === kept && r.filled === s.n_ctx &&
          r.tokens.slice(0, kept).every((t, i) => t === s.seen_tokens[i])) && /done in/.test(s.message),
          'single-threaded: completes, kept rows equal the input\'s quantised rows', s.message);
    if (expectTokens)
      check(JSON.stringify(s.results.map((r) => r.tokens)) === expectTokens,
            'single-threaded: the same samples as the threaded SIMD128 build for the same seed');
    const partial = watch.levels.filter((f) => f > kept && f < watch.n_ctx).length;
    check(partial >= 2, 'single-threaded: tiles fill in progressively',
          `${partial} partial levels, ${(watch.ms / 1000).toFixed(2)} s`);
    const fps = watch.frames / Math.max(0.001, watch.ms / 1000);
    check(fps >= 3, 'single-threaded: UI keeps drawing during completion',
          `${fps.toFixed(1)} frames/s drawn while running, rAF at ${idleFps}/s idle`);
    await page.screenshot({ path: path.join(OUT, 'single-threaded.png') });
    await page.evaluate(() => { igptHost.action('samples', 16); igptHost.action('rows', 0); igptHost.action('complete'); });
    await page.waitForTimeout(300);
    s = await state(page);
    const wasRunning = s.running;
    await page.evaluate(() => igptHost.action('cancel'));
    s = await state(page);
    check(wasRunning && !s.running && s.message === 'cancelled', 'single-threaded: cancel stops at once');
    await page.evaluate(() => { igptHost.action('samples', 1); igptHost.action('rows', 28); igptHost.action('complete'); });
    await waitFor(page, () => !igptHost.state().running, null, 60000, 'single-threaded completion after cancel');
    s = await state(page);
    check(s.results.length === 1 && s.results[0].filled === s.n_ctx, 'single-threaded: completes after cancel',
          s.message);
  } finally {
    const errors = lines.filter((l) => /pageerror|Aborted|RuntimeError/.test(l));
    check(errors.length === 0, 'single-threaded: no page errors', errors.slice(0, 3).join(' | '));
    await browser.close();
    server.proc.kill();
  }
}

// A cross-origin isolated page whose worker threads cannot start (their script fails to load) falls back
// to the single-threaded build instead of hanging; and a model the cache refuses (quota exceeded) is kept
// in memory, and the page says so.
async function threadedStartFails() {
  const server = await startServer();
  const browser = await launchChromium();
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    await context.route(/igpt_web(_rs)?\.worker\.js$/, (r) => r.abort());  // either threaded build's
    await context.addInitScript(() => {
      const put = Cache.prototype.put;
      Cache.prototype.put = function (req, resp) {
        if (/safetensors/.test(typeof req === 'string' ? req : req.url))
          return Promise.reject(new DOMException('quota', 'QuotaExceededError'));
        return put.call(this, req, resp);
      };
    });
    const page = await context.newPage();
    await page.goto(server.url + '?startup_timeout=6');
    if (!await waitFor(page, appReady, null, 90000, 'fallback after a failed threaded start')) return;
    const s = await state(page);
    check(!s.threaded && /single-threaded mode/.test(s.mode_note) &&
          /did not start|stopped at start-up/.test(s.mode_note), 'threads that cannot start: single-threaded fallback',
          s.mode_note);
    check(/kept in memory only.*storage full/.test(s.message), 'cache quota exceeded: model kept in memory, page says so',
          s.message);
    // No model in the URL or in storage: the manifest's first model is the default.
    const served = JSON.parse(fs.readFileSync(path.join(ROOT, 'assets', 'models', 'manifest.json'), 'utf8'));
    const first = (served.models || served)[0].name;
    check(s.model === first, 'no model asked for: the manifest\'s first model is loaded', `${s.model} (first: ${first})`);
    // The manifest's validation bits per pixel reach the app (shown under the model list).
    const want = (served.models || served).map((m) => `${m.name} ${m.val_bpp || 0}`).join(', ');
    const have = s.models.filter((m) => !m.local).map((m) => `${m.name} ${m.val_bpp}`).join(', ');
    check(have === want && s.models.some((m) => m.val_bpp > 0), 'models carry their validation bits per pixel', have);
  } finally {
    await browser.close();
    server.proc.kill();
  }
}

main().catch((e) => { check(false, 'e2e crashed: ' + (e.stack || e)); }).finally(() => {
  console.log(`e2e: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
