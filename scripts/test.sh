#!/usr/bin/env bash
# Command 2: every check CI runs. Formatting, lints (clippy, during the builds), unit and
# integration tests, the wasm32 builds, wasm tests in headless Chromium, and the real-browser e2e suite.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/postgres.sh"
cd "$ROOT"
# Tests and benchmarks read public data sets from ../shared/datasets beside the clone (the
# product itself never does): say so at once rather than after the build.
datasets="$(cd "$ROOT/.." && pwd)/shared/datasets"
[ -f "$datasets/churn_modelling.csv" ] && [ -d "$datasets/mnist" ] ||
  die "the tests read the churn and MNIST data sets from $datasets (churn_modelling.csv, mnist/), which is missing: put the project's shared folder beside the clone"
# A run on an empty build directory (a fresh machine or CI) builds everything, so it skips the
# fuzz targets' own first build (below).
cold_start=0
[ -d "$CARGO_TARGET_DIR/debug" ] || cold_start=1
ensure_rust_toolchain
mkdir -p "$CARGO_TARGET_DIR"
ensure_postgres
ensure_haproxy
ensure_chromium
# Node and wasm-opt (apt-get, npm) before the background job below, which would otherwise
# install them itself while the foreground's installs hold dpkg's lock.
ensure_web_tools
# The web app and the inference bundle (and the wasm-bindgen CLI they need) build in the
# background, at the lowest CPU priority, from the start: they take the cores the native suites
# leave idle while they wait on HTTP, fsync and child servers (in a cold run on two cores the
# web step's 6.5 minutes became a 3.5-minute wait: BENCHMARKS.md, "Command 2"), and the
# foreground builds barely notice them. Their profile (wasm-size) has its own build directory and lock, and nothing before the browser suites
# reads dist/. The wasm-size builds of the web app and the inference bundle are not linted (the
# inference-only bundle's feature set never was): the engine is linted in the wasm32 test
# build, the app in the native one (its wasm-only code paths are not).
web_log="$CARGO_TARGET_DIR/b3o-web-build.log"
say "building the web app and the inference bundle in the background (log: $web_log)"
# Its own process group (job control for this one job), so that a failing run stops the
# whole build, cargo included, and leaves no lock behind.
set -m
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS B3O_ENGINE_BUNDLES=infer \
  nice -n 19 "$ROOT/scripts/build-web.sh" "$ROOT/dist" >"$web_log" 2>&1 &
web_build=$!
set +m
on_exit 'kill -- "-$web_build" 2>/dev/null'
ensure_nextest
ensure_s3s_fs
web_built=0
wait_web_build() {
  [ "$web_built" = 0 ] || return 0
  say "waiting for the web app build"
  if ! wait "$web_build"; then
    tail -40 "$web_log" >&2
    die "the web app did not build (whole log: $web_log)"
  fi
  web_built=1
  grep -E 'built in' "$web_log" >&2 || true
}
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"

say "cargo fmt --check"
cargo fmt --all -- --check
# Clippy lints the workspace's crates while they are built for the tests, instead of in a
# separate `cargo clippy` pass: that pass compiled every dependency a second time (check mode)
# for native and again for wasm32, a third of a cold run. This is what `cargo clippy -- -D
# warnings` does (clippy-driver as the workspace's rustc wrapper, arguments in CLIPPY_ARGS), on
# the real builds: native tests and benches (the app included) and the wasm32 tests.
# Dependencies are built by plain rustc, as in any build.
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# One build of the whole workspace serves both test runs below (and the `b3o` binary the
# browser suite starts): selecting packages differently would resolve features differently
# and rebuild much of the tree a second time.
# The native suites spend most of their time waiting (HTTP round trips, fsync, child servers,
# timers): on two cores four tests at a time finish them in two-thirds of the time (BENCHMARKS.md,
# "Command 2"); more cores run one per core, nextest's default. The browser suite keeps the default:
# each of its tests drives a Chromium.
native_threads=$(( $(nproc) > 4 ? $(nproc) : 4 ))
say "unit and integration tests"
# The server tests record the answers they receive for the API contract check below.
export B3O_RECORD_RESPONSES="$CARGO_TARGET_DIR/contract-answers"
rm -rf "$B3O_RECORD_RESPONSES"
cargo nextest run --workspace --no-fail-fast --test-threads "$native_threads" -E 'not package(b3o-e2e)'
say "the server's tests again, on Postgres (a throwaway cluster from Debian's postgresql; a fresh database per test)"
# Same build, same tests: only the database differs (server/tests/test_db.rs reads
# B3O_TEST_POSTGRES). The other crates never touch a database.
start_test_postgres
env -u B3O_RECORD_RESPONSES cargo nextest run --workspace --no-fail-fast --test-threads "$native_threads" \
  -E 'package(b3o-server)'
# The cluster stays up for the browser suite's replica test (e2e/tests/replicas_ui.rs); the
# steps in between do not see it.
E2E_POSTGRES="$B3O_TEST_POSTGRES"
unset B3O_TEST_POSTGRES
say "benches build (dev profile: linted, not run; BENCHMARKS.md runs them)"
cargo build --workspace --benches --profile dev
say "API contract: OpenAPI 3.1 document, recorded answers, a generated client (scripts/contract.sh)"
"$ROOT/scripts/contract.sh"
say "operations as code: alert rules, haproxy, manifests and dashboard against a real server (scripts/ops-check.sh)"
"$ROOT/scripts/ops-check.sh"
say "wasm32 test build (the models crate's wasm32 build included)"
# With the training bundle's features (what scripts/run.sh ships), so that the bundle below
# reuses every dependency of this build (only B3O's crate compiles again, as a cdylib): burn,
# cubecl and wgpu compile for wasm32 once, not again under the release profile (9.5 minutes of
# a cold run on two cores; BENCHMARKS.md). The browser is checked against tract-onnx natively;
# the wasm32 build does not compile it.
# (At the background job's priority, sharing the cores with the web app's tail, a cold run was
# a minute slower: BENCHMARKS.md, "Command 2".)
wasm_tests=(cargo test --target wasm32-unknown-unknown --no-default-features --features "$TRAIN_BUNDLE_FEATURES")
(cd wasm-client && "${wasm_tests[@]}" --no-run)
# The wasm tests run with the wasm-bindgen CLI's test runner, the background job's first step,
# while the web app's build finishes.
wasm_bindgen_current || say "waiting for the background job to install wasm-bindgen-cli"
until wasm_bindgen_current; do
  kill -0 "$web_build" 2>/dev/null || { wait_web_build; ensure_wasm_bindgen; break; }
  sleep 2
done
say "wasm tests in headless Chromium"
(cd wasm-client && "${wasm_tests[@]}")
# scripts/run.sh's server compiles no training framework and no graph runtime (burn and tract
# were almost half of its compiler time: BENCHMARKS.md, "First run"); `cargo tree` reads only Cargo.lock.
heavy="$(cargo tree -p b3o-server --no-default-features -e normal,build --prefix none |
  { grep -E '^(burn|tract)' || true; } | awk '{print $1}' | sort -u)"
[ -z "$heavy" ] || die "the serving-only server depends on $(echo $heavy | tr '\n' ' '): keep it out (features)"
# What scripts/run.sh builds: b3o-server without `train`, linted. `test-build-features` turns
# on in the shared dependencies the features the test build turned on, and the `test` profile is
# that build's (server/Cargo.toml), so that only B3O's three crates compile again (36 s; without
# them ~150 dependency units did, 1 min 46 s of a cold run). What that cannot catch, a dependency
# feature the server uses without asking for it, the build scripts/run.sh makes would. Here,
# before the wait for the web app, it fills the cores that the web build's single-threaded end
# leaves idle. It replaces target/debug/b3o; the e2e step's build puts the full one back (a
# fresh unit is linked into place again).
say "the serving-only server (scripts/run.sh's: no \`train\` feature) builds, linted"
cargo build -p b3o-server --no-default-features --features test-build-features --profile test --lib --bins \
  --message-format json-render-diagnostics >"$CARGO_TARGET_DIR/serving-only-build.json"
rebuilt="$(grep '"reason":"compiler-artifact"' "$CARGO_TARGET_DIR/serving-only-build.json" |
  grep '"fresh":false' | grep -o '"package_id":"registry[^"#]*#[^"]*"' | sed 's/.*#//; s/"$//' | sort -u || true)"
[ -z "$rebuilt" ] || say "warning: the serving-only build compiled dependencies again ($(echo $rebuilt | tr '\n' ' ')): the test build turns on features that server/Cargo.toml's test-build-features does not list"
wait_web_build
# The training bundle from the wasm32 test build above (the dev profile: the training crates at
# opt-level 2, B3O's crates unoptimised; linted, as built there): the same code as the
# release bundle scripts/run.sh builds, which is larger and faster (BENCHMARKS.md, "Command 2").
# Its Brotli copy at quality 5: seconds instead of a minute for 70 MB that only the tests load.
B3O_ENGINE_BUNDLES=train B3O_TRAIN_PROFILE=dev B3O_BROTLI_QUALITY=5 "$ROOT/scripts/build-engine.sh" "$ROOT/dist"
say "e2e tests in headless Chromium"
B3O_TEST_POSTGRES="$E2E_POSTGRES" B3O_BIN="$CARGO_TARGET_DIR/debug/b3o" \
  cargo nextest run --workspace --no-fail-fast -E 'package(b3o-e2e)'
stop_test_postgres
# Each fuzz target for 10 s. Its first build (nightly, its own target dir) takes 15-30 min on
# two cores: a run whose own builds were cold (it began with an empty build directory, or is
# past 45 min here) skips it rather than pass CI's limits, and says so; the next, warm run fuzzes.
if [ "${B3O_SKIP_FUZZ:-}" = 1 ]; then
  say "fuzzing skipped (B3O_SKIP_FUZZ=1)"
elif [ "$cold_start" = 1 ] || [ "$SECONDS" -gt 2700 ]; then
  say "fuzzing skipped: this run started with an empty build directory or took $((SECONDS / 60)) min already (cold build); the next run fuzzes, or run scripts/fuzz.sh"
else
  say "fuzz targets, 10 s each (scripts/fuzz.sh; SECURITY.md)"
  # The fuzz workspace builds with nightly: stable's clippy-driver must not wrap it.
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS FUZZ_SECONDS=10 "$ROOT/scripts/fuzz.sh"
fi
say "all checks passed"
