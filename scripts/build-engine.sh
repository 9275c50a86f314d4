#!/usr/bin/env bash
# Builds the browser engine into OUT_DIR/engine: the inference bundle (b3o_infer: tract, no
# burn; size-optimised), the training bundle (b3o_train: burn on WebGPU/CPU and the FL client),
# their TypeScript types, the two module workers, and a gzip copy of each file (the server sends
# precompressed siblings). Usage: scripts/build-engine.sh OUT_DIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_tools

OUT="${1:?usage: scripts/build-engine.sh OUT_DIR}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/engine"

# wasm-opt (binaryen) shrinks and speeds up the bundles when installed; B3O_WASM_OPT=0 skips it.
optimise() {
  local wasm="$1" level="$2"
  if command -v wasm-opt >/dev/null && [ "${B3O_WASM_OPT:-1}" = 1 ]; then
    wasm-opt "$level" --enable-reference-types --enable-bulk-memory --enable-simd \
      --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
      -o "$wasm.opt" "$wasm"
    mv "$wasm.opt" "$wasm"
  fi
}

# bundle NAME PROFILE FEATURES WASM_OPT_LEVEL
bundle() {
  local name="$1" profile="$2" features="$3" level="$4"
  say "building the engine bundle $name (features $features, profile $profile)"
  cargo build --manifest-path "$ROOT/Cargo.toml" -p b3o-wasm-client --lib \
    --target wasm32-unknown-unknown --profile "$profile" --no-default-features --features "$features"
  wasm-bindgen --target web --typescript --out-dir "$stage/engine" --out-name "$name" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/b3o_wasm_client.wasm"
  optimise "$stage/engine/${name}_bg.wasm" "$level"
}

bundle b3o_infer wasm-size infer -Oz
bundle b3o_train wasm-release infer,train,wgpu,fl -O3
cp "$ROOT"/wasm-client/js/*.js "$stage/engine/"
find "$stage/engine" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.ts' \) -exec gzip -9 -k {} +

mkdir -p "$OUT"
rm -rf "$OUT/engine.old"
[ -d "$OUT/engine" ] && mv "$OUT/engine" "$OUT/engine.old"
mv "$stage/engine" "$OUT/engine"
rm -rf "$OUT/engine.old"
size() { printf '%s KiB (gzip %s KiB)' "$(( $(stat -c %s "$1") / 1024 ))" "$(( $(stat -c %s "$1.gz") / 1024 ))"; }
say "engine built in $OUT/engine: inference $(size "$OUT/engine/b3o_infer_bg.wasm"), training $(size "$OUT/engine/b3o_train_bg.wasm")"
