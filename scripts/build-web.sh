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
# wasm-opt from old binaryen (Debian's 108) turns current wasm-bindgen output (this app's and
# the engine's) into modules that fail at start-up ("WebAssembly.Table.set(): Argument 1 is
# invalid for table"): only binaryen 117 or newer is used, here and by build-engine.sh.
binaryen="$(wasm-opt --version 2>/dev/null | grep -oE '[0-9]+' | head -1 || true)"
if [ "${B3O_WASM_OPT:-1}" = 1 ] && [ -n "$binaryen" ] && [ "$binaryen" -lt 117 ]; then
  say "skipping wasm-opt: binaryen $binaryen is older than 117"
  export B3O_WASM_OPT=0
elif command -v wasm-opt >/dev/null && [ "${B3O_WASM_OPT:-1}" = 1 ]; then
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
# Served at fixed addresses (the server marks them `no-cache`): the web app manifest and its
# icons, and the embed widget for partner sites.
cp "$ROOT/app/static/manifest.webmanifest" "$ROOT/app/static/embed.js" "$stage/dist/"
cp -r "$ROOT/app/static/icons" "$stage/dist/icons"

# Precompressed copies: the server sends them as-is instead of compressing per request.
find "$stage/dist/assets" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' \) -exec gzip -9 -k {} +
gzip -9 -k "$stage/dist/embed.js"

rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$stage/dist" "$OUT"
rm -rf "$OUT.old"
"$ROOT/scripts/build-engine.sh" "$OUT"  # the browser engine (wasm-client) into $OUT/engine
# The service worker, last: the app shell to cache at install (every page, hashed asset, icon
# and inference-engine file; training files are fetched when used) and a version that changes
# with every build.
precache="$(cd "$OUT" && {
  echo /
  echo /manifest.webmanifest
  for dir in assets icons engine; do
    if [ -d "$dir" ]; then find "$dir" -type f ! -name '*.gz' ! -name '*.br' ! -name '*.ts' ! -name '*train*'; fi
  done | sort | sed 's|^|/|'
} | awk 'BEGIN { printf "[" } { printf "%s\"%s\"", (NR > 1 ? ", " : ""), $0 } END { printf "]" }')"
version="$( { echo "$precache"; cat "$ROOT/app/static/sw.js"; (cd "$OUT" && find . -type f ! -name '*.gz' -exec sha256sum {} + | sort); } | sha256sum | cut -c1-16)"
awk -v list="$precache" -v version="$version" \
  '{ gsub(/\{\{PRECACHE\}\}/, list); gsub(/\{\{VERSION\}\}/, version); print }' \
  "$ROOT/app/static/sw.js" > "$OUT/sw.js"

say "web app built in $OUT ($(du -h "$OUT/assets/$wasm" | cut -f1) wasm)"
