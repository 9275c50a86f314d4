#!/usr/bin/env bash
# Latency of one single-row `churn` inference over the three transports of the Open Inference
# Protocol (BENCHMARKS.md, "gRPC vs HTTP latency"): HTTP with JSON tensors, HTTP with Triton's
# binary tensor data, and gRPC (raw contents), each through NVIDIA's tritonclient, one request
# at a time from one client (latency, not throughput: scripts/bench-http.sh loads the server).
# Starts the release `b3o serve --demo --grpc-bind` on a fresh data directory on 127.0.0.1,
# warms each transport up, then times REQUESTS calls per transport, interleaved in rounds so
# that a slower moment of the machine hits all three alike. Times include the Python client.
# Not part of the test suite.
#
#   scripts/bench-grpc.sh                                  # build (release), 5000 calls each
#   SKIP_BUILD=1 REQUESTS=2000 scripts/bench-grpc.sh
#   SKIP_BUILD=1 SERVE_ARGS="--max-batch-delay-us 0" scripts/bench-grpc.sh   # no batching wait
#
# Needs the contract check's Python tools (tritonclient[http,grpc]; installed once into
# $B3O_VENV, see scripts/common.sh).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_python_tools
REQUESTS="${REQUESTS:-5000}"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release -p b3o-server --bin b3o
fi
BIN="$CARGO_TARGET_DIR/release/b3o"
DATA="$(mktemp -d)"
LOG="$DATA/server.log"
cleanup() {
    [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DATA"
}
trap cleanup EXIT
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

# Port 0 for both: the server prints the addresses it got.
RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --demo --bind 127.0.0.1:0 --grpc-bind 127.0.0.1:0 \
    --data-dir "$DATA" --static-dir "$DATA/no-app" --admin-email bench@example.org \
    --admin-password 'bench password 1' ${SERVE_ARGS:-} >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 1200); do
    grep -q "^B3O Edge is listening on" "$LOG" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
HTTP="$(sed -n 's|^B3O Edge is listening on http://\([^/]*\)/*$|\1|p' "$LOG" | head -n 1)"
GRPC="$(sed -n 's|^B3O Edge gRPC is listening on \([^ ]*\)$|\1|p' "$LOG" | head -n 1)"
[[ -n "$HTTP" && -n "$GRPC" ]] || { cat "$LOG" >&2; die "the server printed no addresses"; }

echo "b3o serve --demo --grpc-bind (release) ${SERVE_ARGS:-}; HTTP $HTTP, gRPC $GRPC; $(nproc) cores"
"$B3O_VENV/bin/python" - "$HTTP" "$GRPC" "$REQUESTS" <<'EOF'
import re
import sys
import time
import urllib.request

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

http_addr, grpc_addr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
http = thttp.InferenceServerClient(url=http_addr)
grpc = tgrpc.InferenceServerClient(url=grpc_addr)
dim = int(http.get_model_metadata("churn")["inputs"][0]["shape"][1])
x = (np.arange(dim, dtype=np.float32) % 7) / 7 - 0.4
x = x.reshape(1, dim)

def http_call(binary):
    t = thttp.InferInput("input", [1, dim], "FP32")
    t.set_data_from_numpy(x, binary_data=binary)
    out = thttp.InferRequestedOutput("output", binary_data=binary)
    def call():
        return http.infer("churn", [t], outputs=[out]).as_numpy("output")
    return call

def grpc_call():
    t = tgrpc.InferInput("input", [1, dim], "FP32")
    t.set_data_from_numpy(x)
    def call():
        return grpc.infer("churn", [t]).as_numpy("output")
    return call

calls = {
    "HTTP, JSON tensors (KServe V2)": http_call(False),
    "HTTP, binary tensor data (tritonclient's default)": http_call(True),
    "gRPC, raw contents (tritonclient's default)": grpc_call(),
}
answers = {name: call() for name, call in calls.items()}  # warm up, and check they agree
first = next(iter(answers.values()))
assert all(np.allclose(a, first, atol=1e-6) for a in answers.values()), answers
for call in calls.values():
    for _ in range(200):
        call()
times = {name: [] for name in calls}
rounds = 10
for _ in range(rounds):
    for name, call in calls.items():
        for _ in range(n // rounds):
            start = time.perf_counter_ns()
            call()
            times[name].append(time.perf_counter_ns() - start)
print(f"{n // rounds * rounds} single-row calls per transport, one at a time")
print(f"{'transport':52} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8}")
for name, t in times.items():
    t = np.array(t) / 1000
    print(f"{name:52} {np.percentile(t, 50):8.0f} {np.percentile(t, 99):8.0f} {t.mean():8.0f}")

# The server's own time per request (Prometheus: from the handler's start to the answer, warm-up
# calls included), by route: HTTP's two forms share `v2_infer`.
with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=30) as r:
    text = r.read().decode()
sums = {}
pattern = r'^b3o_inference_request_seconds_(sum|count)\{([^}]*)\} (\S+)$'
for kind, labels, value in re.findall(pattern, text, re.M):
    route = re.search(r'route="(\w+)"', labels)
    if 'model="churn"' in labels and route:
        sums.setdefault(route.group(1), {})[kind] = float(value)
for route, v in sorted(sums.items()):
    print(f"server time, route {route}: mean {v['sum'] / v['count'] * 1e6:.0f} µs"
          f" over {v['count']:.0f} requests")
EOF
