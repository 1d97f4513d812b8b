#!/usr/bin/env bash
# scripts/dpdk-setup.sh - prepare a host for circnet-dataplane --backend dpdk:
# reserve hugepages, load the userspace-I/O driver, bind NIC ports to it
# (dpdk-devbind.py). Idempotent: a step already done is said and skipped.
# It checks the prerequisites first (IOMMU for vfio-pci, the driver module,
# the port), prints what it did, and how to undo it; --undo does so.
#
#   scripts/dpdk-setup.sh --hugepages 1024 --bind 0000:3b:00.0 [--driver vfio-pci]
#   scripts/dpdk-setup.sh --check  --bind 0000:3b:00.0      # say what is missing, change nothing
#   scripts/dpdk-setup.sh --dry-run --hugepages 1024 --bind 0000:3b:00.0
#   scripts/dpdk-setup.sh --undo                            # rebind, release hugepages
#
# State (what was bound from which driver, the hugepages before) is kept in
# $CIRCNET_RUN_DIR/dpdk-setup.state (default /run/circnet), so --undo
# restores exactly that. Needs root. Exit: 0 done, 1 a step failed,
# 2 bad arguments, 3 (--check) something is missing.
set -uo pipefail

hugepages=
pages_kb=2048
driver=vfio-pci
ports=()
mode=apply
state_dir=${CIRCNET_RUN_DIR:-/run/circnet}
state=$state_dir/dpdk-setup.state

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}
die() { echo "dpdk-setup: $*" >&2; exit 2; }
say() { echo "dpdk-setup: $*"; }

while [ $# -gt 0 ]; do
	case $1 in
	--hugepages) [ $# -ge 2 ] || die "--hugepages needs a count"; hugepages=$2; shift 2 ;;
	--hugepage-size) [ $# -ge 2 ] || die "--hugepage-size needs 2M or 1G"; case $2 in
		2M) pages_kb=2048 ;; 1G) pages_kb=1048576 ;; *) die "--hugepage-size $2: 2M or 1G" ;; esac
		shift 2 ;;
	--bind) [ $# -ge 2 ] || die "--bind needs a PCI address"; ports+=("$2"); shift 2 ;;
	--driver) [ $# -ge 2 ] || die "--driver needs a name"; driver=$2; shift 2 ;;
	--check) mode=check; shift ;;
	--dry-run) mode=dry; shift ;;
	--undo) mode=undo; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (--help)" ;;
	esac
done
if [ -n "$hugepages" ] && ! [[ $hugepages =~ ^[0-9]+$ && $hugepages -le 1048576 ]]; then
	die "--hugepages $hugepages: not a count from 0 to 1048576"
fi
case $driver in vfio-pci | uio_pci_generic | igb_uio) ;; *) die "--driver $driver: vfio-pci, uio_pci_generic or igb_uio" ;; esac
for p in "${ports[@]}"; do
	[[ $p =~ ^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
		die "--bind $p: not a PCI address (0000:3b:00.0)"
done
if [ "$mode" = apply ] && [ -z "$hugepages" ] && [ ${#ports[@]} -eq 0 ]; then
	die "nothing to do: give --hugepages and/or --bind (or --check, --undo; --help)"
fi
[ "$mode" = dry ] || [ "$(id -u)" = 0 ] || die "needs root (or --dry-run)"

devbind=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
hp_sys=/sys/kernel/mm/hugepages/hugepages-${pages_kb}kB/nr_hugepages
full() { [[ $1 == *:*:*.* ]] && echo "$1" || echo "0000:$1"; }
current_driver() { # current_driver PCI: the bound driver, or none
	local link=/sys/bus/pci/devices/$(full "$1")/driver
	[ -L "$link" ] && basename "$(readlink "$link")" || echo none
}

# ---- prerequisites ----
missing=0
need() { # need WHAT CONDITION...: report a prerequisite
	if "${@:2}"; then say "ok       $1"; else say "missing  $1"; missing=$((missing + 1)); fi
}
check_prereqs() {
	need "dpdk-devbind.py (Debian package dpdk)" test -n "$devbind"
	if [ -n "$hugepages" ] || [ "$mode" = check ]; then
		need "hugepages of ${pages_kb} kB supported by the kernel" test -e "$hp_sys"
		need "hugetlbfs mounted (or mountable) at /dev/hugepages" \
			bash -c "grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts || [ -d /dev/hugepages ] || [ -w /dev ]"
	fi
	if [ ${#ports[@]} -gt 0 ]; then
		if [ "$driver" = vfio-pci ]; then
			need "an IOMMU (intel_iommu=on or amd_iommu=on; iommu=pt for speed)" \
				bash -c '[ -n "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ] ||
					[ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode 2>/dev/null)" = Y ]'
		fi
		need "the $driver module (loaded or loadable)" \
			bash -c "[ -d /sys/bus/pci/drivers/$driver ] || modprobe -n $driver 2>/dev/null"
		for p in "${ports[@]}"; do
			need "PCI device $(full "$p") present" test -d "/sys/bus/pci/devices/$(full "$p")"
		done
	fi
}

run() { # run COMMAND...: do it (or show it in --dry-run)
	if [ "$mode" = dry ]; then
		echo "    would run: $*"
		return 0
	fi
	"$@"
}

# ---- undo ----
if [ "$mode" = undo ]; then
	[ -f "$state" ] || { say "nothing to undo ($state is absent)"; exit 0; }
	rc=0
	while read -r kind a b; do
		case $kind in
		bound)
			if [ "$b" = none ]; then
				say "unbinding $a (it had no driver before)"
				"$devbind" -u "$a" || rc=1
			else
				say "rebinding $a to $b"
				"$devbind" -b "$b" "$a" || rc=1
			fi ;;
		mounted)
			say "unmounting $a"
			umount "$a" || rc=1 ;;
		hugepages)
			say "hugepages of $b kB back to $a"
			echo "$a" >"/sys/kernel/mm/hugepages/hugepages-${b}kB/nr_hugepages" || rc=1 ;;
		esac
	done < <(tac "$state")
	[ $rc = 0 ] && rm -f "$state"
	exit $rc
fi

check_prereqs
if [ "$mode" = check ]; then
	[ $missing = 0 ] && say "all prerequisites met" && exit 0
	say "$missing prerequisite(s) missing"
	exit 3
fi
if [ $missing -gt 0 ]; then
	if [ "$mode" != dry ]; then
		say "$missing prerequisite(s) missing: nothing changed"
		exit 1
	fi
	say "$missing prerequisite(s) missing: a real run would stop here; the plan:"
fi
[ "$mode" = dry ] || mkdir -p "$state_dir"
did=()

# ---- hugepages ----
if [ -n "$hugepages" ] && [ -e "$hp_sys" ]; then
	have=$(cat "$hp_sys")
	if [ "$have" -ge "$hugepages" ]; then
		say "hugepages: $have of ${pages_kb} kB reserved already (>= $hugepages): kept"
	else
		run sh -c "echo $hugepages >$hp_sys"
		got=$([ "$mode" = dry ] && echo "$hugepages" || cat "$hp_sys")
		[ "$mode" = dry ] || echo "hugepages $have $pages_kb" >>"$state"
		did+=("hugepages of ${pages_kb} kB: $have -> $got")
		[ "$got" -ge "$hugepages" ] || say "warning: only $got hugepages could be reserved (memory fragmented: reserve at boot with hugepages=$hugepages)"
	fi
	if ! grep -q " /dev/hugepages hugetlbfs " /proc/mounts; then
		run mkdir -p /dev/hugepages
		run mount -t hugetlbfs nodev /dev/hugepages || { say "mounting hugetlbfs failed"; exit 1; }
		[ "$mode" = dry ] || echo "mounted /dev/hugepages" >>"$state"
		did+=("mounted hugetlbfs at /dev/hugepages")
	fi
fi

# ---- the driver and the ports ----
if [ ${#ports[@]} -gt 0 ]; then
	if [ ! -d "/sys/bus/pci/drivers/$driver" ]; then
		run modprobe "$driver" || { say "modprobe $driver failed"; exit 1; }
		did+=("loaded module $driver")
	fi
	for p in "${ports[@]}"; do
		was=$(current_driver "$p")
		if [ "$was" = "$driver" ]; then
			say "$(full "$p"): bound to $driver already: kept"
			continue
		fi
		iface=$(ls "/sys/bus/pci/devices/$(full "$p")/net" 2>/dev/null | head -1)
		if [ -n "$iface" ] && ip -br link show "$iface" 2>/dev/null | grep -q " UP "; then
			say "$(full "$p") is $iface, which is up: bring it down first (ip link set $iface down); refusing to take a live interface"
			exit 1
		fi
		run "$devbind" -b "$driver" "$(full "$p")" || { say "binding $(full "$p") failed"; exit 1; }
		[ "$mode" = dry ] || echo "bound $(full "$p") $was" >>"$state"
		did+=("$(full "$p"): $was -> $driver")
	done
fi

if [ ${#did[@]} -eq 0 ]; then
	say "nothing changed: everything was in place"
	exit 0
fi
say "done$([ "$mode" = dry ] && echo " (dry run: nothing changed)"):"
for d in "${did[@]}"; do echo "    $d"; done
[ "$mode" = dry ] || say "undo with: $0 --undo   (state in $state)"
exit 0
