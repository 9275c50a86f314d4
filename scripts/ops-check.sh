#!/usr/bin/env bash
# The operations-as-code check (issue #15): what in deploy/ can be validated on a machine
# without a container runtime or a cluster.
#  1. Prometheus alert rules: `promtool check rules`, and their unit tests on synthetic series
#     (`promtool test rules deploy/prometheus/alerts_test.yml`);
#  2. haproxy's configuration: `haproxy -c` (warnings fail it, except that the compose
#     service names do not resolve outside compose);
#  3. a real `b3o serve --demo` (the binary the tests built), exercised then scraped:
#     scripts/ops_check.py checks that the Kubernetes manifests (rendered by `kubectl
#     kustomize` when kubectl is installed), the compose file and the Containerfile parse and
#     agree with each other and with the server (probe paths answer 200 on the real server,
#     ports, shutdown periods, B3O_* variables are flags of `b3o serve`), and that every
#     metric named by the alert rules and the Grafana dashboard is one /metrics exposes (a
#     self-test first shows that a made-up metric is caught);
#  4. the server stops gracefully on SIGTERM: exit status 0.
# Installs promtool (Debian's `prometheus`) and haproxy when missing. scripts/test.sh runs it
# after the server tests; alone: cargo build -p b3o-server --bin b3o && scripts/ops-check.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

ensure_ops_tools() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v haproxy >/dev/null || missing+=(haproxy)
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]} from Debian (promtool, haproxy -c)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
     ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    die "${missing[*]} missing and could not be installed (not root and no passwordless sudo): run 'sudo apt-get install ${missing[*]}' and try again"
  fi
}
ensure_ops_tools
ensure_python_tools
PY="$B3O_VENV/bin/python"
export PYTHONDONTWRITEBYTECODE=1
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
BIN="${B3O_BIN:-$CARGO_TARGET_DIR/debug/b3o}"
[ -x "$BIN" ] || die "$BIN not found: build it first (cargo build -p b3o-server --bin b3o)"

work="$(mktemp -d "${TMPDIR:-/tmp}/b3o-ops.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say "ops: alert rules (promtool check rules, promtool test rules)"
promtool check rules deploy/prometheus/alerts.yml >/dev/null ||
  { promtool check rules deploy/prometheus/alerts.yml; die "deploy/prometheus/alerts.yml is not valid"; }
(cd deploy/prometheus && promtool test rules alerts_test.yml) > "$work/promtool.out" 2>&1 ||
  { cat "$work/promtool.out" >&2; die "the alert rules' unit tests failed (above)"; }
tests="$(grep -c '^  - name:' deploy/prometheus/alerts_test.yml)"

say "ops: haproxy -c -f deploy/haproxy.cfg"
haproxy -c -f deploy/haproxy.cfg > "$work/haproxy.out" 2>&1 ||
  { cat "$work/haproxy.out" >&2; die "deploy/haproxy.cfg is not valid"; }
# Outside compose the replicas' names do not resolve; any other warning is a mistake.
if grep '\[WARNING\]' "$work/haproxy.out" | grep -v "could not resolve address 'b3o[0-9]*'" >&2; then
  die "haproxy warns about deploy/haproxy.cfg (above)"
fi

k8s="deploy/k8s"
if command -v kubectl >/dev/null; then
  kubectl kustomize deploy/k8s > "$work/k8s.yaml" 2> "$work/kustomize.err" ||
    { cat "$work/kustomize.err" >&2; die "kubectl kustomize deploy/k8s failed"; }
  k8s="$work/k8s.yaml"
fi

say "ops: manifests, compose file and dashboard against a real b3o serve --demo"
RUST_LOG=warn "$BIN" serve --bind 127.0.0.1:0 --data-dir "$work/data" --static-dir "$work/no-static" \
  --demo --shutdown-drain-secs 0 > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
base=""
for _ in $(seq 600); do
  base="$(sed -n 's|^B3O Edge is listening on \(http://[^ ]*[^/ ]\)/*$|\1|p' "$work/serve.out" | head -n 1)"
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; die "b3o serve exited before listening"; }
  sleep 0.1
done
[ -n "$base" ] || { cat "$work/serve.err" >&2; die "b3o serve did not listen within 60 s"; }
"$BIN" serve --help > "$work/serve-help.txt"

report="$("$PY" scripts/ops_check.py --base "$base" --k8s "$k8s" --serve-help "$work/serve-help.txt")" ||
  die "deploy/ does not agree with the server (above)"
echo "$report"

say "ops: SIGTERM stops the server gracefully"
kill -TERM "$server_pid"
status=0
for _ in $(seq 300); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && die "b3o serve did not exit within 30 s of SIGTERM"
wait "$server_pid" || status=$?
server_pid=""
[ "$status" -eq 0 ] || { tail -n 20 "$work/serve.err" >&2; die "b3o serve exited with status $status after SIGTERM"; }

say "ops check passed: alert rules valid, $tests unit tests pass; haproxy.cfg valid; manifests, compose and dashboard agree with a real server; graceful exit on SIGTERM"
