#!/usr/bin/env bash
# Builds the web app into dist/: size-optimised wasm, JS glue, content-hashed assets, Brotli and
# gzip copies, the browser engine (scripts/build-engine.sh) and the service worker.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_toolchain

OUT="${1:-$ROOT/dist}"
ensure_web_tools
# The wasm-bindgen CLI (a `cargo install` of minutes on a fresh machine) builds beside the app,
# which does not need it until its wasm is linked: the app's build ends in long single-threaded
# steps (its crate, fat LTO) that leave a core to the CLI (BENCHMARKS.md, "First run").
cli_install=""
if ! wasm_bindgen_current; then
  cli_log="$(mktemp)"
  ensure_wasm_bindgen >"$cli_log" 2>&1 &
  cli_install=$!
  # Stops it if this script fails first (cli_install is emptied once it has been waited for).
  on_exit '[ -z "$cli_install" ] || { pkill -P "$cli_install"; kill "$cli_install"; } 2>/dev/null; rm -f "$cli_log"'
fi
say "building the web app (wasm32, size-optimised)"
# The app and the inference bundle share one profile (wasm-size), so their common
# dependencies build once.
cargo build --manifest-path "$ROOT/Cargo.toml" -p b3o-app --target wasm32-unknown-unknown --profile wasm-size
if [ -n "$cli_install" ]; then
  cli_status=0
  wait "$cli_install" || cli_status=$?
  cli_install=""
  cat "$cli_log" >&2
  [ "$cli_status" = 0 ] || die "wasm-bindgen-cli did not install (its output is above)"
fi

stage="$(mktemp -d)"
on_exit 'rm -rf "$stage"'
if [ -n "$WASM_OPT" ]; then
  say "wasm-bindgen and wasm-opt -Oz ($("$WASM_OPT" --version)) on the app (cached by content)"
else
  say "wasm-bindgen on the app; no wasm-opt (binaryen 117 or newer), so it is not shrunk further"
fi
bindgen_cached "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-size/b3o_app.wasm" "$stage/bindgen" \
  b3o-app -Oz --no-typescript

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

# Precompressed copies (Brotli and gzip): the server sends them as-is instead of compressing
# per request.
precompress "$stage/dist/index.html" "$stage/dist/embed.js" "$stage/dist/manifest.webmanifest" \
  "$stage"/dist/assets/*.wasm "$stage"/dist/assets/*.js "$stage"/dist/assets/*.css

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
version="$( { echo "$precache"; cat "$ROOT/app/static/sw.js"; (cd "$OUT" && find . -type f ! -name '*.gz' ! -name '*.br' -exec sha256sum {} + | sort); } | sha256sum | cut -c1-16)"
awk -v list="$precache" -v version="$version" \
  '{ gsub(/\{\{PRECACHE\}\}/, list); gsub(/\{\{VERSION\}\}/, version); print }' \
  "$ROOT/app/static/sw.js" > "$OUT/sw.js"

say "web app built in $OUT ($(du -h "$OUT/assets/$wasm" | cut -f1) wasm)"
