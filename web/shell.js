// The page shell: checks that WebAssembly threads can run (cross-origin isolation), starts the wasm app,
// then hands it the settings (URL over localStorage), the model list, the sample images and dropped files.
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

  // Threads need SharedArrayBuffer, which needs a cross-origin isolated page (COOP + COEP headers).
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer === 'undefined') {
    showNote('This page is not cross-origin isolated, so WebAssembly threads are unavailable and the app ' +
             'cannot start. Serve it with "Cross-Origin-Opener-Policy: same-origin" and ' +
             '"Cross-Origin-Embedder-Policy: require-corp" (python3 serve.py does), and when embedding ' +
             'it in an <iframe>, the host page needs the same headers and allow="cross-origin-isolated".');
    return;
  }
  if (typeof WebAssembly !== 'object' || typeof WebAssembly.Memory !== 'function') {
    showNote('This browser has no WebAssembly.');
    return;
  }

  // The wasm memory, made here so that a browser that cannot reserve the build's maximum (2 GB,
  // -sMAXIMUM_MEMORY in web/CMakeLists.txt; e.g. iOS) still starts, with less room for large models.
  let wasmMemory = null;
  for (const mb of [2048, 1024, 512]) {
    try {
      wasmMemory = new WebAssembly.Memory({ initial: 64 * 16, maximum: mb * 16, shared: true });
      igptHost.memoryLimit = mb * 1048576;
      break;
    } catch (e) { /* try a smaller reservation */ }
  }

  window.Module = {
    canvas,
    wasmMemory,
    print: (t) => console.log(t),
    printErr: (t) => console.warn(t),
    onAbort: (what) => showNote('The app stopped: ' + what + '. Reload the page to start again.'),
  };

  // Never hang at start-up: if the app has not come up after 30 s (e.g. workers cannot start), say so.
  const startTimer = setTimeout(() => showNote('The app did not start within 30 s (WebAssembly threads ' +
                                               'could not start?). Try reloading.'), 30000);

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
    clearTimeout(startTimer);
    document.getElementById('loading').hidden = true;
    Module._igpt_web_set_flags(igptHost.app, embed ? 1 : 0, params.get('autoplay') === '1' ? 1 : 0,
                               navigator.hardwareConcurrency || 2);
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

  const s = document.createElement('script');
  s.src = 'igpt_web.js';
  s.onerror = () => showNote('Cannot load igpt_web.js (was the app built? scripts/build_web.sh)');
  document.body.appendChild(s);
})();
