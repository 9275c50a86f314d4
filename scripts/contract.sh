#!/usr/bin/env bash
# The API contract check (issue #16), with independent tools from PyPI:
#  1. the OpenAPI document `b3o openapi` prints validates as OpenAPI 3.1
#     (openapi-spec-validator) and documents exactly the routes of server/src/access.rs;
#  2. the answers the server's integration tests received validate against it (they record
#     them into the folder B3O_RECORD_RESPONSES names: server/tests/support.rs);
#  3. a real `b3o serve` serves the same document at /api/openapi.json, a client generated from
#     it (openapi-python-client) drives a short federated run (scripts/contract/federated_run.py);
#  4. NVIDIA's tritonclient[http,grpc] with its defaults (binary tensor data in and out over
#     HTTP, raw contents over gRPC) calls a real `b3o serve --demo --grpc-bind ...` and gets the
#     JSON routes' numbers, statistics that count its calls, and for `churn` the codeless
#     route's probabilities on the same raw rows (scripts/contract/triton_client.py).
# scripts/test.sh runs it after the server tests. Alone (step 2 only when the variable is set):
#   cargo build -p b3o-server --bin b3o && scripts/contract.sh
#   B3O_RECORD_RESPONSES=/tmp/answers cargo nextest run -p b3o-server -E 'test(/federation/)'
#   B3O_RECORD_RESPONSES=/tmp/answers scripts/contract.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_python_tools
BIN="${B3O_BIN:-$CARGO_TARGET_DIR/debug/b3o}"
[ -x "$BIN" ] || die "$BIN not found: build it first (cargo build -p b3o-server --bin b3o)"
PY="$B3O_VENV/bin/python"
# The generator formats its output with the ruff of the same environment; no __pycache__
# left in the clone.
export PATH="$B3O_VENV/bin:$PATH" PYTHONDONTWRITEBYTECODE=1
# The server under test is on the loopback interface: never through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

work="$(mktemp -d "${TMPDIR:-/tmp}/b3o-contract.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts `b3o serve` (data in $work/NAME, output in $work/NAME.out and .err, with the extra
# arguments), waits up to SECONDS for its listening line, sets server_pid and base.
start_server() {
  local name="$1" seconds="$2"
  shift 2
  RUST_LOG=warn "$BIN" serve "$@" --bind 127.0.0.1:0 --data-dir "$work/$name" \
    --static-dir "$work/no-static" > "$work/$name.out" 2> "$work/$name.err" &
  server_pid=$!
  base=""
  for _ in $(seq $((seconds * 10))); do
    base="$(sed -n 's|^B3O Edge is listening on \(http://[^ ]*[^/ ]\)/*$|\1|p' "$work/$name.out" | head -n 1)"
    [ -n "$base" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$name.err" >&2; die "b3o serve $* exited before listening"; }
    sleep 0.1
  done
  cat "$work/$name.err" >&2
  die "b3o serve $* did not listen within $seconds s"
}

"$PY" scripts/contract/selftest.py >/dev/null || die "the contract checks' self-test failed"

say "contract: the OpenAPI document (b3o openapi)"
"$BIN" openapi > "$work/openapi.json" || die "b3o openapi failed"
spec="$("$PY" scripts/contract/validate_spec.py "$work/openapi.json" server/src/access.rs)" ||
  die "the OpenAPI document is not valid or misses routes (above)"
echo "$spec"

answers="no recorded answers checked (B3O_RECORD_RESPONSES unset)"
if [ -n "${B3O_RECORD_RESPONSES:-}" ]; then
  say "contract: the answers the server tests received ($B3O_RECORD_RESPONSES)"
  answers="$("$PY" scripts/contract/check_responses.py "$work/openapi.json" "$B3O_RECORD_RESPONSES")" ||
    die "answers of the server tests do not follow the document (above)"
  echo "$answers"
fi

say "contract: a client generated from /api/openapi.json drives a federated run"
start_server serve 30

"$PY" - "$base/api/openapi.json" "$work/openapi.json" <<'EOF' || die "GET /api/openapi.json differs from b3o openapi"
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
    assert r.status == 200, r.status
    assert r.headers.get_content_type() == "application/json", r.headers.get("content-type")
    served = json.load(r)
if served != json.load(open(sys.argv[2])):
    sys.exit("the served document is not the one `b3o openapi` prints")
EOF
if ! openapi-python-client generate --url "$base/api/openapi.json" --meta none \
     --output-path "$work/b3o_api" > "$work/generate.log" 2>&1; then
  cat "$work/generate.log" >&2
  die "openapi-python-client could not generate a client from /api/openapi.json"
fi
# Parts of the document the generator could not use are left out of the client: shown, and
# the run below fails if it needs one of them.
skipped="$(grep -c 'Endpoint will not be generated' "$work/generate.log" || true)"
if grep -q 'Warning' "$work/generate.log"; then
  say "contract: openapi-python-client's warnings ($skipped endpoints left out):"
  grep -v -e '^Generating ' -e '^$' "$work/generate.log" | head -n 80 >&2
fi
run="$("$PY" scripts/contract/federated_run.py "$base" "$work/b3o_api")" ||
  { tail -n 20 "$work/serve.err" >&2; die "the federated run through the generated client failed (above)"; }
echo "$run"

say "contract: NVIDIA's tritonclient[http,grpc], with its defaults, against b3o serve --demo"
kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true
# Port 0: the server picks a free port and prints it before its HTTP listening line.
start_server demo 120 --demo --grpc-bind 127.0.0.1:0
grpc_addr="$(sed -n 's|^B3O Edge gRPC is listening on \([^ ]*\)$|\1|p' "$work/demo.out" | head -n 1)"
[ -n "$grpc_addr" ] || die "b3o serve --grpc-bind printed no gRPC listening line"
triton="$("$PY" scripts/contract/triton_client.py "$base" "$grpc_addr")" ||
  { tail -n 20 "$work/demo.err" >&2; die "tritonclient's calls failed (above)"; }
echo "$triton"

routes="$(grep -o 'all [0-9]* routes' <<<"$spec" | grep -o '[0-9]*' || echo '?')"
checked="$(grep -o '^responses: [0-9]* checked' <<<"$answers" | grep -o '[0-9]*' || echo 'no')"
say "contract passed: OpenAPI 3.1 valid with all $routes routes of access.rs; $checked recorded answers valid; generated client ($skipped endpoints left out) ran a federated round; tritonclient[http,grpc] agrees with the JSON and codeless routes"
