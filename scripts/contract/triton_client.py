"""NVIDIA's Triton client from PyPI (`tritonclient[http,grpc]`), with its defaults, against a
real `b3o serve --demo --grpc-bind ADDR` (issue #18), over HTTP and over gRPC:

- server metadata (the extensions), readiness, the repository index, model metadata;
- `infer` on both demo models: over HTTP its defaults send the input as binary tensor data and
  ask for binary outputs, over gRPC as `raw_input_contents` (answered in
  `raw_output_contents`); both must give the numbers the plain JSON V2 request gets;
- `get_inference_statistics` over both, which must count those calls;
- for `churn`, the codeless route `POST /api/predict/churn/rows` on raw rows of the demo's
  sample CSV against tritonclient's predictions on the same rows, preprocessed here by the
  model's own preprocessing spec (`spec.preprocessing` of `GET /api/deployments/churn/package`,
  applied as `models::preprocess` does: see `preprocess` below): the probabilities must agree
  to 1e-5.

    python triton_client.py http://127.0.0.1:PORT 127.0.0.1:GRPC_PORT
"""

import csv
import io
import json
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

base = sys.argv[1].rstrip("/")
grpc_addr = sys.argv[2]
http = thttp.InferenceServerClient(url=base.removeprefix("http://"))
grpc = tgrpc.InferenceServerClient(url=grpc_addr)
MODELS = ("churn", "digits")


def get(path):
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as r:
        return r.read()


def post_json(path, body):
    request = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


# Server: liveness, readiness, metadata and the repository index, over both transports.
assert http.is_server_live() and http.is_server_ready()
assert grpc.is_server_live() and grpc.is_server_ready()
meta = http.get_server_metadata()
gmeta = grpc.get_server_metadata(as_json=True)
for extension in ("binary_tensor_data", "model_repository", "statistics"):
    assert extension in meta["extensions"], meta
assert gmeta["extensions"] == meta["extensions"] and gmeta["name"] == meta["name"], gmeta
index = {m["name"]: m for m in http.get_model_repository_index()}
gindex = {m["name"]: m for m in grpc.get_model_repository_index(as_json=True)["models"]}
assert index.keys() >= set(MODELS), index
assert all(m["state"] == "READY" for m in index.values()), index
assert {n: (m["version"], m["state"]) for n, m in gindex.items()} == \
    {n: (m["version"], m["state"]) for n, m in index.items()}, (gindex, index)


def rows_inferred(stats):
    """inference_count per version of a statistics answer (gRPC's JSON has uint64 as text)."""
    return {s["version"]: int(s.get("inference_count", 0)) for s in stats["model_stats"]}


rng = np.random.default_rng(7)
checked = []
for model in MODELS:
    assert http.is_model_ready(model) and grpc.is_model_ready(model), model
    spec = http.get_model_metadata(model)
    gspec = grpc.get_model_metadata(model, as_json=True)
    assert [int(d) for d in gspec["inputs"][0]["shape"]] == spec["inputs"][0]["shape"], gspec
    assert gspec["versions"] == spec["versions"], (gspec, spec)
    before = rows_inferred(grpc.get_inference_statistics(model, as_json=True))
    shape = [3] + [int(d) for d in spec["inputs"][0]["shape"][1:]]
    x = rng.random(shape, dtype=np.float32)

    tensor = thttp.InferInput("input", shape, "FP32")
    tensor.set_data_from_numpy(x)  # binary_data=True: tritonclient's default
    got = http.infer(model, [tensor]).as_numpy("output")  # binary outputs by default

    gtensor = tgrpc.InferInput("input", shape, "FP32")
    gtensor.set_data_from_numpy(x)  # raw_input_contents: tritonclient's default
    gresult = grpc.infer(model, [gtensor])
    ggot = gresult.as_numpy("output")
    assert gresult.get_response().raw_output_contents, "raw in, raw out"

    want = post_json(f"/v2/models/{model}/infer", {"inputs": [
        {"name": "input", "shape": shape, "datatype": "FP32", "data": x.flatten().tolist()}]})
    want = np.array(want["outputs"][0]["data"], dtype=np.float32).reshape(got.shape)
    assert got.dtype == np.float32 and got.shape[0] == 3, (model, got.shape)
    assert np.allclose(got, want, rtol=0, atol=1e-6), (model, got, want)
    assert ggot.dtype == np.float32 and ggot.shape == got.shape, (model, ggot.shape)
    assert np.allclose(ggot, want, rtol=0, atol=1e-6), (model, ggot, want)

    # An output asked for as JSON, the input still binary.
    asked = thttp.InferRequestedOutput("output", binary_data=False)
    again = http.infer(model, [tensor], outputs=[asked]).as_numpy("output")
    assert np.allclose(again, want, rtol=0, atol=1e-6), (model, again, want)

    # Statistics: the four calls above (3 rows each), the same over HTTP and gRPC.
    stats = http.get_inference_statistics(model)
    gstats = grpc.get_inference_statistics(model, as_json=True)
    version = spec["versions"][0]
    assert rows_inferred(stats) == rows_inferred(gstats), (stats, gstats)
    assert rows_inferred(gstats)[version] - before.get(version, 0) == 12, (before, gstats)
    gs = gstats["model_stats"][0]["inference_stats"]
    assert int(gs["success"]["count"]) >= 4 and int(gs["compute_infer"]["ns"]) > 0, gstats
    checked.append(f"{model} {list(got.shape)}")


def preprocess(features, row):
    """One row's model inputs, as `PreprocessSpec::transform` computes them: a standardised
    column is `(x - mean) / max(std, 1e-12)` (the mean imputed for a missing value); a one-hot
    column has one input per vocabulary entry and a last one for any other value (the most
    frequent category imputed for a missing one)."""
    out = []
    for f in features:
        cell = row.get(f["column"])
        if f["kind"] == "standardize":
            v = f["impute"] if cell is None else float(cell)
            out.append((v - f["mean"]) / max(f["std"], 1e-12))
        else:
            vocabulary = f["vocabulary"]
            value = cell if cell is not None else f.get("impute")
            hot = [0.0] * (len(vocabulary) + 1)
            hot[vocabulary.index(value) if value in vocabulary else len(vocabulary)] = 1.0
            out.extend(hot)
    return out


# churn: the codeless route on raw rows against tritonclient on the same rows preprocessed.
package = json.loads(get("/api/deployments/churn/package"))
prep = package["spec"]["preprocessing"]
labels = package["spec"]["labels"]
sample = list(csv.DictReader(io.StringIO(get("/api/demo/churn-sample.csv").decode())))[:16]
numeric = {f["column"] for f in prep["features"] if f["kind"] == "standardize"}
rows = []
for record in sample:
    row = {}
    for f in prep["features"]:
        cell = (record.get(f["column"]) or "").strip()
        row[f["column"]] = None if cell == "" else (float(cell) if f["column"] in numeric else cell)
    rows.append(row)
codeless = post_json("/api/predict/churn/rows", {"rows": rows})["predictions"]
want = np.array([[p["probabilities"][label] for label in labels] for p in codeless])
x = np.array([preprocess(prep["features"], row) for row in rows], dtype=np.float32)
tensor = thttp.InferInput("input", list(x.shape), "FP32")
tensor.set_data_from_numpy(x)
gtensor = tgrpc.InferInput("input", list(x.shape), "FP32")
gtensor.set_data_from_numpy(x)
for transport, out in (("http", http.infer("churn", [tensor]).as_numpy("output")),
                       ("grpc", grpc.infer("churn", [gtensor]).as_numpy("output"))):
    # A binary model answers P(labels[1]) alone; the codeless route names both labels.
    got = np.concatenate([1 - out, out], axis=1) if out.shape[1] == 1 and len(labels) == 2 else out
    assert got.shape == want.shape, (transport, got.shape, want.shape)
    worst = float(np.abs(got - want).max())
    assert worst <= 1e-5, (transport, worst, got, want)

print(
    f"tritonclient http and grpc ({grpc_addr}): repository index {sorted(index)}; binary, raw "
    f"and JSON outputs agree on " + ", ".join(checked)
    + f"; statistics count them; churn agrees with the codeless route on {len(rows)} sample "
    f"rows (max difference {worst:.1e})"
)
