// B3O Edge's service worker (scope `/`): makes the app and the models a person used work
// offline.
//
// - The app shell (index.html, the content-hashed assets, the inference engine's files, icons)
//   is cached at install; `scripts/build-web.sh` fills in the list and a version that changes
//   with every build, so a new build installs a new worker and drops the old shell.
// - Pages (navigations): network first, the cached shell when the server cannot be reached.
// - Hashed assets: cache first (their content never changes under a name).
// - Engine files and other static files: network first, cached for offline use.
// - API: network first and never cached, except the deployed-model reads the engine needs to
//   run a model it has used (`/api/deployments…`: list, details, package), which are kept
//   for offline use. The model bytes themselves are cached by the engine (Cache API).
// - Never touched: writes (non-GET), other origins, server-sent events.
"use strict";

const VERSION = "{{VERSION}}";
const SHELL = "b3o-shell-" + VERSION;
const DATA = "b3o-data";
const PRECACHE = {{PRECACHE}};

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(SHELL);
      // One missing file must not keep the others from being cached.
      await Promise.all(PRECACHE.map((url) => cache.add(url).catch(() => undefined)));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith("b3o-shell-") && key !== SHELL) {
          await caches.delete(key);
        }
      }
      await self.clients.claim();
    })(),
  );
});

/** Network first; a successful answer refreshes `cacheName`; the cache when offline. */
async function networkFirst(request, cacheName, fallbackUrl) {
  try {
    const response = await fetch(request);
    // Only an HTML page may stand in for the shell.
    const html = (response.headers.get("content-type") || "").includes("text/html");
    if (response.ok && response.type === "basic" && (!fallbackUrl || html)) {
      const cache = await caches.open(cacheName);
      await cache.put(fallbackUrl || request, response.clone());
    }
    return response;
  } catch (offline) {
    const cached = await caches.match(fallbackUrl || request);
    if (cached) {
      return cached;
    }
    throw offline;
  }
}

async function cacheFirst(request) {
  const cached = await caches.match(request);
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (response.ok && response.type === "basic") {
    const cache = await caches.open(SHELL);
    await cache.put(request, response.clone());
  }
  return response;
}

/** `/api/deployments`, `/api/deployments/{name}` and `/api/deployments/{name}/package`. */
function isModelRead(path) {
  const parts = path.split("/").filter(Boolean);
  return (
    parts[0] === "api" &&
    parts[1] === "deployments" &&
    (parts.length <= 3 || (parts.length === 4 && parts[3] === "package"))
  );
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if ((request.headers.get("accept") || "").includes("text/event-stream")) {
    return;
  }
  const path = url.pathname;
  const server = path.startsWith("/api/") || path.startsWith("/v2") || path === "/healthz" || path === "/metrics";
  if (server) {
    // The API is the network's. A navigation to it (a download link such as a job's result)
    // is left to the browser, so it downloads and never becomes the cached shell.
    if (isModelRead(path) && request.mode !== "navigate") {
      event.respondWith(networkFirst(request, DATA));
    }
  } else if (request.mode === "navigate") {
    // Every page is the same shell: keep the newest copy under "/".
    event.respondWith(networkFirst(request, SHELL, "/"));
  } else if (path.startsWith("/assets/")) {
    event.respondWith(cacheFirst(request));
  } else {
    event.respondWith(networkFirst(request, SHELL));
  }
});
