#!/usr/bin/env bash
# Replicas benchmark (BENCHMARKS.md, "server: one replica against three"): the release
# `b3o serve` as 1 and then 3 replicas on one throwaway Postgres (Debian's postgresql, started
# by scripts/postgres.sh) and one blob folder, always behind the same haproxy (health checks
# on /readyz, as deploy/haproxy.cfg), driven by wrk on the public demo `churn` model's codeless
# rows route (single-row JSON requests, server/benches/http.lua): back to back, then at an
# offered RATE. Reports requests/s, p99 and the CPU the replicas spent per request (user +
# system of every replica process, from /proc): on a machine whose cores the load generator
# and haproxy share, CPU per request is what scales with replicas, not requests/s.
#
#   scripts/bench-replicas.sh
#   SKIP_BUILD=1 DURATION=10s RATE=2000 CONNECTIONS=64 scripts/bench-replicas.sh
#
# Needs wrk and haproxy (`apt-get install -y wrk haproxy`); not part of the test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/postgres.sh"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
RATE="${RATE:-2000}"

command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
command -v haproxy >/dev/null || die "haproxy is missing: apt-get install -y haproxy"
ensure_postgres
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server --bin b3o
fi
BIN="$CARGO_TARGET_DIR/release/b3o"
WORK="$(mktemp -d)"
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() { stop_all; stop_test_postgres; rm -rf "$WORK"; }
trap cleanup EXIT
start_test_postgres
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done; echo "$t"; }
ROWS_BODY='{"rows":[{"CreditScore":619,"Geography":"France","Gender":"Female","Age":42,"Tenure":2,"Balance":0,"NumOfProducts":1,"HasCrCard":1,"IsActiveMember":1,"EstimatedSalary":101348.88}]}'

echo "release b3o serve behind haproxy; wrk -t$THREADS -c$CONNECTIONS -d$DURATION; $(nproc) cores shared by all"
for n in 1 3; do
    db="b3o_bench_$n"
    psql -q "$B3O_TEST_POSTGRES/postgres" -c "CREATE DATABASE $db" >/dev/null
    url="$B3O_TEST_POSTGRES/$db"
    blobs="$WORK/blobs-$n"; mkdir -p "$blobs"
    servers=""; replica_pids=()
    for i in $(seq 1 "$n"); do
        port="$(free_port)"; dir="$WORK/r$n-$i"; mkdir -p "$dir"
        demo=(); [[ "$i" = 1 ]] && demo=(--demo)
        RUST_LOG=warn B3O_DATABASE_URL="$url" "$BIN" serve "${demo[@]}" --bind "127.0.0.1:$port" \
            --data-dir "$dir" --static-dir "$dir/no-app" --blob-store "file://$blobs" \
            --admin-email bench@example.org --admin-password 'bench password 1' >"$dir/log" 2>&1 &
        PIDS+=($!); replica_pids+=($!)
        for _ in $(seq 1 600); do
            grep -q "is listening on" "$dir/log" && break
            kill -0 "$!" 2>/dev/null || { cat "$dir/log" >&2; die "replica $i did not start"; }
            sleep 0.1
        done
        servers+="    server r$i 127.0.0.1:$port"$'\n'
    done
    lb_port="$(free_port)"
    cat >"$WORK/haproxy-$n.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    retry-on conn-failure
    option redispatch 1
frontend b3o
    bind 127.0.0.1:$lb_port
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host b3o
    http-check expect status 200
    default-server check inter 1s fall 2 rise 1
$servers
EOF
    haproxy -db -f "$WORK/haproxy-$n.cfg" >/dev/null 2>&1 &
    PIDS+=($!); lb_pid=$!
    base="http://127.0.0.1:$lb_port"
    for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/readyz" && break; sleep 0.1; done
    sleep 1.5
    # Every replica loads the model before the clock starts.
    for _ in $(seq 1 $((n * 4))); do
        curl -sf -o /dev/null -H 'content-type: application/json' -d "$ROWS_BODY" "$base/api/predict/churn/rows"
    done
    for rate in "" "$RATE"; do
        if [[ -n "$rate" ]]; then pace="offered $rate req/s"; else pace="back to back"; fi
        echo
        echo "== $n replica(s): POST /api/predict/churn/rows, $pace"
        before="$(cpu_ticks "${replica_pids[@]}")"; lb_before="$(cpu_ticks "$lb_pid")"
        BODY="$ROWS_BODY" RATE="$rate" CONNECTIONS="$CONNECTIONS" wrk -t"$THREADS" -c"$CONNECTIONS" \
            -d"$DURATION" --latency -s "$ROOT/server/benches/http.lua" "$base/api/predict/churn/rows" | tee "$WORK/wrk.out"
        after="$(cpu_ticks "${replica_pids[@]}")"; lb_after="$(cpu_ticks "$lb_pid")"
        requests="$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")"
        awk -v t=$((after - before)) -v l=$((lb_after - lb_before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
            'BEGIN { printf "replicas CPU: %.1f s for %d requests = %.0f µs per request (haproxy: %.0f µs)\n", t / hz, n, t / hz / n * 1e6, l / hz / n * 1e6 }'
    done
    stop_all
done
