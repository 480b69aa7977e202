# Sourced by the host benchmarks (tools/bench-lifecycle.sh,
# tools/bench-density.sh), with $work (a scratch directory), $warm (a
# cluster name) and $namespace set: brings up the host and vnest as
# tools/try.sh does (release build), makes cluster $warm and deletes it so
# that images are present and nothing is measured cold, and creates
# $namespace for the benchmark's clusters. Sets $kubectl, $vnest and $pool
# (VNEST_POOL, default the dev host's pool), and KUBECONFIG to the dev
# host's when none is set. A development host it brings up is stopped
# when the benchmark exits (one already up is left running).
VNEST_CARGO_PROFILE=release tools/try.sh "$warm" >"$work/try.log" 2>&1 || {
  tail -30 "$work/try.log" >&2
  exit 1
}
if grep -q "bringing up the development host" "$work/try.log" && [ -s /var/lib/vnest-devhost.pid ]; then
  host_pid="$(cat /var/lib/vnest-devhost.pid)"
  trap 'kill "$host_pid" 2>/dev/null; while kill -0 "$host_pid" 2>/dev/null; do sleep 1; done; rm -rf "$work"' EXIT
fi
VNEST_UPSTREAM_BIN_DIR="$(tools/upstream/build.sh)"
kubectl="$VNEST_UPSTREAM_BIN_DIR/kubectl"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
vnest="$target/release/vnest"
if [ -s /var/lib/vnest-devhost.kubeconfig-path ] && [ -z "${KUBECONFIG:-}" ]; then
  KUBECONFIG="$(cat /var/lib/vnest-devhost.kubeconfig-path)"
  export KUBECONFIG
fi
pool="${VNEST_POOL:-vnest.dev/pool=demo}"
"$vnest" delete "$warm" -n tenants --wait >/dev/null
rm -f "$warm.kubeconfig"
"$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
