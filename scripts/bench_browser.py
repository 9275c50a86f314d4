"""Single-image and batch latency of a model in headless Chromium: B3O's inference engine
(dist/engine, in its worker) beside onnxruntime-web (npm, wasm backend, one thread, SIMD) on
the same ONNX file, in the same browser run. Driven through chromedriver's WebDriver API with
the standard library only. Usage: see scripts/bench-browser.sh, which prepares the inputs.

Both are timed the same way: `samples` timings of `calls` back-to-back runs on zeros (pages
that are not cross-origin isolated see performance.now() coarsened to 0.1 ms), after a warm-up;
B3O inside its worker (`bench_inference`), onnxruntime-web awaiting `session.run` in a worker
of its own.
"""

import argparse
import contextlib
import functools
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# A request to one of the engine's workers (wasm-client/js/protocol.js), awaited.
CALL_JS = """function call(worker, msg) {
  return new Promise((resolve, reject) => {
    const id = Math.floor(Math.random() * 1e9);
    const on = (e) => {
      if (e.data.id !== id || e.data.progress) return;
      worker.removeEventListener("message", on);
      e.data.ok ? resolve(e.data.result) : reject(new Error(e.data.error));
    };
    worker.addEventListener("message", on);
    worker.postMessage({ id, ...msg });
  });
}
"""

PAGE = """<!doctype html><meta charset="utf-8"><title>bench</title><script type="module">
const params = JSON.parse(decodeURIComponent(location.hash.slice(1)));
""" + CALL_JS + """async function run() {
  const onnx = await (await fetch("model.onnx")).arrayBuffer();
  const pkg = await (await fetch("package.json")).text();
  const b3o = new Worker("engine/infer-worker.js", { type: "module" });
  const info = await call(b3o, { op: "load_bytes", package: pkg, onnx: new Uint8Array(onnx) });
  const ort = new Worker("ort-worker.mjs", { type: "module" });
  await call(ort, { op: "load", onnx });
  const out = [];
  for (const batch of params.batches) {
    for (let round = 0; round < params.rounds; round++) {
      const a = await call(b3o, { op: "bench_inference", model: info.name, batch, samples: params.samples, calls: params.calls });
      const b = await call(ort, { op: "bench", batch, samples: params.samples, calls: params.calls });
      out.push({ batch, round, b3o: a, ort: b });
    }
  }
  return out;
}
run().then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });
</script>"""

ORT_WORKER = """import * as ort from "./ort/ort.wasm.min.mjs";
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
let session;
let shape;
self.onmessage = async (e) => {
  const { id, op, ...args } = e.data;
  try {
    if (op === "load") {
      session = await ort.InferenceSession.create(new Uint8Array(args.onnx), { executionProviders: ["wasm"] });
      self.postMessage({ id, ok: true, result: { inputs: session.inputNames } });
      return;
    }
    const { batch, samples, calls } = args;
    const meta = session.inputMetadata?.[0];
    const row = meta && meta.shape ? meta.shape.slice(1).map(Number) : null;
    if (!row || row.some((d) => !(d > 0))) throw new Error("unknown input shape " + JSON.stringify(meta));
    const len = row.reduce((a, b) => a * b, 1);
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", new Float32Array(batch * len), [batch, ...row]) };
    for (let i = 0; i < calls; i++) await session.run(feeds);
    const times = [];
    for (let s = 0; s < samples; s++) {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await session.run(feeds);
      times.push((performance.now() - t0) / calls);
    }
    times.sort((a, b) => a - b);
    const pick = (q) => times[Math.round((times.length - 1) * q)];
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    self.postMessage({ id, ok: true, result: { batch, samples, calls, p50_ms: pick(0.5), p90_ms: pick(0.9), mean_ms: mean } });
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err && err.message || err) });
  }
};
"""


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
    }

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webdriver(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["value"]


@contextlib.contextmanager
def chromium_session(chromedriver, binary, extra_args=()):
    """A headless Chromium session (fresh profile) through chromedriver; yields
    `call(method, path, body=None)` for the session's WebDriver endpoints."""
    port = free_port()
    driver = subprocess.Popen([chromedriver, f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                webdriver(port, "GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        profile = tempfile.mkdtemp(prefix="b3o-bench-chrome-")
        session = webdriver(port, "POST", "/session", {"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": binary, "args": [
                "--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
                f"--user-data-dir={profile}", *extra_args]}}}})["sessionId"]
        try:
            yield lambda method, path, body=None: webdriver(
                port, method, f"/session/{session}{path}", body)
        finally:
            webdriver(port, "DELETE", f"/session/{session}")
            shutil.rmtree(profile, ignore_errors=True)
    finally:
        driver.kill()


def page_result(call, url, timeout, poll=1.0):
    """Opens `url` and waits (at most `timeout` s) for the page to set `window.result`."""
    call("POST", "/url", {"url": url})
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = call("POST", "/execute/sync", {"script": "return window.result || null;", "args": []})
        if result is not None:
            return result
        time.sleep(poll)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, help="dist/engine")
    ap.add_argument("--ort", required=True, help="node_modules/onnxruntime-web/dist")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--package", required=True)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="chromedriver")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="b3o-bench-"))
    shutil.copytree(a.engine, root / "engine")
    (root / "ort").mkdir()
    for name in ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]:
        shutil.copy(Path(a.ort) / name, root / "ort" / name)
    shutil.copy(a.onnx, root / "model.onnx")
    shutil.copy(a.package, root / "package.json")
    (root / "index.html").write_text(PAGE)
    (root / "ort-worker.mjs").write_text(ORT_WORKER)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"

    params = {"batches": [int(b) for b in a.batches.split(",")], "rounds": a.rounds,
              "samples": a.samples, "calls": a.calls}
    try:
        with chromium_session(a.chromedriver, a.chromium) as call:
            result = page_result(
                call, f"{origin}/index.html#" + urllib.request.quote(json.dumps(params)), 1800)
            version = call("POST", "/execute/sync",
                           {"script": "return navigator.userAgent;", "args": []})
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    if not isinstance(result, list):
        raise SystemExit(f"the benchmark page failed: {result}")
    print(f"# {version}")
    print("| batch | round | B3O engine p50 ms | onnxruntime-web p50 ms | B3O / ort |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in result:
        b, o = r["b3o"]["p50_ms"], r["ort"]["p50_ms"]
        print(f"| {r['batch']} | {r['round'] + 1} | {b:.4f} | {o:.4f} | {b / o:.2f} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
