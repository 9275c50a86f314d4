#!/usr/bin/env bash
# Command 1: install what is missing, build the web app and the server, start `b3o serve`
# with an embedded SQLite database in ./data, and print the URL. The training engine (the
# largest build) is built after the server has started: prediction works at once, training
# as soon as it is done (the page says so meanwhile).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_tools
B3O_ENGINE_BUNDLES=infer "$ROOT/scripts/build-web.sh" "$ROOT/dist"
say "building the server (release)"
cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server --bin b3o
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
