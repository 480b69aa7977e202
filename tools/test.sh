#!/usr/bin/env bash
# Runs every test of the workspace against the real upstream binaries: the
# pure and local-process tests, and the host tier, which brings up vnest's
# development host (real kubelets and containerd) and needs root (the
# feature host-tests of vnest-cli, vnest-supervisor and vnest-tests; a plain
# `cargo test --workspace` leaves it out).
# Builds the pinned etcd and Kubernetes binaries first when they are not in the
# cache yet (see tools/upstream/build.sh); later runs reuse them.
# Extra arguments replace the default and go to `cargo test`, e.g.
# `tools/test.sh -p vnest-pki`, or for one host test
# `tools/test.sh -p vnest-supervisor --features host-tests --test syncer_on_host`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST_TESTS="vnest-cli/host-tests,vnest-supervisor/host-tests,vnest-tests/host-tests"
tools/check-prerequisites.sh
# The host-cluster tests run real containers: containerd, runc, CNI plugins.
tools/host/install-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
echo "test.sh: upstream binaries in $VNEST_UPSTREAM_BIN_DIR" >&2
if [ $# -eq 0 ]; then
  cargo test --workspace --features "$HOST_TESTS"
else
  # The host tests put vnest's binaries in an image; a whole-workspace
  # test run builds them, a run of one package does not.
  cargo build -p vnest-supervisor -p vnest-syncer
  cargo test "$@"
fi
