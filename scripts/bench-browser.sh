#!/usr/bin/env bash
# Browser inference benchmark (BENCHMARKS.md, "Browser engine"): the demo models' ONNX files
# in headless Chromium, B3O's inference engine (dist/engine) beside onnxruntime-web (npm,
# pinned; wasm backend, one thread, SIMD) in the same run. Needs dist/ (scripts/build-web.sh)
# and chromium + chromedriver (scripts/test.sh installs them).
# Usage: scripts/bench-browser.sh [MODEL] [extra bench_browser.py flags]; MODEL: digits (the
# CNN, default) or churn (the MLP).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ORT_WEB_VERSION=1.31.1
MODEL="${1:-digits}"
shift || true
ensure_web_tools
prefix="$HOME/.cache/b3o/tools/npm"
if [ ! -f "$prefix/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs" ] ||
   ! grep -q "\"version\": \"$ORT_WEB_VERSION\"" "$prefix/node_modules/onnxruntime-web/package.json"; then
  say "installing onnxruntime-web $ORT_WEB_VERSION from npm into $prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --silent "onnxruntime-web@$ORT_WEB_VERSION"
fi
[ -f "$ROOT/dist/engine/infer-worker.js" ] || "$ROOT/scripts/build-web.sh" "$ROOT/dist"
# The server only exports the demo model here: any build of it will do (B3O_BIN).
if [ -z "${B3O_BIN:-}" ]; then
  say "building the server (release) to export the demo model"
  cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server --bin b3o
  B3O_BIN="$CARGO_TARGET_DIR/release/b3o"
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
B3O_DATA_DIR="$work/data" B3O_BIND="127.0.0.1:$port" B3O_ADMIN_PASSWORD="bench only $RANDOM$RANDOM" \
  "$B3O_BIN" serve --demo >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
# The demo models are seeded just after the server starts listening.
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/api/deployments/$MODEL/package" -o "$work/package.json" && break
  sleep 0.2
done
[ -s "$work/package.json" ] || die "the server did not serve the $MODEL demo model (log: $(tail -3 "$work/server.log"))"
onnx_path="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["onnx_path"])' "$work/package.json")"
curl -sf "http://127.0.0.1:$port$onnx_path" -o "$work/model.onnx"
say "timing $MODEL in headless Chromium: B3O's engine and onnxruntime-web $ORT_WEB_VERSION"
python3 "$ROOT/scripts/bench_browser.py" --engine "$ROOT/dist/engine" \
  --ort "$prefix/node_modules/onnxruntime-web/dist" --onnx "$work/model.onnx" \
  --package "$work/package.json" "$@"
