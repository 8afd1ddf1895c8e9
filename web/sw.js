// The app's service worker: keeps the app shell (page, scripts, wasm, sample images, model list) in a cache
// of its own so that a second visit starts without waiting for the network and works offline. Models are
// not handled here: models.js keeps them in their own cache ('igpt-models-v1').
//
// Cache-first for the shell. The cache is versioned by the build: scripts/build_web.sh writes the hash of
// the shell's files into VERSION (web/tools/stamp_sw.py), so a new build is a new sw.js, which the browser
// installs in the background; it takes over at once and deletes the older caches.
//
// Cross-origin isolation survives: what is served from the cache are the server's own responses, stored
// whole, headers included (Cross-Origin-Opener-Policy / -Embedder-Policy / -Resource-Policy from serve.py).
'use strict';

const VERSION = '@IGPT_SW_VERSION@';
const CACHE = 'igpt-app-' + VERSION;
// Fetched at install. The wasm build in use (threaded or single-threaded: only one is downloaded) is added
// when the page says which one it started (message {cache: [...]}) or when it is fetched through here.
const SHELL = ['./', 'index.html', 'style.css', 'models.js', 'igpt.js', 'shell.js', 'assets/models/manifest.json',
               'assets/samples/index.json'];

async function precache() {
  const cache = await caches.open(CACHE);
  await cache.addAll(SHELL);
  try {  // the sample images the page lists
    const list = await (await cache.match('assets/samples/index.json')).json();
    await cache.addAll((list.samples || []).map((n) => 'assets/samples/' + n));
  } catch (e) { /* no samples: the page says so */ }
}

self.addEventListener('install', (ev) => {
  ev.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('igpt-app-') && k !== CACHE)
                                    .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// Only same-origin GETs of the shell; models (.safetensors) go to the network (models.js caches them).
function isShell(url) {
  return url.origin === self.location.origin && !/\.safetensors$/i.test(url.pathname) &&
         url.pathname.startsWith(new URL(self.registration.scope).pathname);
}

async function fromCacheOrNetwork(req) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(req, { ignoreSearch: req.mode === 'navigate' });
  if (hit) return hit;
  const resp = await fetch(req);
  // Only whole, successful responses: a partial (206) or error response must not become the offline copy.
  if (resp.ok && resp.status === 200 && resp.type === 'basic') {
    const key = req.mode === 'navigate' ? new URL(req.url).pathname : req;
    await cache.put(key, resp.clone()).catch(() => {});  // storage full: served anyway, just not kept
  }
  return resp;
}

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET' || !isShell(new URL(req.url))) return;
  ev.respondWith(fromCacheOrNetwork(req));
});

// The page names the files of the wasm build it started: kept for the next (offline) visit. The browser's
// HTTP cache answers these requests (revalidated: a few hundred bytes each), so nothing is downloaded twice.
self.addEventListener('message', (ev) => {
  const files = ev.data && Array.isArray(ev.data.cache) ? ev.data.cache : [];
  ev.waitUntil(caches.open(CACHE).then((cache) => Promise.all(files.map(async (f) => {
    const url = new URL(f, self.registration.scope);
    if (!isShell(url) || await cache.match(url)) return;
    const resp = await fetch(url);
    if (resp.ok && resp.status === 200) await cache.put(url, resp);
  }))).then(() => { if (ev.source) ev.source.postMessage({ cached: files }); }).catch(() => {}));
});
