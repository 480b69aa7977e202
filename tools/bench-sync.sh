#!/usr/bin/env bash
# Benchmark: the syncer side by side with the floor (a minimal watch-then-
# create relay) and with creating directly on the host, for ConfigMaps,
# pods without a token and pods with a tenant token, in closed-loop bursts
# and at fixed open-loop rates, in one run on the development host (needs
# root, like tools/test.sh). Prints Markdown tables (latencies, throughput,
# CPU seconds per 1000 objects, ratios); docs/benchmarks.md records them.
#   VNEST_BENCH_OBJECTS=N    objects per measurement (default 1000)
#   VNEST_BENCH_ROUNDS=R     rounds, the routes' order rotating (default 3)
#   VNEST_BENCH_RATES=50,200 open-loop rates, objects per second
#   VNEST_BENCH_BURST=no     no closed-loop bursts (the rates only)
#   VNEST_BENCH_ONLY=pod,tpod only these workloads (cm, pod, tpod)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/host/install-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
# The syncer and supervisor run from images built from optimized binaries,
# next to the bench's own (target/release).
cargo build --release -p vnest-supervisor -p vnest-syncer
cargo bench -p vnest-supervisor --bench sync_latency
