#!/usr/bin/env bash
# The upstream Kubernetes conformance suite against a tenant cluster, as
# users run sonobuoy or hydrophone against a real one.
#
#   tools/conformance.sh build
#       Builds e2e.test, ginkgo and agnhost from the pinned Kubernetes
#       release (tools/upstream/conformance/go.mod, the same release as the
#       components), e2e.test with the version ldflags the suite's fixtures
#       need, into a cache directory keyed by the pins; prints that
#       directory. About ten minutes the first time on two cores, nothing
#       after.
#   tools/conformance.sh run (--kubeconfig FILE |
#                             --name NAME --pool KEY=VALUE [--namespace NS] [--permissive])
#                            [--out DIR] [--focus RE] [--skip RE] [--procs N]
#                            [--serial | --serial-only] [--dev-host DIR]
#       Runs the [Conformance] tests against a tenant cluster: the one FILE
#       reaches, or a new VirtualCluster NAME on the nodes labelled
#       KEY=VALUE (made with `vnest create` on the host $KUBECONFIG reaches,
#       in NS, default "tenants"; kept afterwards). A new cluster has Pod
#       Security baseline and the default quota; --permissive allows what
#       the suite needs beyond that (Pod Security privileged: host network,
#       host ports, privileged containers; 50 NodePorts; 300 Services, as
#       the suite holds over 100 at once; a scheduler of the tenant's own,
#       for the preemption specs), as an admin would on a pool of the
#       tenant's own (docs/conformance.md). Non-Serial tests run with N ginkgo
#       processes (default 4), skipping [Serial], [Disruptive], [Slow] and
#       [Flaky] unless --skip says otherwise; with --serial the [Serial]
#       conformance tests run afterwards, one at a time (--serial-only:
#       those alone). Writes
#       DIR/junit_01.xml (and junit_02.xml), DIR/e2e.log and DIR/summary.txt
#       (passed and failed, per SIG, the failures by name).
#       --dev-host DIR: the host is vnest's development host running in DIR
#       (/var/lib/vnest-devhost for tools/try.sh), whose nodes have no
#       registry: stand-ins for the images the suite runs (agnhost built
#       here with Debian's curl, netcat and dig, installed if missing;
#       busybox, httpd, nginx, pause; `vnest-devhost e2e-images`) are
#       imported into its nodes first, and served from a registry the nodes
#       pull registry.k8s.io through (for tests that pull with
#       imagePullPolicy: Always; tools/upstream/registry). Tests needing
#       other images fail to pull. vnest-devhost is found as $VNEST_DEVHOST, on the PATH or in
#       target/ (cargo build -p vnest-devhost).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/upstream/conformance"

build() {
  command -v go >/dev/null || { echo "conformance.sh: go is not installed" >&2; exit 1; }
  local k8s_version minor hash out ldflags pkg tmp
  k8s_version="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$module/go.mod")"
  [ -n "$k8s_version" ] || { echo "conformance.sh: cannot read the Kubernetes pin" >&2; exit 1; }
  # Keyed by what the binaries are built from: the pins and this function
  # (not the rest of the script, whose edits change nothing built).
  hash="$( { cat "$module/go.mod" "$module/go.sum"; declare -f build; } | sha256sum | cut -c1-12)"
  out="${VNEST_CACHE_DIR:-$HOME/.cache/vnest}/conformance/k8s-${k8s_version}_${hash}"
  mkdir -p "$out"
  minor="${k8s_version#v1.}"; minor="${minor%%.*}"
  # Without the release's version the suite's version-skew fixtures fail.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
  if [ ! -x "$out/e2e.test" ]; then
    echo "conformance.sh: building e2e.test ($k8s_version)" >&2
    tmp="$(mktemp "$out/.e2e.test.XXXXXX")"
    (cd "$module" && go test -c -ldflags "$ldflags" -o "$tmp" k8s.io/kubernetes/test/e2e) >&2 \
      || { rm -f "$tmp"; echo "conformance.sh: building e2e.test failed" >&2; exit 1; }
    mv -f "$tmp" "$out/e2e.test"
  fi
  if [ ! -x "$out/agnhost" ]; then
    echo "conformance.sh: building agnhost" >&2
    tmp="$(mktemp "$out/.agnhost.XXXXXX")"
    (cd "$module" && go build -ldflags "-s -w" -o "$tmp" k8s.io/kubernetes/test/images/agnhost) >&2 \
      || { rm -f "$tmp"; echo "conformance.sh: building agnhost failed" >&2; exit 1; }
    chmod 0755 "$tmp"
    mv -f "$tmp" "$out/agnhost"
  fi
  if [ ! -x "$out/ginkgo" ]; then
    echo "conformance.sh: building ginkgo" >&2
    tmp="$(mktemp "$out/.ginkgo.XXXXXX")"
    (cd "$module" && go build -o "$tmp" github.com/onsi/ginkgo/v2/ginkgo) >&2 \
      || { rm -f "$tmp"; echo "conformance.sh: building ginkgo failed" >&2; exit 1; }
    chmod 0755 "$tmp"
    mv -f "$tmp" "$out/ginkgo"
  fi
  echo "$out"
}

# crane of tools/upstream/registry (it serves a registry too), cached like
# the suite's binaries; prints its directory.
build_registry() {
  local tools="$here/upstream/registry" hash out
  hash="$( { cat "$tools/go.mod" "$tools/go.sum"; declare -f build_registry; } | sha256sum | cut -c1-12)"
  out="${VNEST_CACHE_DIR:-$HOME/.cache/vnest}/conformance/registry_${hash}"
  if [ ! -x "$out/crane" ]; then
    echo "conformance.sh: building crane (a registry, and pushing to it)" >&2
    mkdir -p "$out"
    (cd "$tools" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath" \
      go build -ldflags "-s -w" -o "$out/" github.com/google/go-containerregistry/cmd/crane) >&2 \
      || { echo "conformance.sh: building the registry failed" >&2; exit 1; }
  fi
  echo "$out"
}

# A registry the dev host's nodes pull registry.k8s.io through, holding the
# stand-ins: tests that pull with `imagePullPolicy: Always` get them there.
# It listens on the host bridge's address, where the nodes reach this
# machine ($VNEST_E2E_REGISTRY, default 172.30.0.1:5000), in memory, for as
# long as the run lasts.
serve_registry() {
  local dir="$1" devhost="$2" log="$3"; shift 3
  local tools address="${VNEST_E2E_REGISTRY:-172.30.0.1:5000}" archive layout reference
  tools="$(build_registry)"
  "$tools/crane" registry serve --address "$address" >"$log" 2>&1 &
  registry_pid=$!
  trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    curl -fsS "http://$address/v2/" >/dev/null 2>&1 && break
    kill -0 "$registry_pid" 2>/dev/null || { echo "conformance.sh: the registry did not start on $address (taken?); see $log" >&2; exit 1; }
    sleep 0.2
  done
  echo "conformance.sh: pushing $# stand-ins to the registry at $address" >&2
  for archive in "$@"; do
    reference="$(tar -xOf "$archive" index.json | python3 -c \
      'import json, sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])')"
    layout="$(mktemp -d)"
    tar -xf "$archive" -C "$layout"
    "$tools/crane" push --insecure "$layout" "$address/${reference#registry.k8s.io/}" >/dev/null 2>>"$log" \
      || { rm -rf "$layout"; echo "conformance.sh: pushing $reference failed; see $log" >&2; exit 1; }
    rm -rf "$layout"
  done
  "$devhost" mirror --dir "$dir" --mirror "http://$address" registry.k8s.io >&2
}

run() {
  local kubeconfig="" name="" namespace="tenants" out="conformance-results" focus='\[Conformance\]'
  local skip='\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]' procs=4 serial=false dev_host="" bin
  local pool="" permissive=false
  while [ $# -gt 0 ]; do
    case "$1" in
      --kubeconfig) kubeconfig="$2"; shift 2 ;;
      --name) name="$2"; shift 2 ;;
      --namespace) namespace="$2"; shift 2 ;;
      --pool) pool="$2"; shift 2 ;;
      --permissive) permissive=true; shift ;;
      --out) out="$2"; shift 2 ;;
      --focus) focus="$2"; shift 2 ;;
      --skip) skip="$2"; shift 2 ;;
      --procs) procs="$2"; shift 2 ;;
      --serial) serial=true; shift ;;
      --serial-only) serial=only; shift ;;
      --dev-host) dev_host="$2"; shift 2 ;;
      *) echo "conformance.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
  done
  if [ -n "$kubeconfig" ] && [ -n "$name" ]; then
    echo "conformance.sh: give --kubeconfig (an existing tenant) or --name (a new one), not both" >&2; exit 2
  fi
  [ -n "$kubeconfig" ] || [ -n "$name" ] || {
    echo "conformance.sh: run needs --kubeconfig FILE (a tenant's kubeconfig) or --name NAME (a VirtualCluster to create)" >&2; exit 2; }
  [ -z "$kubeconfig" ] || [ -r "$kubeconfig" ] || { echo "conformance.sh: cannot read $kubeconfig" >&2; exit 2; }
  bin="$(build)"
  mkdir -p "$out"
  out="$(realpath "$out")"
  if [ -n "$dev_host" ]; then
    import_images "$bin" "$dev_host" "$out/images"
  fi
  if [ -n "$name" ]; then
    local vnest="${VNEST:-$(command -v vnest || true)}"
    [ -x "$vnest" ] || vnest="$(dirname "$here")/target/debug/vnest"
    [ -x "$vnest" ] || { echo "conformance.sh: --name needs the vnest CLI (set VNEST, put it on the PATH, or cargo build -p vnest-cli)" >&2; exit 2; }
    [ -n "$pool" ] || { echo "conformance.sh: --name needs --pool KEY=VALUE, the label of the nodes the tenant's pods run on" >&2; exit 2; }
    kubeconfig="$out/$name.kubeconfig"
    local manifest="$out/$name.yaml" level=baseline quota="{}" scheduler=Host
    if "$permissive"; then
      level=privileged quota='{ services: "300", services.nodeports: "50" }' scheduler=Tenant
    fi
    cat > "$manifest" <<MANIFEST
apiVersion: vnest.dev/v1alpha1
kind: VirtualCluster
metadata: { name: $name, namespace: $namespace }
spec:
  controlPlane: { expose: { type: NodePort } }
  nodePool: { mode: Dedicated, scheduler: $scheduler }
  isolation:
    podSecurity: $level
    resourceQuota: $quota
MANIFEST
    echo "conformance.sh: creating VirtualCluster $namespace/$name (Pod Security $level, scheduler $scheduler; $manifest)" >&2
    "$vnest" create -f "$manifest" --pool "$pool" --wait --kubeconfig-out "$kubeconfig" >&2
  fi
  local status=0
  [ "$serial" = only ] || "$bin/ginkgo" --procs="$procs" --timeout=6h --output-dir="$out" --junit-report=junit_01.xml \
    --focus="$focus" --skip="$skip" "$bin/e2e.test" -- \
    --kubeconfig="$(realpath "$kubeconfig")" --provider=skeleton \
    --report-dir="$out" --disable-log-dump 2>&1 | tee "$out/e2e.log" || status=$?
  if [ "$serial" != false ]; then
    "$bin/ginkgo" --procs=1 --timeout=6h --output-dir="$out" --junit-report=junit_02.xml \
      --focus='\[Serial\].*\[Conformance\]|\[Conformance\].*\[Serial\]' \
      --skip='\[Disruptive\]|\[Flaky\]' "$bin/e2e.test" -- \
      --kubeconfig="$(realpath "$kubeconfig")" --provider=skeleton \
      --report-dir="$out/serial" --disable-log-dump 2>&1 | tee "$out/e2e-serial.log" || status=$?
  fi
  summarize "$out"/junit_0*.xml > "$out/summary.txt" || true
  cat "$out/summary.txt"
  return "$status"
}

# Stand-ins for the suite's images, imported into every node of the dev
# host running in $2 (archives kept in $3).
import_images() {
  local bin="$1" dir="$2" archives="$3" devhost
  devhost="${VNEST_DEVHOST:-$(command -v vnest-devhost || true)}"
  [ -x "$devhost" ] || devhost="$(dirname "$here")/target/debug/vnest-devhost"
  [ -x "$devhost" ] || { echo "conformance.sh: --dev-host needs vnest-devhost (set VNEST_DEVHOST, put it on the PATH, or cargo build -p vnest-devhost)" >&2; exit 2; }
  "$here/host/install-prerequisites.sh" --conformance
  # The etcd stand-in carries the pinned etcd.
  VNEST_UPSTREAM_BIN_DIR="${VNEST_UPSTREAM_BIN_DIR:-$("$here/upstream/build.sh")}"
  export VNEST_UPSTREAM_BIN_DIR
  local -a images files
  mapfile -t images < <("$bin/e2e.test" --list-images 2>/dev/null | grep -v '^$')
  [ "${#images[@]}" -gt 0 ] || { echo "conformance.sh: e2e.test --list-images printed nothing" >&2; exit 1; }
  echo "conformance.sh: assembling stand-ins for ${#images[@]} e2e images" >&2
  local source
  source="$(cd "$module" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost"
  # nonewprivs' nnp and the aggregator test's sample API server, from the
  # module: seconds to build once its packages are compiled, so not part of
  # the cached build.
  mkdir -p "$archives"
  local program
  for program in nnp:k8s.io/kubernetes/test/images/nonewprivs sample-apiserver:k8s.io/sample-apiserver; do
    if [ ! -x "$archives/${program%%:*}" ]; then
      (cd "$module" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath" \
        go build -ldflags "-s -w" -o "$archives/${program%%:*}" "${program#*:}") >&2
    fi
  done
  mapfile -t files < <("$devhost" e2e-images --out "$archives" --agnhost "$bin/agnhost" \
    --agnhost-source "$source" --nonewprivs "$archives/nnp" \
    --sample-apiserver "$archives/sample-apiserver" "${images[@]}")
  echo "conformance.sh: importing ${#files[@]} images into the nodes of the host in $dir" >&2
  "$devhost" import --dir "$dir" "${files[@]}"
  serve_registry "$dir" "$devhost" "$archives/registry.log" "${files[@]}"
}

# Passed and failed counts and the failed tests' names, from JUnit reports.
summarize() {
  [ -r "$1" ] || { echo "no JUnit report at $1"; return 1; }
  python3 - "$@" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = [c for report in sys.argv[1:] for c in ET.parse(report).getroot().iter("testcase")]
passed, failed, skipped = [], [], 0
for case in cases:
    name = case.get("name", "")
    # Specs only: the suite's setup and report nodes are testcases too.
    if not name.startswith("[It]"):
        continue
    if case.find("skipped") is not None:
        skipped += 1
    elif case.find("failure") is not None or case.find("error") is not None:
        failed.append(name)
    else:
        passed.append(name)
print(f"passed {len(passed)}, failed {len(failed)}, skipped {skipped}")
import re
sigs = {}
for name, bucket in [(n, 0) for n in passed] + [(n, 1) for n in failed]:
    sig = (re.search(r"\[sig-([a-z-]+)\]", name) or [None, "other"])[1]
    sigs.setdefault(sig, [0, 0])[bucket] += 1
print()
print(f"{'SIG':<22}{'passed':>8}{'failed':>8}")
for sig, (ok, bad) in sorted(sigs.items()):
    print(f"{sig:<22}{ok:>8}{bad:>8}")
print()
for name in sorted(failed):
    print(f"FAILED {name}")
PY
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 2 ;;
esac
