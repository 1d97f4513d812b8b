#!/usr/bin/env bash
# scripts/vm-run.sh - boot a VM as a circnet guest: QEMU with an
# ivshmem-doorbell device attached to the operator's socket for the guest.
#
# usage: scripts/vm-run.sh --guest NAME [--run-dir DIR] [--kernel F] [--initrd F]
#                          [--memory MB] [--append ARGS] [--print] [-- QEMU ARGS...]
#   --run-dir DIR  the operator's run-dir (default /run/circnet)
#   --kernel F     default: the newest /boot/vmlinuz-*
#   --initrd F     default: build/vm/initramfs.cpio.gz (scripts/vm-image.sh)
#   --memory MB    guest RAM (default 256)
#   --append ARGS  more kernel command line
#   --print        print the QEMU command line instead of running it
# The VM gets no NIC at all: its network is circuits. The console is this
# terminal (serial); QEMU runs under KVM where /dev/kvm works, else TCG.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
guest= run_dir=/run/circnet kernel= initrd=$root/build/vm/initramfs.cpio.gz mem=256 append= print=0
while [ $# -gt 0 ]; do
	case $1 in
	--guest) guest=$2; shift 2 ;;
	--run-dir) run_dir=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--initrd) initrd=$2; shift 2 ;;
	--memory) mem=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--print) print=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "vm-run: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ -n "$guest" ] || { echo "vm-run: --guest NAME is required" >&2; exit 2; }
if [ -z "$kernel" ]; then
	kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
	[ -n "$kernel" ] || { echo "vm-run: no /boot/vmlinuz-* (install linux-image-amd64)" >&2; exit 1; }
fi
sock=$run_dir/guests/$guest/ivshmem.sock
[ "$print" = 1 ] || [ -S "$sock" ] || {
	echo "vm-run: no $sock: is the operator running with 'vm ivshmem' in guest $guest's block?" >&2
	exit 1
}
accel=tcg
# KVM only where it is usable (it hangs on some nested hosts: CIRCNET_VM_ACCEL=tcg forces TCG)
if [ "${CIRCNET_VM_ACCEL:-}" = kvm ] || { [ -z "${CIRCNET_VM_ACCEL:-}" ] && [ -w /dev/kvm ] && false; }; then
	accel=kvm
fi
cmd=(qemu-system-x86_64 -machine q35 -accel "$accel" -m "$mem" -smp 1 -nographic -no-reboot
	-nic none -kernel "$kernel" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 quiet loglevel=4 $append"
	-chardev "socket,path=$sock,id=circnet0"
	-device "ivshmem-doorbell,chardev=circnet0,vectors=4"
	"$@")
if [ "$print" = 1 ]; then
	printf '%q ' "${cmd[@]}"
	echo
	exit 0
fi
exec "${cmd[@]}"
