#!/usr/bin/env bash
# Benchmark: `vnest local up` against a bare start of the same upstream
# binaries, side by side in one run. Results go to stdout as a Markdown table;
# docs/benchmarks.md records them.
#   VNEST_BENCH_ROUNDS=N (default 5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
cargo build --release -p vnest-cli
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
VNEST_BIN="$target/release/vnest"
export VNEST_BIN
cargo bench -p vnest-tests --bench local_up
