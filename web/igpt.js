// The thin binding between the page and the wasm app (web/bridge.cpp). C++ calls the igptHost methods;
// igptHost calls the igpt_web_* exports with the App handle it was given in ready(). Byte buffers go in
// through _malloc (the C++ side frees them).
'use strict';

const igptHost = {
  app: 0,           // App* handle from C++
  onReady: null,    // set by shell.js
  memoryLimit: 0,   // bytes the wasm memory may grow to (set by shell.js, which creates the memory)
  localModels: new Map(),  // "<file name> (local)" -> File on the visitor's disk (read again when chosen)

  // The heap view, fresh: a worker thread may have grown the (shared) memory since the last look.
  heap() {
    const buf = Module.wasmMemory ? Module.wasmMemory.buffer : Module.HEAPU8.buffer;
    return Module.HEAPU8 && Module.HEAPU8.buffer === buf ? Module.HEAPU8 : new Uint8Array(buf);
  },
  withStrings(strings, fn) {
    const ptrs = strings.map((s) => {
      const n = lengthBytesUTF8(s) + 1;
      const p = Module._malloc(n);
      stringToUTF8(s, p, n);
      return p;
    });
    try { return fn(...ptrs); } finally { ptrs.forEach((p) => Module._free(p)); }
  },
  copyIn(bytes) {  // -> pointer, owned by C++ after the call
    const p = Module._malloc(Math.max(1, bytes.length));
    if (!p) throw new Error('out of memory');
    this.heap().set(bytes, p);
    return p;
  },

  // ---- called from C++ ----
  ready(app) {
    this.app = app;
    if (this.onReady) this.onReady();
  },
  saveSettings(json) {
    try { localStorage.setItem('igpt.settings', json); } catch (e) { /* private mode: URL only */ }
    const s = JSON.parse(json);
    const url = new URL(location.href);
    for (const [k, v] of Object.entries(s)) {
      if (v === '' || v === false) url.searchParams.delete(k);
      else url.searchParams.set(k, v === true ? '1' : String(typeof v === 'number' ? +v.toFixed(4) : v));
    }
    try { history.replaceState(null, '', url); } catch (e) { /* rate-limited: next change retries */ }
  },
  loadModel(url, name, size) {
    igptModels.fetch(url, size, (loaded, total) => Module._igpt_web_model_progress(this.app, loaded, total))
      .then(({ bytes, note }) => {
        let p;
        try { p = this.copyIn(bytes); } catch (e) { throw new Error(`model '${name}' does not fit in memory`); }
        this.withStrings([name, note], (n, t) => Module._igpt_web_model_bytes(this.app, p, bytes.length, n, t));
      })
      .catch((e) => this.withStrings([name, String(e.message || e)],
                                     (n, w) => Module._igpt_web_model_failed(this.app, n, w)));
  },
  pickFile() { document.getElementById('file-input').click(); },
  pickModelFile() { document.getElementById('model-input').click(); },
  memoryMax() {
    return this.memoryLimit || (Module.wasmMemory ? 2147483648 : 0);
  },
  // A model file from the visitor's disk: the app lists it and asks for its bytes (loadLocalModel).
  openModelFile(file) {
    const name = `${file.name} (local)`;
    const ok = this.withStrings([file.name], (n) => Module._igpt_web_add_local_model(this.app, n, file.size));
    if (ok) this.localModels.set(name, file);  // before the app's request is served (asynchronously, below)
  },
  loadLocalModel(name) {
    // Called from C++ during add_local_model, so the File is looked up once the call has returned.
    Promise.resolve().then(async () => {
      const file = this.localModels.get(name);
      if (!file) throw new Error(`${name}: the file is no longer available; open it again`);
      let bytes;
      try {
        bytes = new Uint8Array(await file.arrayBuffer());
      } catch (e) {
        throw new Error(`cannot read ${file.name} (${e.name || e}); open it again`);
      }
      Module._igpt_web_model_progress(this.app, bytes.length, bytes.length);
      let p;
      try { p = this.copyIn(bytes); } catch (e) { throw new Error(`${file.name} does not fit in this browser's memory`); }
      this.withStrings([name, `local file, ${(bytes.length / 1048576).toFixed(1)} MB`],
                       (n, t) => Module._igpt_web_model_bytes(this.app, p, bytes.length, n, t));
    }).catch((e) => this.withStrings([name, String(e.message || e)],
                                     (n, w) => Module._igpt_web_model_failed(this.app, n, w)));
  },
  download(name, ptr, size) {
    const bytes = this.heap().slice(ptr, ptr + size);  // a copy: Blob refuses views of shared memory
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  },
  clearCache() {
    igptModels.clear().then((n) => this.say(n ? 'cleared the cached models and the offline copy of the app'
                                              : 'nothing cached to clear'),
                                (e) => this.say('cannot clear the cache: ' + e.message, true));
  },
  copyEmbedSnippet() {
    const url = new URL(location.href);
    url.searchParams.set('embed', '1');
    url.searchParams.set('autoplay', '1');
    const html = `<iframe src="${url.href}" width="720" height="640" style="border:0" ` +
                 `allow="cross-origin-isolated" loading="lazy"></iframe>`;
    navigator.clipboard.writeText(html).then(() => this.say('embed code copied to the clipboard'),
                                             () => this.say('embed code: ' + html));
  },

  // ---- called from the page ----
  say(msg, error) { this.withStrings([msg], (m) => Module._igpt_web_say(this.app, m, error ? 1 : 0)); },
  openBytes(bytes, name) {
    const p = this.copyIn(bytes);
    this.withStrings([name], (n) => Module._igpt_web_open_image(this.app, p, bytes.length, n));
  },
  addGallery(bytes, name) {
    const p = this.copyIn(bytes);
    this.withStrings([name], (n) => Module._igpt_web_add_gallery(this.app, p, bytes.length, n));
  },
  setSettings(obj) { this.withStrings([JSON.stringify(obj)], (j) => Module._igpt_web_set_settings(this.app, j)); },
  setManifest(text) { this.withStrings([text], (j) => Module._igpt_web_set_manifest(this.app, j)); },

  // Test hook / automation: state as an object, and actions ('complete', 'cancel', 'undo', 'reroll', ...).
  state() { return JSON.parse(UTF8ToString(Module._igpt_web_state(this.app))); },
  // Cheap to poll (state() copies every sample's tokens: ~4 ms with 8 samples of 1024).
  running() { return Module._igpt_web_running(this.app) !== 0; },
  action(name, arg = 0) { this.withStrings([name], (a) => Module._igpt_web_action(this.app, a, arg)); },
};
