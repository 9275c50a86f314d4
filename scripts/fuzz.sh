#!/usr/bin/env bash
# Fuzzing (issue #19): builds the libFuzzer targets of fuzz/ with the nightly toolchain and
# cargo-fuzz (both installed when missing), writes their seed corpora, and runs every target for
# FUZZ_SECONDS seconds. Fails if any target finds a crash: a panic, an abort, more than
# FUZZ_RSS_MB of memory, or one input running over FUZZ_TIMEOUT seconds. The reproducer is then
# in fuzz/artifacts/<target>/ and the log in fuzz/logs/<target>.log (see SECURITY.md, "Fuzzing").
#
#   scripts/fuzz.sh                      # every target, 30 s each, one at a time
#   FUZZ_SECONDS=600 FUZZ_JOBS=2 nice -n 19 scripts/fuzz.sh
#   scripts/fuzz.sh csv_reader v2_request
#
# Environment: FUZZ_SECONDS (30), FUZZ_JOBS (targets run at once, 1), FUZZ_RSS_MB (2048),
# FUZZ_TIMEOUT (10), B3O_FUZZ_TARGET_DIR (build directory, ~/.cache/b3o/fuzz-target).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_JOBS="${FUZZ_JOBS:-1}"
FUZZ_RSS_MB="${FUZZ_RSS_MB:-2048}"
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"
# Its own build directory: nightly and the coverage instrumentation would share nothing with
# the main build.
export CARGO_TARGET_DIR="${B3O_FUZZ_TARGET_DIR:-$HOME/.cache/b3o/fuzz-target}"

ALL_TARGETS=(update_decoder csv_reader image_decoder v2_request onnx_loader secagg_messages)
# Longest input per target: room for the largest seed (a churn update or ONNX export is ~50 KB).
declare -A MAX_LEN=(
  [update_decoder]=65536
  [csv_reader]=4096
  [image_decoder]=32768
  [v2_request]=4096
  [onnx_loader]=65536
  [secagg_messages]=4096
)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
  [ -n "${MAX_LEN[$t]:-}" ] || die "unknown fuzz target '$t' (targets: ${ALL_TARGETS[*]})"
done

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (a few minutes, once)"
  cargo install cargo-fuzz --locked
fi

# No sanitizer (safe Rust); debug assertions on, so that integer overflow panics too.
say "building the fuzz targets"
cargo +nightly fuzz build -s none --debug-assertions
say "writing the seed corpora"
cargo +nightly run --quiet --manifest-path fuzz/Cargo.toml -p b3o-fuzz-support --bin gen-seeds \
  -- fuzz/corpus

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/$triple/release"
mkdir -p fuzz/logs

run_target() {
  local t="$1" rc=0
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  "$bin_dir/$t" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$FUZZ_SECONDS" \
    -max_len="${MAX_LEN[$t]}" \
    -rss_limit_mb="$FUZZ_RSS_MB" \
    -timeout="$FUZZ_TIMEOUT" \
    -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"fuzz/logs/$t.rc"
}

say "fuzzing ${TARGETS[*]} for ${FUZZ_SECONDS} s each, ${FUZZ_JOBS} at a time"
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n || true; done
  rm -f "fuzz/logs/$t.rc"
  run_target "$t" &
done
wait

failed=()
printf '%-16s %12s %8s  %s\n' target executions corpus result
for t in "${TARGETS[@]}"; do
  rc="$(cat "fuzz/logs/$t.rc" 2>/dev/null || echo missing)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/logs/$t.log" | tail -n 1)"
  corpus="$(find "fuzz/corpus/$t" -type f | wc -l)"
  if [ "$rc" = 0 ]; then
    result=clean
  else
    result="CRASH (exit $rc): $(ls -t "fuzz/artifacts/$t" 2>/dev/null | head -n 1)"
    failed+=("$t")
  fi
  printf '%-16s %12s %8s  %s\n' "$t" "${execs:-?}" "$corpus" "$result"
done
if [ "${#failed[@]}" -gt 0 ]; then
  for t in "${failed[@]}"; do
    say "$t: last lines of fuzz/logs/$t.log"
    grep -v '^#[0-9]' "fuzz/logs/$t.log" | tail -n 30 >&2
  done
  die "fuzzing found crashes in: ${failed[*]} (minimise: cargo +nightly fuzz tmin -s none -a <target> <artifact>)"
fi
say "every target ran ${FUZZ_SECONDS} s without a crash"
