#!/usr/bin/env bash
# Runs every test of the workspace against the real upstream binaries.
# The host-cluster test (tests/tests/host_cluster.rs) needs root.
# Builds the pinned etcd and Kubernetes binaries first when they are not in the
# cache yet (see tools/upstream/build.sh); later runs reuse them.
# Extra arguments go to `cargo test`, e.g. `tools/test.sh -p vnest-pki`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/check-prerequisites.sh
# The host-cluster tests run real containers: containerd, runc, CNI plugins.
tools/host/install-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
echo "test.sh: upstream binaries in $VNEST_UPSTREAM_BIN_DIR" >&2
cargo test --workspace "$@"
