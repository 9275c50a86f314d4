#!/usr/bin/env bash
# Round benchmark (BENCHMARKS.md, "a round of 1,000 clients over 1 and 3 replicas"): one
# federated round of CLIENTS partners (default 1,000; each its own account, joined and ready)
# through haproxy to 1 and then 3 replicas of `b3o serve` on one throwaway Postgres and one
# s3s-fs; all partners fetch the global model and upload an update, 64 at a time. Prints the
# round's wall time, updates per second and the replicas' CPU per update
# (server/tests/replicas.rs, `bench_a_round_of_1000_clients_over_1_and_3_replicas`, ignored in
# the suite). The servers are the test build of `b3o` (dependencies optimised, the server's
# own code not): compare the two lines with each other, not with the release benchmarks.
#
#   scripts/bench-round.sh
#   CLIENTS=200 scripts/bench-round.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/postgres.sh"
cd "$ROOT"
ensure_nextest
ensure_s3s_fs
ensure_postgres
ensure_haproxy
start_test_postgres
# --workspace: the suite's feature set, so that nothing is built a second time.
B3O_BENCH_CLIENTS="${CLIENTS:-1000}" cargo nextest run --workspace --run-ignored only \
  --no-capture -E 'package(b3o-server) and test(bench_a_round_of_1000_clients)' 2>&1 | grep -E 'BENCH|PASS|FAIL|panicked'
