#!/usr/bin/env bash
# scripts/vm-run.sh - boot a VM as a circnet guest: QEMU with an
# ivshmem-doorbell device attached to the operator's socket for the guest.
#
# usage: scripts/vm-run.sh --guest NAME [--run-dir DIR] [--kernel F] [--initrd F]
#                          [--memory MB] [--peers K] [--hotplug K] [--qmp PATH]
#                          [--append ARGS] [--print] [-- QEMU ARGS...]
#   --run-dir DIR  the operator's run-dir (default /run/circnet)
#   --kernel F     default: the newest /boot/vmlinuz-*
#   --initrd F     default: build/vm/initramfs.cpio.gz (scripts/vm-image.sh)
#   --memory MB    guest RAM (default 256)
#   --peers K      pair devices (default 2): the host peers the VM can have circuits
#                  with over its lifetime (one device each, docs/vms.md)
#   --hotplug K    K empty PCIe slots for pair devices added at run time
#                  (scripts/vm-add-peer.py: QMP chardev-add + device_add), so a
#                  running VM can get more peers than it booted with
#   --qmp PATH     a QMP socket (QEMU listens on PATH)
#   --append ARGS  more kernel command line
#   --print        print the QEMU command line instead of running it
# The VM gets no NIC at all: its network is circuits. The console is this
# terminal (serial). QEMU runs under TCG; CIRCNET_VM_ACCEL=kvm uses KVM.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
guest= run_dir=/run/circnet kernel= initrd=$root/build/vm/initramfs.cpio.gz mem=256 append= print=0 peers=2
hotplug=0 qmp=
while [ $# -gt 0 ]; do
	case $1 in
	--guest) guest=$2; shift 2 ;;
	--run-dir) run_dir=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--initrd) initrd=$2; shift 2 ;;
	--memory) mem=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--hotplug) hotplug=$2; shift 2 ;;
	--qmp) qmp=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--print) print=1; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "vm-run: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
[ -n "$guest" ] || { echo "vm-run: --guest NAME is required" >&2; exit 2; }
case $peers in
''|*[!0-9]*) echo "vm-run: --peers takes a number (0 to 8)" >&2; exit 2 ;;
esac
[ "$peers" -le 8 ] || { echo "vm-run: --peers: at most 8 pair devices" >&2; exit 2; }
case $hotplug in
''|*[!0-9]*) echo "vm-run: --hotplug takes a number (0 to 8)" >&2; exit 2 ;;
esac
[ $((peers + hotplug)) -le 8 ] || { echo "vm-run: --peers + --hotplug: at most 8 pair devices" >&2; exit 2; }
if [ -z "$kernel" ]; then
	kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
	[ -n "$kernel" ] || { echo "vm-run: no /boot/vmlinuz-* (install linux-image-amd64)" >&2; exit 1; }
fi
sock=$run_dir/guests/$guest/ivshmem.sock
[ "$print" = 1 ] || [ -S "$sock" ] || {
	echo "vm-run: no $sock: is the operator running with 'vm ivshmem' in guest $guest's block?" >&2
	exit 1
}
# TCG unless told: KVM hangs on some nested hosts (this project's CI among them)
accel=${CIRCNET_VM_ACCEL:-tcg}
case $accel in
kvm|tcg) ;;
*) echo "vm-run: CIRCNET_VM_ACCEL must be kvm or tcg" >&2; exit 2 ;;
esac
cmd=(qemu-system-x86_64 -machine q35 -accel "$accel" -m "$mem" -smp 1 -nographic -no-reboot
	-nic none -kernel "$kernel" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 quiet loglevel=4 $append"
	-chardev "socket,path=$sock,id=circnet0"
	-device "ivshmem-doorbell,chardev=circnet0,vectors=4")
# the pair devices: the same socket, after the control device (the operator counts)
for i in $(seq "$peers"); do
	cmd+=(-chardev "socket,path=$sock,id=circnet$i" -device "ivshmem-doorbell,chardev=circnet$i,vectors=32")
done
# empty PCIe root ports, for pair devices hot-plugged later (their bus: circnet-hpN)
for i in $(seq "$hotplug"); do
	# room for the device's memory BAR: firmware reserves it in the port's window
	cmd+=(-device "pcie-root-port,id=circnet-hp$i,chassis=$((10 + i)),slot=$((10 + i)),pref64-reserve=1G,io-reserve=0")
done
[ -n "$qmp" ] && cmd+=(-qmp "unix:$qmp,server=on,wait=off")
cmd+=("$@")
if [ "$print" = 1 ]; then
	printf '%q ' "${cmd[@]}"
	echo
	exit 0
fi
exec "${cmd[@]}"
