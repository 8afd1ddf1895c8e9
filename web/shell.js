// The page shell: picks the wasm build (threaded when the page is cross-origin isolated, else the
// single-threaded fallback), starts it, then hands the app the settings (URL over localStorage), the model
// list, the sample images and dropped files, and registers the service worker (offline copy, web/sw.js).
'use strict';

(function () {
  const note = document.getElementById('note');
  const canvas = document.getElementById('canvas');
  const params = new URLSearchParams(location.search);
  const embed = params.get('embed') === '1';
  if (embed) document.body.classList.add('embed');

  function showNote(msg) {
    note.textContent = msg;
    note.hidden = false;
  }
  igptHost.fatal = showNote;

  if (typeof WebAssembly !== 'object' || typeof WebAssembly.Memory !== 'function') {
    showNote('This browser has no WebAssembly.');
    return;
  }

  // Which build. Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages
  // (COOP + COEP headers; an iframe also needs allow="cross-origin-isolated" and an isolated host page).
  // Without them the single-threaded build runs: the same app, completions stepped between frames.
  // A threaded start that fails or hangs (workers that cannot start) reloads once into that build too.
  const FALLBACK_KEY = 'igpt.fallback';
  let fallback = null;
  try {
    fallback = sessionStorage.getItem(FALLBACK_KEY);
    sessionStorage.removeItem(FALLBACK_KEY);  // one reload only: the next visit tries threads again
  } catch (e) { /* storage disabled */ }
  let why = '';
  if (params.get('wasm') === 'st') why = 'asked for by the URL (wasm=st)';
  else if (!self.crossOriginIsolated) why = 'this page is not cross-origin isolated';
  else if (typeof SharedArrayBuffer === 'undefined') why = 'this browser has no SharedArrayBuffer';
  else if (fallback) why = fallback;

  // The wasm memory of the threaded build, made here so that a browser that cannot reserve the build's
  // maximum (2 GB, -sMAXIMUM_MEMORY in web/CMakeLists.txt; e.g. iOS) still starts, with less room for large
  // models. The single-threaded build makes its own (not shared), growing up to 2 GB.
  let wasmMemory = null;
  if (!why) {
    for (const mb of [2048, 1024, 512]) {
      try {
        wasmMemory = new WebAssembly.Memory({ initial: 64 * 16, maximum: mb * 16, shared: true });
        igptHost.memoryLimit = mb * 1048576;
        break;
      } catch (e) { /* try a smaller reservation */ }
    }
    if (!wasmMemory) why = 'this browser cannot make shared WebAssembly memory';
  }
  const threaded = !why;
  if (!threaded) igptHost.memoryLimit = 2048 * 1048576;
  // The threaded build comes in two: with relaxed SIMD (fused multiply-adds; Chromium 114+; up to ~1.3x
  // faster, web/README.md "Speed"), where the browser validates this probe module (one
  // f32x4.relaxed_madd), else plain SIMD128. wasm=simd128 in the URL asks for the plain one.
  const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
                                        10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);
  let relaxed = false;
  try { relaxed = threaded && params.get('wasm') !== 'simd128' && WebAssembly.validate(RELAXED_PROBE); } catch (e) { }
  const build = !threaded ? 'igpt_web_st' : relaxed ? 'igpt_web_rs' : 'igpt_web';
  igptHost.modeNote = threaded ? '' : `single-threaded mode: ${why}, so completion is slower`;
  let started = false;

  // Before the app is up, a failed threaded start goes to the single-threaded build (one reload).
  function fallBack(reason) {
    if (started || !threaded) return false;
    try {
      sessionStorage.setItem(FALLBACK_KEY, reason);
    } catch (e) {
      const u = new URL(location.href);
      u.searchParams.set('wasm', 'st');
      location.replace(u.href);
      return true;
    }
    location.reload();
    return true;
  }

  window.Module = {
    canvas,
    wasmMemory,
    print: (t) => console.log(t),
    printErr: (t) => console.warn(t),
    onAbort: (what) => {
      if (!fallBack('the threaded build stopped at start-up (' + what + ')'))
        showNote('The app stopped: ' + what + '. Reload the page to start again.');
    },
  };

  // Never hang at start-up: a threaded build that has not come up in time (e.g. its worker threads cannot
  // start) falls back to the single-threaded one; that one, if it hangs too, says so.
  const timeoutS = Number(params.get('startup_timeout')) || (threaded ? 20 : 60);
  const startTimer = setTimeout(() => {
    if (!fallBack(`WebAssembly threads did not start within ${timeoutS} s`))
      showNote(`The app did not start within ${timeoutS} s. Try reloading.`);
  }, timeoutS * 1000);

  function settingsFromPage() {
    let s = {};
    try { s = JSON.parse(localStorage.getItem('igpt.settings') || '{}') || {}; } catch (e) { s = {}; }
    for (const k of ['model', 'rows', 'samples', 'temperature', 'top_k', 'seed', 'threads', 'overlay']) {
      if (params.has(k)) s[k] = params.get(k);
    }
    return s;
  }

  async function fetchBytes(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }

  async function openFile(file) {
    try {
      igptHost.openBytes(new Uint8Array(await file.arrayBuffer()), file.name);
    } catch (e) {
      igptHost.say(`${file.name}: ${e.message || e}`, true);
    }
  }

  igptHost.onReady = async function () {
    started = true;
    clearTimeout(startTimer);
    document.getElementById('loading').hidden = true;
    Module._igpt_web_set_flags(igptHost.app, embed ? 1 : 0, params.get('autoplay') === '1' ? 1 : 0,
                               navigator.hardwareConcurrency || 2);
    if (igptHost.modeNote) igptHost.withStrings([igptHost.modeNote], (n) => Module._igpt_web_set_mode_note(igptHost.app, n));
    registerServiceWorker();
    igptHost.setSettings(settingsFromPage());

    // An image given in the URL (same origin only), then the shipped samples.
    const img = params.get('image');
    if (img) {
      const u = new URL(img, location.href);
      if (u.origin !== location.origin) igptHost.say('image= must be on this site (same origin)', true);
      else await fetchBytes(u.href).then((b) => igptHost.openBytes(b, u.pathname.split('/').pop()),
                                         (e) => igptHost.say(String(e.message || e), true));
    }
    try {
      const list = await (await fetch('assets/samples/index.json')).json();
      for (const name of list.samples || []) {
        try { igptHost.addGallery(await fetchBytes('assets/samples/' + name), name); } catch (e) { /* skip */ }
      }
    } catch (e) {
      igptHost.say('no sample images (assets/samples/index.json)', true);
    }
    try {
      const r = await fetch('assets/models/manifest.json');
      if (!r.ok) throw new Error('HTTP ' + r.status);
      igptHost.setManifest(await r.text());
    } catch (e) {
      igptHost.say('cannot read the model list: ' + (e.message || e), true);
    }
  };

  // A model file (.safetensors) from the visitor's disk: read by igptHost.loadLocalModel when the app asks.
  function openModelFile(file) {
    try {
      igptHost.openModelFile(file);
    } catch (e) {
      igptHost.say(`${file.name}: ${e.message || e}`, true);
    }
  }
  const isModelFile = (f) => /\.safetensors$/i.test(f.name);

  // Files: the pickers and drag-and-drop anywhere on the page (a .safetensors file is a model, else an image).
  document.getElementById('file-input').addEventListener('change', (ev) => {
    if (ev.target.files.length) openFile(ev.target.files[0]);
    ev.target.value = '';
  });
  document.getElementById('model-input').addEventListener('change', (ev) => {
    if (ev.target.files.length && igptHost.app) openModelFile(ev.target.files[0]);
    ev.target.value = '';
  });
  document.addEventListener('dragover', (ev) => { ev.preventDefault(); document.body.classList.add('drop'); });
  document.addEventListener('dragleave', () => document.body.classList.remove('drop'));
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    document.body.classList.remove('drop');
    const f = ev.dataTransfer && ev.dataTransfer.files[0];
    if (f && igptHost.app) (isModelFile(f) ? openModelFile : openFile)(f);
  });
  canvas.addEventListener('contextmenu', (ev) => ev.preventDefault());

  // The offline copy (web/sw.js): the shell, plus the files of the build that started. Not from file://
  // pages or where the browser refuses it (private mode, some iframes): the app runs without it.
  function registerServiceWorker() {
    if (!('serviceWorker' in navigator) || !/^https?:$/.test(location.protocol)) return;
    const files = threaded ? [build + '.js', build + '.wasm', build + '.worker.js'] : [build + '.js', build + '.wasm'];
    navigator.serviceWorker.register('sw.js')
      .then(() => navigator.serviceWorker.ready)
      .then((reg) => { if (reg.active) reg.active.postMessage({ cache: files }); })
      .catch((e) => console.warn('no offline copy: ' + (e.message || e)));
  }

  const s = document.createElement('script');
  s.src = build + '.js';
  s.onerror = () => {
    if (!fallBack(`cannot load ${build}.js`))
      showNote(`Cannot load ${build}.js (was the app built? scripts/build_web.sh)`);
  };
  document.body.appendChild(s);
})();
