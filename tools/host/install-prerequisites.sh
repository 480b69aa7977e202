#!/usr/bin/env bash
# Installs the Debian packages the development host cluster (vnest-devhost)
# runs on: runc (containerd itself is built from its pinned Go module by
# tools/upstream/build.sh), the CNI plugins, iptables and conntrack for
# kube-proxy, ipset for kube-router's NetworkPolicy firewall, busybox-static
# for the test images, iproute2 and util-linux for network namespaces, and
# the tools the e2e suite's agnhost stand-in carries (curl, OpenBSD netcat,
# dig; tools/conformance.sh --dev-host), which vnest-devhost's image tests
# read too. --conformance is still accepted and adds nothing more.
# Installs only what is missing; needs root to install.
set -euo pipefail
packages=(runc containernetworking-plugins iptables ipset conntrack busybox-static iproute2 util-linux
  curl netcat-openbsd bind9-dnsutils)
case "${1:-}" in
  "" | --conformance) ;;
  *) echo "install-prerequisites.sh: unknown argument $1 (--conformance or nothing)" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-prerequisites.sh: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-prerequisites.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
