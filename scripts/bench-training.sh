#!/usr/bin/env bash
# Browser training benchmark (BENCHMARKS.md, "Browser engine", training): the built training
# engine (dist/engine/b3o_train, what the app loads) in headless Chromium, the churn network
# and the digit CNN on WebGPU against the CPU path, plus what `auto` picks on this machine.
# Meant for a machine with a GPU (WebGPU through Vulkan): Chromium, chromedriver and a GPU
# driver with Vulkan. Without a GPU, `--software` measures SwiftShader's adapter (slow: few
# rows). Builds the training bundle (release) and installs Debian's chromium and
# chromium-driver when they are (common.sh `ensure_chromium`, as the tests do).
# Usage: scripts/bench-training.sh [bench_training.py flags], e.g.
#   scripts/bench-training.sh                                   # a GPU machine
#   scripts/bench-training.sh --software --rows-gpu 256 --batches 32 --runs 1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Always the release bundle, what scripts/run.sh serves (scripts/test.sh leaves a less
# optimised one, built from its wasm32 test build, in dist/): seconds when it is built already.
say "building the training engine (release profile) into dist/engine"
env -u B3O_TRAIN_PROFILE B3O_ENGINE_BUNDLES=train "$ROOT/scripts/build-engine.sh" "$ROOT/dist"
ensure_chromium
chromium="$(command -v chromium)"
say "timing training in headless Chromium ($("$chromium" --version 2>/dev/null))"
python3 "$ROOT/scripts/bench_training.py" --engine "$ROOT/dist/engine" --chromium "$chromium" "$@"
