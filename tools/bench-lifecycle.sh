#!/usr/bin/env bash
# Benchmark: a virtual cluster's lifecycle on the development host (or the
# host cluster of tools/try.sh), side by side in one run with the floor of
# a control plane start: the same etcd and kube-apiserver binaries started
# bare on this machine (tools/bench-local-up.sh's "bare" side).
#
# Per round, each timed from just before the command to its end:
#   create→Ready      `vnest create NAME --wait` (certificates, control
#                     plane, syncer, the tenant's kubeconfig)
#   first pod Running `kubectl run` in the new cluster until its phase is
#                     Running as the tenant reads it
#   delete→gone       `vnest delete NAME --wait` (the tenant's data gone,
#                     every pod of it stopping), and until the host has
#                     removed its namespaces
#   run round trip    `vnest run -- true`: create, wait, run, delete
# Prints a Markdown table (median, min, max) and the ratios to the floor;
# docs/benchmarks.md records them.
#   VNEST_BENCH_ROUNDS=N  rounds (default 5)
# Needs root without a host cluster, like tools/try.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${VNEST_BENCH_ROUNDS:-5}"
namespace=bench-lifecycle
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

warm=lifecycle-warm
# shellcheck source=tools/bench-host.sh
. tools/bench-host.sh

now() { date +%s.%N; }
since() { awk -v now="$(now)" -v start="$1" 'BEGIN { printf "%.3f", now - start }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
record() { echo "$2" >>"$work/$1"; }

for round in $(seq 1 "$rounds"); do
  name="lc-$round"
  tenant="$work/$name.kubeconfig"
  start="$(now)"
  "$vnest" create "$name" -n "$namespace" --pool "$pool" --pod-security baseline --expose node-port \
    --wait --kubeconfig-out "$tenant" >"$work/create.log" 2>&1 || {
    cat "$work/create.log" >&2
    exit 1
  }
  record create "$(since "$start")"

  start="$(now)"
  "$kubectl" --kubeconfig "$tenant" run first --image=vnest.local/busybox:1 \
    --restart=Never -- sleep 3600 >/dev/null
  until [ "$("$kubectl" --kubeconfig "$tenant" get pod first -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]; do
    if awk -v t="$(since "$start")" 'BEGIN { exit !(t > 300) }'; then
      echo "bench-lifecycle: the first pod of $name did not run in 5 minutes" >&2
      "$kubectl" --kubeconfig "$tenant" describe pod first >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  record pod "$(since "$start")"

  start="$(now)"
  "$vnest" delete "$name" -n "$namespace" --wait >/dev/null
  record delete "$(since "$start")"
  # The host finishes deleting the (stopped) namespaces after that.
  until [ -z "$("$kubectl" get namespaces -l "vnest.dev/virtualcluster=$name,vnest.dev/virtualcluster-namespace=$namespace" -o name)" ]; do
    sleep 0.2
  done
  record namespaces "$(since "$start")"

  start="$(now)"
  "$vnest" run -n "$namespace" --pool "$pool" --expose node-port --name "run-$round" -- true >"$work/run.log" 2>&1 || {
    cat "$work/run.log" >&2
    exit 1
  }
  record run "$(since "$start")"
  echo "bench-lifecycle: round $round/$rounds done" >&2
done

# The floor: the same apiserver and etcd started bare on this machine.
VNEST_BENCH_ROUNDS="$rounds" tools/bench-local-up.sh >"$work/floor.md" 2>"$work/floor.log" || {
  tail -20 "$work/floor.log" >&2
  exit 1
}
floor_apiserver="$(grep '^| bare: etcd + kube-apiserver to /readyz' "$work/floor.md" | cut -d'|' -f3 | tr -d ' ')"
floor_plane="$(grep '^| bare: + kube-controller-manager' "$work/floor.md" | cut -d'|' -f3 | tr -d ' ')"

stats() { sort -n "$work/$1" | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.2f | %.2f | %.2f", m, v[1], v[NR] }'; }
median() { stats "$1" | cut -d'|' -f1 | tr -d ' '; }

echo "| measure (seconds, $rounds rounds) | median | min | max |"
echo "|---|---|---|---|"
echo "| floor: bare etcd + kube-apiserver to /readyz | $floor_apiserver | | |"
echo "| floor: + kube-controller-manager running controllers | $floor_plane | | |"
echo "| vnest create --wait (to Ready) | $(stats create) |"
echo "| first pod Running in the tenant | $(stats pod) |"
echo "| vnest delete --wait (to gone) | $(stats delete) |"
echo "| delete until the host namespaces are gone | $(stats namespaces) |"
echo "| vnest run -- true (round trip) | $(stats run) |"
echo
echo "| ratio of medians | |"
echo "|---|---|"
echo "| create→Ready / bare apiserver ready | $(ratio "$(median create)" "$floor_apiserver") |"
echo "| create→Ready / bare control plane ready | $(ratio "$(median create)" "$floor_plane") |"
