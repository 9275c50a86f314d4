#!/usr/bin/env bash
# Command 2: every check CI runs. Formatting, lints, unit and integration tests, the wasm32
# builds, wasm tests in headless Chromium, and the real-browser e2e suite.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
ensure_rust_tools
ensure_nextest
ensure_chromium
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (native, all targets)"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo clippy (wasm32)"
cargo clippy -p b3o-app -p b3o-wasm-client -p b3o-models --target wasm32-unknown-unknown -- -D warnings
# One build of the whole workspace serves both test runs below (and the `b3o` binary the
# browser suite starts): selecting packages differently would resolve features differently
# and rebuild much of the tree a second time.
say "unit and integration tests"
cargo nextest run --workspace --no-fail-fast -E 'not package(b3o-e2e)'
say "wasm tests in headless Chromium (the models crate's wasm32 build included)"
(cd wasm-client && cargo test --target wasm32-unknown-unknown)
say "building the web app for the browser suite"
"$ROOT/scripts/build-web.sh" "$ROOT/dist"
say "e2e tests in headless Chromium"
B3O_BIN="$CARGO_TARGET_DIR/debug/b3o" cargo nextest run --workspace --no-fail-fast -E 'package(b3o-e2e)'
# Each fuzz target for 10 s. Its first build (nightly, its own target dir) takes 15-30 min on
# two cores: a run whose own builds were cold already (past 45 min here) skips it rather than
# pass CI's 90-minute limit, and says so; the next, warm run fuzzes.
if [ "${B3O_SKIP_FUZZ:-}" = 1 ]; then
  say "fuzzing skipped (B3O_SKIP_FUZZ=1)"
elif [ "$SECONDS" -gt 2700 ]; then
  say "fuzzing skipped: this run took $((SECONDS / 60)) min already (cold build); run scripts/fuzz.sh"
else
  say "fuzz targets, 10 s each (scripts/fuzz.sh; SECURITY.md)"
  FUZZ_SECONDS=10 "$ROOT/scripts/fuzz.sh"
fi
say "all checks passed"
