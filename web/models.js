// Model download + cache. One overall progress callback (bytes so far, total); the bytes are kept in the
// Cache API (awaited) so a second visit starts without the network. When the cache is missing or full the
// model is kept in memory only, and the caller is told so.
'use strict';

const igptModels = {
  CACHE: 'igpt-models-v1',

  // -> {bytes: Uint8Array, note: string}. Throws Error with a one-line message.
  async fetch(url, expectedSize, onProgress) {
    const key = new URL(url, location.href).href + (expectedSize ? '#' + expectedSize : '');
    let cache = null;
    try {
      if (self.caches) cache = await caches.open(this.CACHE);
    } catch (e) {
      cache = null;  // e.g. storage disabled: fall through to the network
    }
    if (cache) {
      const hit = await cache.match(key).catch(() => null);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (!expectedSize || bytes.length === expectedSize) {
          onProgress(bytes.length, bytes.length);
          return { bytes, note: 'from the browser cache' };
        }
        await cache.delete(key).catch(() => {});
      }
    }
    let resp;
    try {
      resp = await fetch(url);
    } catch (e) {
      throw new Error(`download of ${url} failed (${e.message || e}); offline?`);
    }
    if (!resp.ok) throw new Error(`download of ${url} failed: HTTP ${resp.status}`);
    const total = Number(resp.headers.get('Content-Length')) || expectedSize || 0;
    const parts = [];
    let loaded = 0;
    const reader = resp.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      loaded += value.length;
      onProgress(loaded, total);
    }
    const bytes = new Uint8Array(loaded);
    let at = 0;
    for (const p of parts) { bytes.set(p, at); at += p.length; }
    if (total && loaded !== total) throw new Error(`download of ${url} was cut short (${loaded} of ${total} bytes)`);
    let note = 'downloaded';
    if (!cache) {
      note = 'kept in memory only: no cache storage in this browser';
    } else {
      try {
        await cache.put(key, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
        note = 'downloaded and cached';
      } catch (e) {
        note = `kept in memory only: the cache refused it (${e.name === 'QuotaExceededError' ? 'storage full' : e.name})`;
      }
    }
    return { bytes, note };
  },

  // "clear cache": the cached models and the service worker's offline copy of the app (web/sw.js caches
  // 'igpt-app-<build>'; it fills again on the next visit). -> number of caches deleted.
  async clear() {
    if (!self.caches) return 0;
    const keys = (await caches.keys()).filter((k) => k === this.CACHE || k.startsWith('igpt-app-'));
    await Promise.all(keys.map((k) => caches.delete(k)));
    return keys.length;
  },
};
