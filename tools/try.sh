#!/usr/bin/env bash
# The README's main command: vnest on a host cluster and a first virtual
# cluster, then how to use it.
#
# With a host cluster configured and reachable (KUBECONFIG or ~/.kube/config),
# it installs vnest there; set VNEST_POOL=KEY=VALUE to the label of the nodes
# the tenant's workloads run on, and VNEST_IMAGE to where your nodes pull
# vnest's image from (images/README.md). Without one, it brings up the
# development host on this machine (needs root: real kubelets, containerd;
# docs/dev-host.md), which keeps running in the background.
#
# Usage: tools/try.sh [NAME]        (default NAME: demo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:-demo}"
profile="${VNEST_CARGO_PROFILE:-release}"
tools/check-prerequisites.sh
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
export VNEST_UPSTREAM_BIN_DIR
kubectl="$VNEST_UPSTREAM_BIN_DIR/kubectl"
echo "try.sh: building vnest ($profile)" >&2
cargo build --profile "$profile" -p vnest-cli -p vnest-supervisor -p vnest-syncer -p vnest-devhost >&2
out_dir="${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")"
vnest="$(cd "$out_dir" && pwd)/vnest"

install_flags=()
devhost=false
# baseline, so that a plain `kubectl create deployment` runs (the default,
# restricted, refuses pods that do not harden their security context).
create_flags=(--expose node-port --pod-security baseline)
if "$kubectl" get --raw /readyz >/dev/null 2>&1; then
  echo "try.sh: using the host cluster of $("$kubectl" config current-context)" >&2
  pool="${VNEST_POOL:?name the label of the nodes for the tenant: VNEST_POOL=KEY=VALUE tools/try.sh}"
  [ -n "${VNEST_IMAGE:-}" ] && install_flags+=(--image "$VNEST_IMAGE")
  [ -n "${VNEST_EXPOSE:-}" ] && create_flags=(--expose "$VNEST_EXPOSE" --pod-security baseline)
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "try.sh: no host cluster is reachable (KUBECONFIG, ~/.kube/config), and bringing up the development host needs root" >&2
    exit 1
  fi
  tools/host/install-prerequisites.sh
  devhost=true
  pool="vnest.dev/pool=demo"
  state=/var/lib/vnest-devhost
  log=/var/log/vnest-devhost.log
  if [ -s "$state.kubeconfig-path" ] && KUBECONFIG="$(cat "$state.kubeconfig-path")" "$kubectl" get --raw /readyz >/dev/null 2>&1; then
    echo "try.sh: the development host is already up" >&2
  else
    "$out_dir/vnest-devhost" down --dir "$state"
    echo "try.sh: bringing up the development host (2 nodes in pool $pool; log: $log)" >&2
    rm -f "$state.kubeconfig-path"
    nohup "$out_dir/vnest-devhost" up --dir "$state" --node-label "$pool" \
      --vnest-binary "$out_dir/vnest-supervisor" --vnest-binary "$out_dir/vnest-syncer" \
      >"$state.kubeconfig-path" 2>"$log" &
    host_pid=$!
    echo "$host_pid" >"$state.pid"
    for _ in $(seq 1 600); do
      [ -s "$state.kubeconfig-path" ] && break
      if ! kill -0 "$host_pid" 2>/dev/null; then
        echo "try.sh: the development host did not come up:" >&2
        tail -20 "$log" >&2
        exit 1
      fi
      sleep 1
    done
    [ -s "$state.kubeconfig-path" ] || { echo "try.sh: the development host took too long; see $log" >&2; exit 1; }
  fi
  KUBECONFIG="$(cat "$state.kubeconfig-path")"
  export KUBECONFIG
fi

"$vnest" install "${install_flags[@]}"
"$kubectl" create namespace tenants --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
tenant_kubeconfig="$PWD/$name.kubeconfig"
if ! "$kubectl" -n tenants get virtualcluster "$name" >/dev/null 2>&1; then
  "$vnest" create "$name" -n tenants --pool "$pool" "${create_flags[@]}" --wait --kubeconfig-out "$tenant_kubeconfig"
else
  "$vnest" kubeconfig "$name" -n tenants --out "$tenant_kubeconfig"
fi
echo
echo "+ kubectl --kubeconfig $tenant_kubeconfig get nodes"
"$kubectl" --kubeconfig "$tenant_kubeconfig" get nodes
cat <<MSG

Virtual cluster "$name" is ready (Pod Security level baseline; new clusters
default to restricted). As its tenant:
  export KUBECONFIG=$tenant_kubeconfig
  $kubectl create deployment web --image=vnest.local/busybox:1 -- sleep 3600   # (the dev host has local images only)
  $kubectl get pods -o wide
As the host's admin (KUBECONFIG=$KUBECONFIG):
  $vnest list -A
  $vnest describe $name -n tenants
  $vnest verify $name -n tenants$( "$devhost" && echo " --probe-image vnest.local/busybox:1 --metadata-address 172.30.0.254")   # prove its isolation
  $vnest delete $name -n tenants --wait
Docs: docs/quick-start-admin.md, docs/tenant.md, docs/ci.md
MSG
if "$devhost" && [ -s /var/lib/vnest-devhost.pid ]; then
  echo "The development host keeps running; stop it (and everything on it) with: kill \$(cat /var/lib/vnest-devhost.pid)"
fi
