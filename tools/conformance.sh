#!/usr/bin/env bash
# The upstream Kubernetes conformance suite against a tenant cluster, as
# users run sonobuoy or hydrophone against a real one.
#
#   tools/conformance.sh build
#       Builds e2e.test and ginkgo from the pinned Kubernetes release
#       (tools/upstream/conformance/go.mod, the same release as the
#       components) with the version ldflags the suite's fixtures need, into
#       a cache directory keyed by the pins; prints that directory. About
#       ten minutes the first time on two cores, nothing after.
#   tools/conformance.sh run --kubeconfig FILE [--out DIR] [--focus RE]
#                            [--skip RE] [--procs N]
#       Runs the [Conformance] tests against the cluster FILE reaches
#       (a tenant's kubeconfig): non-Serial ones with N ginkgo processes
#       (default 4), skipping [Serial], [Disruptive], [Slow] and [Flaky]
#       unless --skip says otherwise; writes DIR/junit_01.xml and
#       DIR/summary.txt (passed, failed, the failures by name).
#
# Not done yet (issue 14): assembling the suite's images (agnhost, busybox,
# nginx, httpd, pause) without a registry and importing them into the dev
# host's nodes, creating the VirtualCluster itself (--name), and the Serial
# pass. Until then the cluster's nodes must be able to pull the images the
# suite names (registry.k8s.io).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/upstream/conformance"

build() {
  command -v go >/dev/null || { echo "conformance.sh: go is not installed" >&2; exit 1; }
  local k8s_version minor hash out ldflags pkg tmp
  k8s_version="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$module/go.mod")"
  [ -n "$k8s_version" ] || { echo "conformance.sh: cannot read the Kubernetes pin" >&2; exit 1; }
  hash="$(cat "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
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

run() {
  local kubeconfig="" out="conformance-results" focus='\[Conformance\]'
  local skip='\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]' procs=4 bin
  while [ $# -gt 0 ]; do
    case "$1" in
      --kubeconfig) kubeconfig="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --focus) focus="$2"; shift 2 ;;
      --skip) skip="$2"; shift 2 ;;
      --procs) procs="$2"; shift 2 ;;
      *) echo "conformance.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
  done
  [ -n "$kubeconfig" ] || { echo "conformance.sh: run needs --kubeconfig FILE (a tenant's kubeconfig)" >&2; exit 2; }
  [ -r "$kubeconfig" ] || { echo "conformance.sh: cannot read $kubeconfig" >&2; exit 2; }
  bin="$(build)"
  mkdir -p "$out"
  local status=0
  "$bin/ginkgo" --procs="$procs" --timeout=6h --output-dir="$out" --junit-report=junit_01.xml \
    --focus="$focus" --skip="$skip" "$bin/e2e.test" -- \
    --kubeconfig="$(realpath "$kubeconfig")" --provider=skeleton \
    --report-dir="$out" --disable-log-dump 2>&1 | tee "$out/e2e.log" || status=$?
  summarize "$out/junit_01.xml" > "$out/summary.txt" || true
  cat "$out/summary.txt"
  return "$status"
}

# Passed and failed counts and the failed tests' names, from a JUnit report.
summarize() {
  local junit="$1"
  [ -r "$junit" ] || { echo "no JUnit report at $junit"; return 1; }
  python3 - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
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
for name in sorted(failed):
    print(f"FAILED {name}")
PY
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
