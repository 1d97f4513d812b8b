#!/usr/bin/env bash
# scripts/deps.sh - install the Debian 12 packages circnet builds and tests
# with. Idempotent: asks apt only when something is missing. Needs root.
set -euo pipefail
# curl, wget, wrk, nginx, redis, memcached (the operator-restart test), iperf3, sockperf,
# openssh, dnsmasq, iproute2 (ip, ss),
# procps (pkill) and util-linux (unshare): the guest and proxy integration tests and the demo;
# gnuplot-nox and a font: the benchmark matrix's PNG plots; libdpdk-dev, liblwip-dev
# and dpdk (dpdk-devbind.py): the DPDK proxy backend, with dpkg-dev and patch to unpack lwIP's
# Debian source and apply our patches to it (scripts/lwip-source.sh); iputils-ping: its ARP/ICMP test;
# qemu-system-x86, linux-image-amd64, linux-headers-amd64 (with make: Kbuild), busybox-static
# and cpio: VM guests (scripts/vm-image.sh builds the guest module and the test VMs' image)
pkgs=(meson ninja-build gcc clang pkg-config libcmocka-dev libclang-rt-14-dev python3 curl wget nginx
	redis-server redis-tools memcached iperf3 wrk sockperf openssh-server openssh-client dnsmasq-base iproute2 procps util-linux
	gnuplot-nox fonts-dejavu-core libdpdk-dev liblwip-dev dpdk dpkg-dev patch iputils-ping
	qemu-system-x86 linux-image-amd64 linux-headers-amd64 make busybox-static cpio)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
lwip_source() { # the lwIP source the DPDK dataplane builds (its own options)
	"$(dirname "$0")/lwip-source.sh" || echo "deps: no lwIP source: the DPDK dataplane uses the packaged liblwip" >&2
}
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all present (${pkgs[*]})"
	lwip_source
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${missing[*]}; run as root or install them: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
lwip_source
echo "deps: done"
