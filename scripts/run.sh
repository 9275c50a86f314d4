#!/usr/bin/env bash
# Command 1: install what is missing, build the web app and the server, start `b3o serve`
# with an embedded SQLite database in ./data, and print the URL.
# - The server builds in the background while the tools install and the web app builds: on a
#   two-core machine each build has long single-threaded stretches (LTO, wasm-opt, large
#   crates) that the other fills. They do not block each other: cargo locks each profile's
#   directory, and these are different profiles.
# - The training engine (the largest build) is built after the server has started: prediction
#   works at once, training as soon as it is done (the page says so meanwhile).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs) first"
mkdir -p "$CARGO_TARGET_DIR"
server_log="$CARGO_TARGET_DIR/b3o-server-build.log"
say "building the server (release, serving only) in the background (log: $server_log)"
# --no-default-features: without `train` (burn and the native FL client: `b3o client` and
# `b3o simulate`), which serving does not use; a quarter less to compile. The demo models ship
# as weights. `cargo install --locked --path server` builds the full `b3o`.
cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server --no-default-features --bin b3o --color never \
  >"$server_log" 2>&1 &
server_build=$!
trap 'kill "$server_build" 2>/dev/null || true' EXIT
B3O_ENGINE_BUNDLES=infer "$ROOT/scripts/build-web.sh" "$ROOT/dist"
say "waiting for the server build"
if ! wait "$server_build"; then
  tail -40 "$server_log" >&2
  die "the server did not build (whole log: $server_log)"
fi
say "server built"
export B3O_BIND="${B3O_BIND:-127.0.0.1:8080}"
export B3O_DATA_DIR="${B3O_DATA_DIR:-$ROOT/data}"
export B3O_STATIC_DIR="${B3O_STATIC_DIR:-$ROOT/dist}"
say "starting b3o serve (data in $B3O_DATA_DIR; Ctrl-C stops it)"
# `--demo`: seed the public demo models (churn, digits) when absent; idempotent.
"$CARGO_TARGET_DIR/release/b3o" serve --demo "$@" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' INT TERM EXIT
url="http://$B3O_BIND/"
if [ "${B3O_TRAINING_ENGINE:-1}" = 1 ]; then
  # Behind the running server, at low priority: it answers meanwhile.
  sleep 2
  say "open $url (prediction works now); building the training engine"
  if nice -n 10 env B3O_ENGINE_BUNDLES=train "$ROOT/scripts/build-engine.sh" "$ROOT/dist"; then
    say "training engine built: $url is complete (training works now)"
  else
    say "the training engine could not be built (see above): $url predicts, but cannot train"
  fi
fi
wait "$server"
