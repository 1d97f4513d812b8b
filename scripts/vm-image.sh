#!/usr/bin/env bash
# scripts/vm-image.sh - build what a test VM boots: the guest module against
# the installed Debian kernel's headers, and an initramfs with busybox, the
# module and circnet-vm. Prints the paths as shell assignments:
#   KERNEL=... INITRD=... KVER=...
#
# usage: scripts/vm-image.sh [--build DIR] [--out DIR]
#   --build DIR  the meson build holding guest/circnet-vm (default: build)
#   --out DIR    where the image goes (default: DIR/vm)
#
# The image's /init mounts /proc, /sys and /dev, loads the module (with the
# circnet.NAME=VALUE parameters of the kernel command line), then runs
# /test.sh if the image has one (a test appends its own cpio with it: the
# kernel unpacks concatenated archives in order), else a shell on the console.
# Needs linux-image-amd64, linux-headers-amd64 and busybox-static
# (scripts/deps.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
out=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "vm-image: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
out=${out:-$build/vm}
fail() { echo "vm-image: $*" >&2; exit 1; }

# the newest kernel that has both an image and headers
kver=
for d in /lib/modules/*/build; do
	[ -e "$d/Makefile" ] || continue
	v=$(basename "$(dirname "$d")")
	[ -r "/boot/vmlinuz-$v" ] && kver=$v
done
[ -n "$kver" ] || fail "no kernel with headers (install linux-image-amd64 linux-headers-amd64)"
busybox=$(command -v busybox) || fail "no busybox (install busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
	ldd "$busybox" 2>&1 | grep -q 'not a dynamic' || fail "$busybox is not static (install busybox-static)"
[ -x "$build/guest/circnet-vm" ] || fail "no $build/guest/circnet-vm (build first; sanitizer builds have none)"

mkdir -p "$out"
# the module, built off the source tree
rm -rf "$out/kmod"
mkdir -p "$out/kmod"
cp -r "$root/guest-kmod/"*.c "$root/guest-kmod/"*.h "$root/guest-kmod/Kbuild" \
	"$root/guest-kmod/compat" "$out/kmod/"
# shared/: the host's ring code and protocol checks, the same files (guest-kmod/Kbuild)
mkdir -p "$out/kmod/shared"
cp "$root"/circuit/{ring,stream,dgram,circuit,zerocopy}.c "$root/circuit/internal.h" \
	"$root/operator/proto.c" "$out/kmod/shared/"
make -s -C "/lib/modules/$kver/build" M="$out/kmod" CIRCNET_INCLUDE="$root/include" modules \
	>"$out/kmod/build.log" 2>&1 || { cat "$out/kmod/build.log" >&2; fail "the module did not build"; }

# the root file system
rootfs=$out/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$rootfs/bin/busybox"
cp "$build/guest/circnet-vm" "$rootfs/bin/circnet-vm"
# the socket-API test body, when built (test/vm.sh runs it in the VM)
[ -x "$build/test/sockcheck-static" ] && cp "$build/test/sockcheck-static" "$rootfs/bin/sockcheck"
# unmodified Debian programs, with their shared libraries, where installed
for prog in iperf3 curl; do
	p=$(command -v "$prog") || continue
	cp "$p" "$rootfs/bin/$prog"
	for lib in $(ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		mkdir -p "$rootfs$(dirname "$lib")"
		cp -L "$lib" "$rootfs$lib"
	done
done
cp "$out/kmod/circnet.ko" "$rootfs/lib/modules/"
# virtio-net, for the packet-switched baseline of scripts/bench-vms.py (not loaded at boot:
# a circnet VM has no NIC); /bin/virtio-net-up ADDR/LEN loads it and brings eth0 up
mkdir -p "$rootfs/lib/modules/virtio"
n=0
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
	drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover \
	drivers/net/net_failover drivers/net/virtio_net; do
	f=/lib/modules/$kver/kernel/$m.ko
	[ -r "$f" ] || continue
	n=$((n + 1))
	cp "$f" "$rootfs/lib/modules/virtio/$n-$(basename "$f")"
done
cat >"$rootfs/bin/virtio-net-up" <<'UP'
#!/bin/busybox sh
# virtio-net-up ADDR/LEN: the baseline NIC of scripts/bench-vms.py
for m in /lib/modules/virtio/*.ko; do insmod "$m" 2>/dev/null; done
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
ip addr add "$1" dev eth0 && ip link set eth0 up
UP
chmod +x "$rootfs/bin/virtio-net-up"
cat >"$rootfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "circnet-vm-image: up, kernel $(uname -r)"
# circnet.NAME=VALUE on the kernel command line: the module's parameters
# (circnet.sockets=0: the devices are user space's, no kernel sockets)
args=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^circnet\.//p' | tr '\n' ' ')
if ! insmod /lib/modules/circnet.ko $args; then
	echo "circnet-vm-image: insmod failed"
fi
if [ -x /test.sh ]; then
	/test.sh
	echo "circnet-vm-image: test.sh exit $?"
	poweroff -f
fi
exec sh
INIT
chmod +x "$rootfs/init"
(cd "$rootfs" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out/initramfs.cpio.gz"
echo "KERNEL=/boot/vmlinuz-$kver"
echo "INITRD=$out/initramfs.cpio.gz"
echo "KVER=$kver"
