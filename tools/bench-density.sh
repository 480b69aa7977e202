#!/usr/bin/env bash
# Benchmark: how many idle tenants this machine holds, on the development
# host (or the host cluster of tools/try.sh).
#
# For each N of VNEST_BENCH_DENSITY (default "1 5 10 20"):
#   - N VirtualClusters are created at once; timed until the last is Ready
#     (each `vnest create --wait`, all started together);
#   - after VNEST_BENCH_SETTLE seconds idle (default 60), every pod of each
#     tenant (both host namespaces) is read from the kubelets' summary API
#     (memory working set, CPU): MiB and millicores per tenant, and per
#     component;
#   - each tenant answers `kubectl get ns` through its own kubeconfig,
#     timed; "answering" means within 1 s;
#   - the N clusters are deleted (`vnest delete --wait`) before the next N.
# It stops after the first N where not every cluster became Ready within
# VNEST_BENCH_READY_TIMEOUT (default 10m) or one answered slower than 1 s.
#
# Then the supervisor's own memory per VirtualCluster: VNEST_BENCH_PAUSED
# (default 200) paused VirtualClusters (their certificates, Secrets and
# namespaces made, no pods), the supervisor's working set before and after.
#
# Prints Markdown tables; docs/benchmarks.md records them. Needs root
# without a host cluster, like tools/try.sh. Not part of CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
steps="${VNEST_BENCH_DENSITY:-1 5 10 20}"
settle="${VNEST_BENCH_SETTLE:-60}"
ready_timeout="${VNEST_BENCH_READY_TIMEOUT:-10m}"
paused="${VNEST_BENCH_PAUSED:-200}"
namespace=bench-density
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

warm=density-warm
# shellcheck source=tools/bench-host.sh
. tools/bench-host.sh

now() { date +%s.%N; }
since() { awk -v now="$(now)" -v start="$1" 'BEGIN { printf "%.3f", now - start }'; }
# The median of the numbers on stdin, rounded.
median() { sort -n | awk '{ v[NR] = $1 } END {
  if (!NR) exit
  printf "%.0f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Every pod's working set (bytes) and CPU (nanocores), one line each:
# NAMESPACE POD COMPONENT BYTES NANOCORES, from every node's summary API.
pod_usage() {
  for node in $("$kubectl" get nodes -o jsonpath='{.items[*].metadata.name}'); do
    "$kubectl" get --raw "/api/v1/nodes/$node/proxy/stats/summary" 2>/dev/null || true
  done | python3 -c '
import json, sys
decoder = json.JSONDecoder()
text = sys.stdin.read()
at = 0
while at < len(text):
    while at < len(text) and text[at].isspace():
        at += 1
    if at >= len(text):
        break
    summary, at = decoder.raw_decode(text, at)
    for pod in summary.get("pods", []):
        ref = pod["podRef"]
        memory = (pod.get("memory") or {}).get("workingSetBytes", 0)
        cpu = (pod.get("cpu") or {}).get("usageNanoCores", 0)
        print(ref["namespace"], ref["name"], memory, cpu)
'
}

# The host namespaces of VirtualCluster NAME in $namespace, one per line.
host_namespaces() {
  "$kubectl" get namespaces -l "vnest.dev/virtualcluster=$1,vnest.dev/virtualcluster-namespace=$namespace" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# Component of a pod by its name in a control-plane namespace ("workloads"
# for every pod of the workloads namespace: the tenant's CoreDNS and pods).
component_of() {
  case "$1" in
    *-cp) case "$2" in
      apiserver-*) echo apiserver ;;
      controller-manager-*) echo controller-manager ;;
      etcd-*) echo etcd ;;
      syncer-*) echo syncer ;;
      *) echo other ;;
    esac ;;
    *) echo workloads ;;
  esac
}

echo "| tenants at once | all Ready (s) | MiB per tenant, median | max | millicores per tenant, median | answering \`get ns\` ≤ 1 s | slowest answer (s) |"
echo "|---|---|---|---|---|---|---|"
: >"$work/components"
for n in $steps; do
  names=()
  for i in $(seq 1 "$n"); do names+=("d$n-$i"); done
  start="$(now)"
  pids=()
  for name in "${names[@]}"; do
    "$vnest" create "$name" -n "$namespace" --pool "$pool" --pod-security baseline --expose node-port \
      --timeout "$ready_timeout" --kubeconfig-out "$work/$name.kubeconfig" >"$work/$name.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  all_ready="$(since "$start")"
  if [ "$failed" -gt 0 ]; then
    echo "| $n | not all: $failed not Ready within $ready_timeout | | | | | |"
    break
  fi
  sleep "$settle"
  pod_usage >"$work/usage"
  : >"$work/per-tenant"
  answering=0
  slowest=0
  for name in "${names[@]}"; do
    bytes=0
    nanocores=0
    for ns in $(host_namespaces "$name"); do
      while read -r pod_ns pod memory cpu; do
        [ "$pod_ns" = "$ns" ] || continue
        bytes=$((bytes + memory))
        nanocores=$((nanocores + cpu))
        echo "$(component_of "$ns" "$pod") $memory" >>"$work/components"
      done <"$work/usage"
    done
    echo "$bytes $nanocores" >>"$work/per-tenant"
    t0="$(now)"
    if "$kubectl" --kubeconfig "$work/$name.kubeconfig" get ns --request-timeout=5s >/dev/null 2>&1; then
      took="$(since "$t0")"
      awk -v t="$took" 'BEGIN { exit !(t <= 1) }' && answering=$((answering + 1))
    else
      took=inf
    fi
    slowest="$(awk -v a="$slowest" -v b="$took" 'BEGIN { if (b == "inf" || b + 0 > a + 0) print b; else print a }')"
  done
  median_mib="$(awk '{ print $1 / 1048576 }' "$work/per-tenant" | median)"
  max_mib="$(awk '{ print $1 / 1048576 }' "$work/per-tenant" | sort -n | tail -1 | xargs printf '%.0f')"
  median_mcores="$(awk '{ print $2 / 1e6 }' "$work/per-tenant" | median)"
  echo "| $n | $all_ready | $median_mib | $max_mib | $median_mcores | $answering of $n | $slowest |"
  for name in "${names[@]}"; do
    "$vnest" delete "$name" -n "$namespace" --wait >/dev/null 2>&1 &
  done
  wait
  [ "$answering" -eq "$n" ] || break
done

echo
echo "| component (every tenant of every step) | MiB, median | max |"
echo "|---|---|---|"
for component in apiserver controller-manager etcd syncer workloads; do
  awk -v c="$component" '$1 == c { print $2 / 1048576 }' "$work/components" >"$work/one"
  [ -s "$work/one" ] || continue
  echo "| $component | $(median <"$work/one") | $(sort -n "$work/one" | tail -1 | xargs printf '%.0f') |"
done

# The supervisor's memory per VirtualCluster, paused ones included.
supervisor_bytes() {
  local pod
  pod="$("$kubectl" get pods -n vnest-system -l app.kubernetes.io/name=vnest-supervisor -o jsonpath='{.items[0].metadata.name}')"
  pod_usage | awk -v p="$pod" '$1 == "vnest-system" && $2 == p { print $3 }'
}
before="$(supervisor_bytes)"
for i in $(seq 1 "$paused"); do
  printf 'apiVersion: vnest.dev/v1alpha1\nkind: VirtualCluster\nmetadata:\n  name: p-%s\n  namespace: %s\nspec:\n  paused: true\n  nodePool:\n    nodeSelector:\n      %s: "%s"\n---\n' \
    "$i" "$namespace" "${pool%%=*}" "${pool#*=}"
done >"$work/paused.yaml"
start="$(now)"
"$kubectl" apply -f "$work/paused.yaml" >/dev/null
until [ "$("$kubectl" get vc -n "$namespace" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Paused$')" -ge "$paused" ]; do
  sleep 2
done
all_paused="$(since "$start")"
sleep "$settle"
after="$(supervisor_bytes)"
echo
echo "| supervisor | MiB |"
echo "|---|---|"
echo "| working set before | $(awk -v b="$before" 'BEGIN { printf "%.0f", b / 1048576 }') |"
echo "| with $paused paused VirtualClusters (all Paused after ${all_paused} s) | $(awk -v b="$after" 'BEGIN { printf "%.0f", b / 1048576 }') |"
echo "| per VirtualCluster | $(awk -v a="$after" -v b="$before" -v n="$paused" 'BEGIN { printf "%.2f", (a - b) / n / 1048576 }') |"
"$kubectl" delete -f "$work/paused.yaml" --wait=true >/dev/null
