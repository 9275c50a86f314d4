"""Training throughput in headless Chromium, WebGPU against the CPU: the built training engine
(dist/engine/train-worker.js, the bundle the app loads) trains the churn network and the digit
CNN on synthetic rows (`benchTraining`: one epoch of Adam after a warm-up, the round's metrics
pass included) on each backend, and reports what the engine's `auto` choice picks on this
machine (`capabilities`). Driven through chromedriver's WebDriver API with the standard library
only. Usage: see scripts/bench-training.sh, which builds what is missing.

The WebGPU adapter is whatever Chromium is given: a GPU's through Vulkan (the default flags),
or SwiftShader's software one with --software (machines without a GPU; the figures then say
so, and are not a GPU's).
"""

import argparse
import functools
import http.server
import json
import shutil
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_browser import CALL_JS, Handler, chromium_session, page_result  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><title>bench</title><script type="module">
const params = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const worker = new Worker("engine/train-worker.js", { type: "module" });
""" + CALL_JS + """async function run() {
  const caps = await call(worker, { op: "capabilities" });
  const out = [];
  for (const c of params.cases) {
    try {
      const r = await call(worker, { op: "bench_training", epochs: 1, ...c });
      out.push({ ...c, ...r });
    } catch (e) {
      out.push({ ...c, error: String(e) });
    }
  }
  return { caps, out, agent: navigator.userAgent };
}
run().then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });
</script>"""

# The demo models' networks: the churn network (13 -> 128 -> 64 -> 32 -> 1) and the digit CNN.
PROBLEMS = {"churn": "churn_b3o", "digits": "cnn"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, help="dist/engine with the training bundle")
    ap.add_argument("--models", default="churn,digits")
    ap.add_argument("--batches", default="32,256")
    ap.add_argument("--rows-cpu", type=int, default=8192, help="rows per CPU run (CNN: /8)")
    ap.add_argument("--rows-gpu", type=int, default=8192, help="rows per WebGPU run (CNN: /8)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--software", action="store_true",
                    help="WebGPU on SwiftShader (no GPU): slow, use few --rows-gpu")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="chromedriver")
    ap.add_argument("--timeout", type=int, default=3600)
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="b3o-bench-training-"))
    shutil.copytree(a.engine, root / "engine")
    (root / "index.html").write_text(PAGE)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"

    cases = []
    for model in a.models.split(","):
        problem = PROBLEMS[model]
        for batch in [int(b) for b in a.batches.split(",")]:
            for backend, rows in [("cpu", a.rows_cpu), ("wgpu", a.rows_gpu)]:
                rows = rows // 8 if problem == "cnn" else rows
                for run in range(a.runs):
                    cases.append({"model": model, "problem": problem, "backend": backend,
                                  "batch_size": batch, "rows": max(rows, batch), "run": run + 1})
    gpu_flags = ["--enable-unsafe-webgpu", "--enable-features=Vulkan"]
    gpu_flags += (["--use-webgpu-adapter=swiftshader"] if a.software
                  else ["--use-angle=vulkan", "--ignore-gpu-blocklist"])

    url = f"{origin}/index.html#" + urllib.request.quote(json.dumps({"cases": cases}))
    try:
        with chromium_session(a.chromedriver, a.chromium, gpu_flags) as call:
            result = page_result(call, url, a.timeout, poll=2.0)
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    if not isinstance(result, dict) or "out" not in result:
        raise SystemExit(f"the benchmark page failed or timed out: {result}")
    caps = result["caps"]
    print(f"# {result['agent']}")
    print(f"# WebGPU adapter: {caps.get('adapter') or 'none'}; software: {caps.get('software_gpu')}; "
          f"`auto` trains on: {caps.get('backend')}")
    race = caps.get("race")
    if race:
        print(f"# `auto`'s race (churn network, batch 32, ms per step): CPU {race['cpu_step_ms']:.2f}, "
              f"WebGPU {race['gpu_step_ms']:.2f}")
    if caps.get("software_gpu"):
        print("# (a software adapter: these WebGPU figures are not a GPU's)")
    print("| model | batch | backend | rows | samples/s (each run) | best | WebGPU / CPU |")
    print("| --- | ---: | --- | ---: | --- | ---: | ---: |")
    best = {}
    for r in result["out"]:
        key = (r["model"], r["batch_size"], r["backend"])
        best.setdefault(key, {"rows": r["rows"], "runs": [], "error": None})
        if "error" in r:
            best[key]["error"] = r["error"]
        else:
            best[key]["runs"].append(r["samples_per_sec"])
    for (model, batch, backend), v in best.items():
        top = max(v["runs"], default=0.0)
        cpu = max(best.get((model, batch, "cpu"), {}).get("runs", []), default=0.0)
        ratio = f"{top / cpu:.2f}x" if backend == "wgpu" and cpu and top else ""
        runs = ", ".join(f"{s:,.0f}" for s in v["runs"]) or f"failed: {v['error']}"
        print(f"| {model} | {batch} | {backend} | {v['rows']:,} | {runs} | {top:,.0f} | {ratio} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
