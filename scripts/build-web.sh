#!/usr/bin/env bash
# Builds the web app into dist/: release wasm, JS glue, content-hashed assets, precompressed.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_tools

OUT="${1:-$ROOT/dist}"
say "building the web app (wasm32, release)"
cargo build --manifest-path "$ROOT/Cargo.toml" -p b3o-app --target wasm32-unknown-unknown --profile wasm-release

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
wasm-bindgen --target web --no-typescript --out-dir "$stage/bindgen" --out-name b3o-app \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/b3o_app.wasm"
if command -v wasm-opt >/dev/null && [ "${B3O_WASM_OPT:-1}" = 1 ]; then
  say "optimising with wasm-opt"
  wasm-opt -Oz --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-simd \
    -o "$stage/bindgen/b3o-app_bg.opt.wasm" "$stage/bindgen/b3o-app_bg.wasm"
  mv "$stage/bindgen/b3o-app_bg.opt.wasm" "$stage/bindgen/b3o-app_bg.wasm"
fi

hash16() { sha256sum "$1" | cut -c1-16; }
mkdir -p "$stage/dist/assets"
wasm="b3o-app_bg-$(hash16 "$stage/bindgen/b3o-app_bg.wasm").wasm"
js="b3o-app-$(hash16 "$stage/bindgen/b3o-app.js").js"
css="style-$(hash16 "$ROOT/app/static/style.css").css"
cp "$stage/bindgen/b3o-app_bg.wasm" "$stage/dist/assets/$wasm"
cp "$stage/bindgen/b3o-app.js" "$stage/dist/assets/$js"
cp "$ROOT/app/static/style.css" "$stage/dist/assets/$css"
sed -e "s/{{WASM}}/$wasm/g" -e "s/{{JS}}/$js/g" -e "s/{{CSS}}/$css/g" "$ROOT/app/index.html" > "$stage/dist/index.html"
# Precompressed copies: the server sends them as-is instead of compressing per request.
find "$stage/dist/assets" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' \) -exec gzip -9 -k {} +

rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$stage/dist" "$OUT"
rm -rf "$OUT.old"
say "web app built in $OUT ($(du -h "$OUT/assets/$wasm" | cut -f1) wasm)"
