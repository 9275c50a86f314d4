# A throwaway Postgres for the test suite, from Debian's `postgresql` package (installed when
# missing): its own cluster in a temporary directory, on 127.0.0.1 and a free port, stopped
# when the calling script exits. Sourced by scripts/test.sh after common.sh.
# shellcheck shell=bash

# The directory holding initdb/pg_ctl: Debian's versioned one, or whatever is on PATH.
postgres_bin_dir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then printf '%s\n' "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

ensure_postgres() {
  if postgres_bin_dir >/dev/null; then return 0; fi
  say "installing postgresql from Debian (the suite runs on Postgres too)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
     ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; then
    die "postgresql is missing and could not be installed (not root and no passwordless sudo): run 'sudo apt-get install postgresql' and try again"
  fi
  # Debian starts a cluster of its own on 5432; the suite uses its own.
}

# Starts the cluster and exports B3O_TEST_POSTGRES=postgres://b3o@127.0.0.1:PORT.
start_test_postgres() {
  local bin dir port runas=()
  bin="$(postgres_bin_dir)" || die "initdb not found after installing postgresql"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/b3o-pg.XXXXXX")"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  # Postgres refuses to run as root: as root, the cluster belongs to the `postgres` user.
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, and there is no 'postgres' user to run Postgres as"
    chown postgres "$dir"
    runas=(runuser -u postgres --)
  fi
  "${runas[@]}" "$bin/initdb" -D "$dir/data" -U b3o --auth=trust --no-sync -E UTF8 >/dev/null
  # Durability settings off: these databases are thrown away (the tests' crash tests kill b3o,
  # not Postgres). Enough connections for parallel tests, each with its own pool.
  "${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start -o \
    "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null ||
    { cat "$dir/log" >&2; die "Postgres did not start"; }
  B3O_TEST_PG_DIR="$dir"
  B3O_TEST_PG_RUNAS="${runas[*]:-}"
  B3O_TEST_PG_BIN="$bin"
  on_exit stop_test_postgres
  export B3O_TEST_POSTGRES="postgres://b3o@127.0.0.1:$port"
}

stop_test_postgres() {
  if [ -n "${B3O_TEST_PG_DIR:-}" ] && [ -d "$B3O_TEST_PG_DIR/data" ]; then
    # shellcheck disable=SC2086
    $B3O_TEST_PG_RUNAS "$B3O_TEST_PG_BIN/pg_ctl" -D "$B3O_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$B3O_TEST_PG_DIR"
  fi
}
