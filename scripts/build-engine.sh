#!/usr/bin/env bash
# Builds the browser engine into OUT_DIR/engine: the inference bundle (b3o_infer: B3O's
# networks evaluated directly, no graph runtime, no burn; size-optimised), the training bundle
# (b3o_train: burn on WebGPU/CPU and the FL client), their TypeScript types, the module
# workers, and Brotli and gzip copies of each file (the server sends precompressed siblings).
# Usage: scripts/build-engine.sh OUT_DIR. B3O_ENGINE_BUNDLES=infer (or train) builds one
# bundle; `train` adds it beside the files already in OUT_DIR/engine. B3O_TRAIN_PROFILE=dev
# builds the training bundle on the wasm32 test build's dependencies instead of the release
# profile (scripts/test.sh: no second build of burn for wasm32; the same code, less optimised).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_tools

OUT="${1:?usage: scripts/build-engine.sh OUT_DIR}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/engine"

ensure_web_tools

# bundle NAME PROFILE FEATURES [WASM_OPT_LEVEL]
bundle() {
  local name="$1" profile="$2" features="$3" level="${4:-}"
  say "building the engine bundle $name (features $features, profile $profile)"
  cargo rustc --manifest-path "$ROOT/Cargo.toml" -p b3o-wasm-client --lib --crate-type cdylib \
    --target wasm32-unknown-unknown --profile "$profile" --no-default-features --features "$features"
  local dir="$profile"
  [ "$profile" != dev ] || dir=debug  # Cargo's folder for the dev profile
  bindgen_cached "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$dir/b3o_wasm_client.wasm" \
    "$stage/engine" "$name" "$level" --typescript
}

# The inference bundle is what every first visit and embed downloads: size-optimised, with
# the app's profile (shared dependencies build once) and wasm-opt. The training bundle is
# fetched only when a person trains: speed-optimised, and not run through wasm-opt (npm's
# wasm-opt is binaryen compiled to wasm, minutes on a 30 MB module, for a file loaded once).
if [ "${B3O_ENGINE_BUNDLES:-infer,train}" != train ]; then
  bundle b3o_infer wasm-size infer -Oz
fi
if [ "${B3O_ENGINE_BUNDLES:-infer,train}" != infer ]; then
  bundle b3o_train "${B3O_TRAIN_PROFILE:-wasm-release}" "$TRAIN_BUNDLE_FEATURES"
fi
cp "$ROOT"/wasm-client/js/*.js "$stage/engine/"
precompress $(find "$stage/engine" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.ts' \))

mkdir -p "$OUT"
if [ "${B3O_ENGINE_BUNDLES:-infer,train}" = train ]; then
  # Added beside the files a running server already serves (scripts/run.sh builds the
  # training bundle after starting it): each file appears whole, by rename.
  mkdir -p "$OUT/engine"
  for f in "$stage"/engine/*; do
    cp "$f" "$OUT/engine/.$(basename "$f").tmp"
    mv "$OUT/engine/.$(basename "$f").tmp" "$OUT/engine/$(basename "$f")"
  done
else
  rm -rf "$OUT/engine.old"
  [ -d "$OUT/engine" ] && mv "$OUT/engine" "$OUT/engine.old"
  mv "$stage/engine" "$OUT/engine"
  rm -rf "$OUT/engine.old"
fi
size() {
  [ -f "$1" ] || { printf 'not built'; return; }
  printf '%s KiB (gzip %s KiB' "$(( $(stat -c %s "$1") / 1024 ))" "$(( $(stat -c %s "$1.gz") / 1024 ))"
  if [ -f "$1.br" ]; then printf ', brotli %s KiB' "$(( $(stat -c %s "$1.br") / 1024 ))"; fi
  printf ')'
}
say "engine built in $OUT/engine: inference $(size "$OUT/engine/b3o_infer_bg.wasm"), training $(size "$OUT/engine/b3o_train_bg.wasm")"
