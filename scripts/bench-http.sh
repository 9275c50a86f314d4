#!/usr/bin/env bash
# HTTP load benchmark of the inference endpoint (BENCHMARKS.md, "server: inference over HTTP"):
# starts the release `b3o serve --demo` on a fresh data directory on 127.0.0.1, then drives the
# public demo `churn` model with wrk at concurrency 64 (single-row requests, POST bodies and
# pacing in server/benches/http.lua), for the KServe V2 route (preprocessed inputs) and the
# codeless JSON rows route (raw values, preprocessing server-side): first at an offered load of
# RATE requests/s (default 5000), then back to back (the peak). Each run is bounded (DURATION,
# default 15 s). Not part of the test suite.
#
#   scripts/bench-http.sh                 # build (release) and run both routes
#   SKIP_BUILD=1 DURATION=10s RATE=5000 CONNECTIONS=64 THREADS=2 scripts/bench-http.sh
#   SERVE_ARGS="--max-batch-delay-us 0" scripts/bench-http.sh   # other serve flags
#
# Needs wrk (`apt-get install -y wrk`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/b3o/target}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PORT="${PORT:-18089}"
RATE="${RATE:-5000}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --manifest-path "$ROOT/Cargo.toml" --release -p b3o-server --bin b3o
fi
BIN="$CARGO_TARGET_DIR/release/b3o"
DATA="$(mktemp -d)"
LOG="$DATA/server.log"
cleanup() {
    [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$DATA"
}
trap cleanup EXIT

RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --demo --bind "127.0.0.1:$PORT" --data-dir "$DATA" \
    --static-dir "$DATA/no-app" --admin-email bench@example.org --admin-password 'bench password 1' \
    ${SERVE_ARGS:-} >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    grep -q "is listening on" "$LOG" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
# utime + stime of the server process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# The churn model's input width, from its V2 metadata (`"shape":[-1,N]`).
META="$(curl -sf "$BASE/v2/models/churn")"
DIM="$(grep -o '"shape":\[-1,[0-9]*\]' <<<"$META" | head -1 | grep -o '[0-9]*\]' | tr -d ']')"
ROW="$(seq 1 "$DIM" | awk '{ printf "%s%.3f", (NR > 1 ? "," : ""), (NR % 7) / 7 - 0.4 }')"
V2_BODY="{\"inputs\":[{\"name\":\"input\",\"shape\":[1,$DIM],\"datatype\":\"FP32\",\"data\":[$ROW]}]}"
ROWS_BODY='{"rows":[{"CreditScore":619,"Geography":"France","Gender":"Female","Age":42,"Tenure":2,"Balance":0,"NumOfProducts":1,"HasCrCard":1,"IsActiveMember":1,"EstimatedSalary":101348.88}]}'

# Warm the model up (first request loads it) and check both bodies are accepted.
curl -sf -o /dev/null -H 'content-type: application/json' -d "$V2_BODY" "$BASE/v2/models/churn/infer"
curl -sf -o /dev/null -H 'content-type: application/json' -d "$ROWS_BODY" "$BASE/api/predict/churn/rows"

echo "b3o serve --demo (release) on $BASE; wrk -t$THREADS -c$CONNECTIONS -d$DURATION; $(nproc) cores"
for route in "v2_infer:/v2/models/churn/infer:$V2_BODY" "rows:/api/predict/churn/rows:$ROWS_BODY"; do
    name="${route%%:*}"; rest="${route#*:}"; path="${rest%%:*}"; body="${rest#*:}"
    for rate in "$RATE" ""; do
        echo
        if [[ -n "$rate" ]]; then pace="offered $rate req/s"; else pace="back to back"; fi
        echo "== $name: POST $path, $pace"
        before="$(cpu_ticks)"
        BODY="$body" RATE="$rate" CONNECTIONS="$CONNECTIONS" wrk -t"$THREADS" -c"$CONNECTIONS" \
            -d"$DURATION" --latency -s "$ROOT/server/benches/http.lua" "$BASE$path" | tee "$DATA/wrk.out"
        after="$(cpu_ticks)"
        requests="$(awk '/requests in/ { print $1 }' "$DATA/wrk.out")"
        # The server's own CPU per request (user + system), whatever else runs on the machine.
        awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
            'BEGIN { printf "server CPU: %.1f s for %d requests = %.0f µs per request\n", t / hz, n, t / hz / n * 1e6 }'
    done
done
echo
echo "== server-side request latency (Prometheus histogram of the last runs)"
curl -sf "$BASE/metrics" | grep -E '^b3o_inference_request_seconds_(count|sum)' || true
