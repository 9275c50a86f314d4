"""NVIDIA's Triton client from PyPI (`tritonclient[http]`), with its defaults, against a real
`b3o serve --demo` (issue #18): server and model metadata, readiness, and `infer` on the demo
models, whose defaults send the input as binary tensor data and ask for binary outputs. Its
answers must be the numbers the plain JSON form of the same request gets.

    python triton_client.py http://127.0.0.1:PORT
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as triton

base = sys.argv[1].rstrip("/")
client = triton.InferenceServerClient(url=base.removeprefix("http://"))
assert client.is_server_live() and client.is_server_ready()
meta = client.get_server_metadata()
assert "binary_tensor_data" in meta["extensions"], meta

assert "model_repository" in meta["extensions"], meta
index = {m["name"]: m for m in client.get_model_repository_index()}
assert index.keys() >= {"churn", "digits"}, index
assert all(m["state"] == "READY" for m in index.values()), index

rng = np.random.default_rng(7)
checked = []
for model in ("churn", "digits"):
    assert client.is_model_ready(model), model
    spec = client.get_model_metadata(model)
    shape = [3] + [int(d) for d in spec["inputs"][0]["shape"][1:]]
    x = rng.random(shape, dtype=np.float32)
    tensor = triton.InferInput("input", shape, "FP32")
    tensor.set_data_from_numpy(x)  # binary_data=True: tritonclient's default
    got = client.infer(model, [tensor]).as_numpy("output")  # binary outputs by default

    body = json.dumps(
        {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                     "data": x.flatten().tolist()}]}
    ).encode()
    request = urllib.request.Request(
        f"{base}/v2/models/{model}/infer", data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        want = np.array(json.load(r)["outputs"][0]["data"], dtype=np.float32)
    want = want.reshape(got.shape)
    assert got.dtype == np.float32 and got.shape[0] == 3, (model, got.shape)
    assert np.allclose(got, want, rtol=0, atol=1e-6), (model, got, want)

    # An output asked for as JSON, the input still binary.
    asked = triton.InferRequestedOutput("output", binary_data=False)
    again = client.infer(model, [tensor], outputs=[asked]).as_numpy("output")
    assert np.allclose(again, want, rtol=0, atol=1e-6), (model, again, want)
    checked.append(f"{model} {list(got.shape)}")

print(
    f"tritonclient: repository index {sorted(index)}; binary and JSON outputs agree on "
    + ", ".join(checked)
)
