// The PAD's service worker: the app's own files (the shell, scripts, styles, icons, the decoder) from the
// network first and from its cache when the Wi-Fi drops, so the app still opens. Nothing else is ever
// cached: every API answer (/v1/...) holds store or customer data and goes straight to the network.

const CACHE = 'pad-shell-v1';
const SHELL = [
  '/pad', '/pad/static/pad.js', '/pad/static/api.js', '/pad/static/ui.js', '/pad/static/scan.js',
  '/pad/static/customers.js', '/pad/static/help.js', '/pad/static/pickup.js', '/pad/static/returns.js',
  '/pad/static/product.js', '/pad/static/stock.js', '/pad/static/pad.css', '/pad/static/manifest.webmanifest',
  '/pad/static/icon.svg', '/pad/static/icon-192.png', '/pad/static/icon-512.png',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function ours(url) {
  return url.origin === self.location.origin && (url.pathname === '/pad' || url.pathname.startsWith('/pad/static/'));
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || !ours(url)) return;  // the API, the feed: never through here
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      if (res.ok) cache.put(url.pathname, res.clone());
      return res;
    } catch (err) {
      const hit = await cache.match(url.pathname);
      if (hit) return hit;
      throw err;
    }
  })());
});
