#!/usr/bin/env bash
# Command 1: install what is missing, build the web app and the server, start `b3o serve`
# with an embedded SQLite database in ./data, and print the URL.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_rust_tools
"$ROOT/scripts/build-web.sh" "$ROOT/dist"
say "building the server (release)"
cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server
export B3O_BIND="${B3O_BIND:-127.0.0.1:8080}"
export B3O_DATA_DIR="${B3O_DATA_DIR:-$ROOT/data}"
export B3O_STATIC_DIR="${B3O_STATIC_DIR:-$ROOT/dist}"
say "starting b3o serve (data in $B3O_DATA_DIR; Ctrl-C stops it)"
# `--demo`: seed the public demo models (churn, digits) when absent; idempotent.
exec "$CARGO_TARGET_DIR/release/b3o" serve --demo "$@"
