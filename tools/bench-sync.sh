#!/usr/bin/env bash
# Benchmark: the syncer's create-to-host latency, throughput and memory for
# N ConfigMaps and N pods, side by side with creating them directly on the
# host, in one run on the development host (needs root, like tools/test.sh).
# Results go to stdout as a Markdown table; docs/benchmarks.md records them.
#   VNEST_BENCH_OBJECTS=N (default 1000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/host/install-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
# The syncer and supervisor run from images built from optimized binaries,
# next to the bench's own (target/release).
cargo build --release -p vnest-supervisor -p vnest-syncer
cargo bench -p vnest-supervisor --bench sync_latency
