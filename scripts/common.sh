# Shared by the scripts: paths, logging and the idempotent installation of build tools.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The build directory lives outside the clone so a second clone or CI run is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/b3o/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
# The training bundle's features (scripts/build-engine.sh); scripts/test.sh builds the wasm32
# tests with the same, so that one build of burn for wasm32 serves both.
TRAIN_BUNDLE_FEATURES=infer,train,wgpu,fl

# Each step says how long the run has taken so far (CI has a 90-minute limit).
say() { printf '\033[1;34m==>\033[0m [%d:%02d] %s\n' "$((SECONDS / 60))" "$((SECONDS % 60))" "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# on_exit COMMAND: runs COMMAND when the script exits, after those registered before it (a
# plain `trap ... EXIT` would replace them).
B3O_EXIT_HOOKS=()
on_exit() {
  B3O_EXIT_HOOKS+=("$1")
  trap 'for hook in "${B3O_EXIT_HOOKS[@]}"; do eval "$hook" || true; done' EXIT
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@";
  else return 1; fi
}

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# The wasm32 target, clippy and the wasm-bindgen CLI.
ensure_rust_tools() {
  ensure_rust_toolchain
  ensure_wasm_bindgen
}

# The wasm32 target and clippy (seconds). Exports CLIPPY_DRIVER.
ensure_rust_toolchain() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "installing the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  # clippy-driver lints the workspace during the test builds (scripts/test.sh).
  if ! CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null)"; then
    say "installing the clippy component"
    rustup component add clippy
    CLIPPY_DRIVER="$(rustup which clippy-driver)"
  fi
  export CLIPPY_DRIVER
}

# True when the wasm-bindgen CLI and its test runner on the PATH match Cargo.lock.
wasm_bindgen_current() {
  local want
  want="$(wasm_bindgen_version)"
  [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$want" ] &&
    [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" = "$want" ]
}

# The wasm-bindgen CLI (and its test runner), built once (about 2 minutes on two cores).
ensure_wasm_bindgen() {
  local want
  want="$(wasm_bindgen_version)"
  if ! wasm_bindgen_current; then
    say "installing wasm-bindgen-cli $want (matches Cargo.lock; a few minutes, once)"
    # Not --locked: the CLI's own lock pins a crate the registry no longer has. Its own build
    # directory: in the project's, it would wait for a release build running beside it
    # (scripts/run.sh builds the server meanwhile).
    # Unoptimised but for the crates that read, transform and write wasm (opt-level 1): 1 min 6 s
    # and 126 s of CPU against 1 min 45 s and 201 s all at opt-level 1, for 0.4 s more on the
    # app and 3 s more on the 96 MB test training bundle (BENCHMARKS.md, "First run"); what it
    # runs on is cached by content (scripts/build-web.sh).
    cargo --config 'profile.release.opt-level=0' \
      --config 'profile.release.package.walrus.opt-level=1' \
      --config 'profile.release.package.wasmparser.opt-level=1' \
      --config 'profile.release.package.wasm-encoder.opt-level=1' \
      --config 'profile.release.package.wasm-bindgen-cli-support.opt-level=1' \
      install wasm-bindgen-cli --version "$want" --force --target-dir "$HOME/.cache/b3o/tools/target"
  fi
}

# A current wasm-opt (binaryen 117 or newer; Debian's 108 breaks wasm-bindgen output) and Node
# (Brotli precompression, scripts/compress.mjs). wasm-opt: the PATH's when new enough, else
# npm's `binaryen` package (a wasm build of binaryen, pinned) installed once into
# ~/.cache/b3o/tools/npm. Node and npm come from Debian when missing. Exports WASM_OPT (empty:
# none could be had; the bundles are then built unoptimised, and the build says so) and NODE.
BINARYEN_NPM_VERSION=132.0.0
ensure_web_tools() {
  local prefix="$HOME/.cache/b3o/tools/npm" have
  NODE="$(command -v node || true)"
  if [ -z "$NODE" ] || ! command -v npm >/dev/null; then
    say "installing nodejs and npm from Debian (wasm-opt from npm, Brotli precompression)"
    if as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; then
      NODE="$(command -v node || true)"
    else
      say "could not install nodejs/npm (not root and no passwordless sudo): the web app is built without wasm-opt and Brotli"
    fi
  fi
  export NODE
  WASM_OPT=""
  have="$(wasm-opt --version 2>/dev/null | grep -oE '[0-9]+' | head -1 || true)"
  if [ -n "$have" ] && [ "$have" -ge 117 ]; then
    WASM_OPT="$(command -v wasm-opt)"
  elif [ -n "$NODE" ] && command -v npm >/dev/null; then
    if ! "$prefix/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version ${BINARYEN_NPM_VERSION%%.*}"; then
      say "installing wasm-opt (npm binaryen $BINARYEN_NPM_VERSION) into $prefix (once)"
      mkdir -p "$prefix"
      npm install --prefix "$prefix" --no-audit --no-fund --silent "binaryen@$BINARYEN_NPM_VERSION" ||
        say "npm could not install binaryen: the web app is built without wasm-opt"
    fi
    if "$prefix/node_modules/.bin/wasm-opt" --version >/dev/null 2>&1; then
      WASM_OPT="$prefix/node_modules/.bin/wasm-opt"
    fi
  fi
  [ "${B3O_WASM_OPT:-1}" = 1 ] || WASM_OPT=""
  export WASM_OPT
}

# wasm_opt FILE LEVEL: optimises FILE in place with $WASM_OPT (the features wasm-bindgen's
# output and +simd128 use); nothing without one.
wasm_opt() {
  [ -n "${WASM_OPT:-}" ] || return 0
  "$WASM_OPT" "$2" --enable-reference-types --enable-bulk-memory --enable-simd \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    -o "$1.opt" "$1"
  mv "$1.opt" "$1"
}

# Post-processing is cached by content in $CARGO_TARGET_DIR/b3o-web, so that a rebuild whose
# wasm did not change (a warm `scripts/run.sh`) repeats none of it.
WEB_CACHE="$CARGO_TARGET_DIR/b3o-web"

# bindgen_cached WASM OUT_DIR NAME WASM_OPT_LEVEL TYPESCRIPT_FLAG: wasm-bindgen's output for
# WASM (as NAME, then wasm-opt at WASM_OPT_LEVEL unless it is empty) copied into OUT_DIR.
bindgen_cached() {
  local wasm="$1" out="$2" name="$3" level="$4" ts="$5" key cache
  key="$( { sha256sum < "$wasm"; echo "$name $level $ts $(wasm-bindgen --version)"
            [ -z "$level" ] || [ -z "${WASM_OPT:-}" ] || "$WASM_OPT" --version; } | sha256sum | cut -c1-16)"
  cache="$WEB_CACHE/$name-$key"
  if [ ! -d "$cache" ]; then
    rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
    wasm-bindgen --target web "$ts" --out-dir "$cache.tmp" --out-name "$name" "$wasm"
    if [ -n "$level" ]; then wasm_opt "$cache.tmp/${name}_bg.wasm" "$level"; fi
    find "$WEB_CACHE" -maxdepth 1 -name "$name-*" ! -name "*.tmp" -exec rm -rf {} +
    mv "$cache.tmp" "$cache"
  fi
  mkdir -p "$out"
  cp "$cache"/* "$out/"
}

# precompress FILE...: FILE.gz and FILE.br beside each (Node's zlib; cached by content and
# extension, which picks Brotli's text or generic mode), or
# FILE.gz alone (gzip) without Node.
precompress() {
  [ "$#" -gt 0 ] || return 0
  if [ -z "${NODE:-}" ]; then
    gzip -9 -k -f "$@"
    return 0
  fi
  local z="$WEB_CACHE/compressed" f h todo=()
  mkdir -p "$z"
  find "$z" -type f -mtime +7 -delete
  for f in "$@"; do
    h="$(sha256sum < "$f" | cut -c1-32)${B3O_BROTLI_QUALITY:+-q$B3O_BROTLI_QUALITY}.${f##*.}"
    if [ -f "$z/$h.gz" ] && [ -f "$z/$h.br" ]; then
      cp "$z/$h.gz" "$f.gz" && cp "$z/$h.br" "$f.br"
    else
      todo+=("$f")
    fi
  done
  [ "${#todo[@]}" -eq 0 ] || "$NODE" "$ROOT/scripts/compress.mjs" "${todo[@]}"
  for f in "${todo[@]}"; do
    h="$(sha256sum < "$f" | cut -c1-32)${B3O_BROTLI_QUALITY:+-q$B3O_BROTLI_QUALITY}.${f##*.}"
    cp "$f.gz" "$z/$h.gz" && cp "$f.br" "$z/$h.br"
  done
}

# The test runner: cargo-nextest from crates.io when missing (a few minutes, once).
ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (test runner; a few minutes, once)"
    cargo install cargo-nextest --locked
  fi
}

# A real load balancer for the replica tests (server/tests/replicas.rs): Debian's haproxy.
ensure_haproxy() {
  command -v haproxy >/dev/null && return 0
  say "installing haproxy from Debian (load balancer of the replica tests)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
     ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; then
    die "haproxy is missing and could not be installed (not root and no passwordless sudo): run 'sudo apt-get install haproxy' and try again"
  fi
}

# The S3-compatible server the blob store tests run against (server/tests/blob_store.rs):
# s3s-fs from crates.io, built once into a cached root (about a minute). 0.14.1 is the newest
# release that builds with Rust 1.92+ (later ones need 1.96). Unoptimised (`--debug`): 1:10
# instead of 1:50 to build, and the tests' objects are small. Exports B3O_S3S_FS.
S3S_FS_VERSION=0.14.1
ensure_s3s_fs() {
  local root="$HOME/.cache/b3o/tools"
  export B3O_S3S_FS="$root/bin/s3s-fs"
  if [ -x "$B3O_S3S_FS" ] && "$B3O_S3S_FS" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    return 0
  fi
  say "installing s3s-fs $S3S_FS_VERSION (S3-compatible server for the blob store tests; a few minutes, once)"
  cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --debug --root "$root"
}

ensure_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return 0; fi
  say "installing chromium and chromium-driver from Debian (browser tests)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
     ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; then
    die "chromium and chromium-driver are missing and could not be installed (not root and no passwordless sudo): run 'sudo apt-get install chromium chromium-driver' and try again"
  fi
}

# The API contract check's Python tools (scripts/contract.sh): the pinned versions of
# scripts/contract/requirements.txt in a virtual environment outside the clone, made once and
# again only when that file changes (~40 s from PyPI). Needs Python 3.11 or newer.
export B3O_VENV="${B3O_VENV:-$HOME/.cache/b3o/venv}"
ensure_python_tools() {
  local reqs="$ROOT/scripts/contract/requirements.txt" python=""
  if [ -x "$B3O_VENV/bin/python" ] && cmp -s "$reqs" "$B3O_VENV/b3o-requirements.txt"; then
    return 0
  fi
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ] || ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    say "installing python3 and python3-venv from Debian (the contract check's tools)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv ||
      die "python3 (3.11 or newer) with its venv module is missing and could not be installed: run 'sudo apt-get install python3 python3-venv' and try again"
    python="python3"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "the contract check needs Python 3.11 or newer; this machine's python3 is older"
  fi
  say "installing the contract check's Python tools into $B3O_VENV (pinned; once)"
  "$python" -m venv --clear "$B3O_VENV" ||
    die "could not make a virtual environment with $python (on Debian: apt-get install python3-venv)"
  "$B3O_VENV/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$reqs"
  cp "$reqs" "$B3O_VENV/b3o-requirements.txt"
}
