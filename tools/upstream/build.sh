#!/usr/bin/env bash
# Builds the pinned upstream Kubernetes and etcd binaries from Go modules and
# prints the directory that holds them.
#
# The pins live in go.mod next to this script (Kubernetes, etcd) and in
# coredns/go.mod, kwok/go.mod, kube-router/go.mod, containerd/go.mod and
# etcdutl/go.mod (CoreDNS, kwok, kube-router's NetworkPolicy firewall, the
# container runtime the dev host's nodes run, and etcd's offline restore
# tool: modules of their own so that their
# dependencies never move the ones Kubernetes is built with). The output directory is keyed by
# the pinned versions and a hash of go.mod/go.sum, so changing a pin builds into
# a new directory and an unchanged pin reuses what is already there. Binaries
# that already exist are skipped; each is built into a temporary file and moved
# into place only when complete, so an interrupted build never leaves a broken
# binary behind.
#
# Caches live outside the clone: the binaries under $VNEST_CACHE_DIR (default
# ~/.cache/vnest), Go's module and build caches wherever `go env` says.
#
# The previous Kubernetes minor's kube-apiserver, kube-controller-manager and
# kube-scheduler (pinned in previous/go.mod) go into previous/ under that
# directory: tenants are upgraded from them.
#
# Usage: tools/upstream/build.sh            # build what is missing, print dir
#        tools/upstream/build.sh --print    # print the dir, build nothing
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

command -v go >/dev/null || { echo "build.sh: go is not installed; install Go >= 1.22 (go.mod then selects the pinned toolchain)" >&2; exit 1; }

k8s_version="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)"
etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)"
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "build.sh: cannot read the pins from go.mod" >&2; exit 1; }
coredns_version="$(awk '$1=="github.com/coredns/coredns" && $2 ~ /^v/ {print $2; exit}' coredns/go.mod)"
[ -n "$coredns_version" ] || { echo "build.sh: cannot read the CoreDNS pin from coredns/go.mod" >&2; exit 1; }
containerd_version="$(awk '$1=="github.com/containerd/containerd/v2" && $2 ~ /^v/ {print $2; exit}' containerd/go.mod)"
[ -n "$containerd_version" ] || { echo "build.sh: cannot read the containerd pin from containerd/go.mod" >&2; exit 1; }
pin_hash="$(cat go.mod go.sum coredns/go.mod coredns/go.sum kwok/go.mod kwok/go.sum kube-router/go.mod kube-router/go.sum \
  containerd/go.mod containerd/go.sum etcdutl/go.mod etcdutl/go.sum build.sh | sha256sum | cut -c1-12)"
cache_root="${VNEST_CACHE_DIR:-$HOME/.cache/vnest}"
out="$cache_root/upstream/k8s-${k8s_version}_etcd-${etcd_version}_${pin_hash}/bin"

if [ "${1:-}" = "--print" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"

# module-dir:name:package
targets=(
  ".:kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver"
  ".:kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager"
  ".:kube-scheduler:k8s.io/kubernetes/cmd/kube-scheduler"
  ".:kubelet:k8s.io/kubernetes/cmd/kubelet"
  ".:kube-proxy:k8s.io/kubernetes/cmd/kube-proxy"
  ".:kubectl:k8s.io/kubernetes/cmd/kubectl"
  ".:etcd:go.etcd.io/etcd/server/v3"
  ".:etcdctl:go.etcd.io/etcd/etcdctl/v3"
  "etcdutl:etcdutl:go.etcd.io/etcd/etcdutl/v3"
  "coredns:coredns:github.com/coredns/coredns"
  "kwok:kwok:sigs.k8s.io/kwok/cmd/kwok"
  "kube-router:kube-router:github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
  "containerd:containerd:github.com/containerd/containerd/v2/cmd/containerd"
  "containerd:containerd-shim-runc-v2:github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
  "containerd:ctr:github.com/containerd/containerd/v2/cmd/ctr"
)

# Kubernetes reports its version from these variables (hack/lib/version.sh sets
# the same); without them every component says v0.0.0-master and version-skew
# checks between kubelet and apiserver misfire.
kubernetes_ldflags() {
  local version="$1" minor pkg flags="-s -w"
  minor="${version#v1.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}
ldflags="$(kubernetes_ldflags "$k8s_version")"

# -mod=readonly: a go.sum that does not match fails instead of moving the pin.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath"

start=$(date +%s)
built=0
for t in "${targets[@]}"; do
  IFS=: read -r module name pkg <<<"$t"
  if [ -x "$out/$name" ]; then
    continue
  fi
  echo "build.sh: building $name ($pkg)" >&2
  tmp="$(mktemp "$out/.$name.XXXXXX")"
  flags="-s -w"
  [ "$module" = "." ] && flags="$ldflags"
  # containerd reports its version to the kubelet (CRI Version) from here.
  [ "$module" = "containerd" ] && flags+=" -X github.com/containerd/containerd/v2/version.Version=$containerd_version"
  if ! (cd "$module" && go build -ldflags "$flags" -o "$tmp" "$pkg") >&2; then
    rm -f "$tmp"
    echo "build.sh: building $name failed" >&2
    exit 1
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$out/$name"
  built=$((built + 1))
done
# kwok simulates nothing without stages; ship upstream's "fast" node and pod
# stages and the node heartbeat beside the binary, from the pinned module.
if [ ! -f "$out/kwok-stages.yaml" ]; then
  kwok_dir="$(cd kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  tmp="$(mktemp "$out/.kwok-stages.XXXXXX")"
  for stage in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$stage.yaml"
  done > "$tmp"
  mv -f "$tmp" "$out/kwok-stages.yaml"
fi

# The previous minor's control plane (previous/go.mod), which tenants are
# upgraded from: into a directory of its own keyed by its pins, named by the
# link previous/ beside the main binaries, so that changing one pin never
# rebuilds the other's binaries.
previous_version="$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' previous/go.mod)"
[ -n "$previous_version" ] || { echo "build.sh: cannot read the pin from previous/go.mod" >&2; exit 1; }
# Keyed by what they are built from: the pins and the flags.
previous_hash="$( { cat previous/go.mod previous/go.sum; declare -f kubernetes_ldflags; } | sha256sum | cut -c1-12)"
previous_dir="previous-k8s-${previous_version}_${previous_hash}"
mkdir -p "$out/$previous_dir"
previous_ldflags="$(kubernetes_ldflags "$previous_version")"
for name in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ -x "$out/$previous_dir/$name" ]; then
    continue
  fi
  echo "build.sh: building $name $previous_version (the previous minor)" >&2
  tmp="$(mktemp "$out/$previous_dir/.$name.XXXXXX")"
  if ! (cd previous && go build -ldflags "$previous_ldflags" -o "$tmp" "k8s.io/kubernetes/cmd/$name") >&2; then
    rm -f "$tmp"
    echo "build.sh: building $name $previous_version failed" >&2
    exit 1
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$out/$previous_dir/$name"
  built=$((built + 1))
done
if [ "$(readlink "$out/previous" 2>/dev/null)" != "$previous_dir" ]; then
  ln -sfn "$previous_dir" "$out/.previous.tmp"
  mv -Tf "$out/.previous.tmp" "$out/previous"
fi

if [ "$built" -gt 0 ]; then
  echo "build.sh: built $built binaries in $(( $(date +%s) - start ))s into $out" >&2
fi
echo "$out"
