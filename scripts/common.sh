# Shared by the scripts: paths, logging and the idempotent installation of build tools.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The build directory lives outside the clone so a second clone or CI run is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/b3o/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

# Each step says how long the run has taken so far (CI has a 90-minute limit).
say() { printf '\033[1;34m==>\033[0m [%d:%02d] %s\n' "$((SECONDS / 60))" "$((SECONDS % 60))" "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@";
  else return 1; fi
}

# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_rust_tools() {
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
  local want have
  want="$(wasm_bindgen_version)"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" != "$want" ]; then
    say "installing wasm-bindgen-cli $want (matches Cargo.lock; a few minutes, once)"
    # Not --locked: the CLI's own lock pins a crate the registry no longer has.
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

# The test runner: cargo-nextest from crates.io when missing (a few minutes, once).
ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (test runner; a few minutes, once)"
    cargo install cargo-nextest --locked
  fi
}

ensure_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return 0; fi
  say "installing chromium and chromium-driver from Debian (browser tests)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
     ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; then
    die "chromium and chromium-driver are missing and could not be installed (not root and no passwordless sudo): run 'sudo apt-get install chromium chromium-driver' and try again"
  fi
}
