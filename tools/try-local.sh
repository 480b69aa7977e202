#!/usr/bin/env bash
# Builds what is needed and starts a local control plane named "try" (or $1),
# then lists its namespaces with kubectl and prints how to go on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:-try}"
tools/check-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
cargo build --release -p vnest-cli
vnest="${CARGO_TARGET_DIR:-target}/release/vnest"
kubeconfig="$("$vnest" local up "$name")"
echo
echo "+ kubectl --kubeconfig $kubeconfig get namespaces"
"$VNEST_UPSTREAM_BIN_DIR/kubectl" --kubeconfig "$kubeconfig" get namespaces
cat <<MSG

The control plane keeps running. Use it with:
  export KUBECONFIG=$kubeconfig
  $VNEST_UPSTREAM_BIN_DIR/kubectl get namespaces
Stop it with:
  $vnest local down $name
MSG
