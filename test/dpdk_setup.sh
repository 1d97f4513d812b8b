#!/usr/bin/env bash
# test/dpdk_setup.sh - scripts/dpdk-setup.sh: bad arguments are refused with
# exit 2 and a one-line reason; --check and --dry-run change nothing; a real
# run reserves hugepages and mounts hugetlbfs, a second run changes nothing
# (idempotent), --undo restores what was there. No NIC here: binding is
# exercised in --dry-run only. Needs root (77 without).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
setup=$here/scripts/dpdk-setup.sh
[ "$(id -u)" = 0 ] || { echo "dpdk_setup.sh: needs root: skipped"; exit 77; }
export CIRCNET_RUN_DIR=$(mktemp -d /tmp/circnet-dpdk-setup.XXXXXX)
trap 'bash "$setup" --undo >/dev/null 2>&1; rm -rf "$CIRCNET_RUN_DIR"' EXIT
failed=0
check() { if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; failed=$((failed + 1)); fi; }
rc_of() { "$@" >/dev/null 2>&1; echo $?; }
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

check "no action: exit 2" [ "$(rc_of bash "$setup")" = 2 ]
# (output captured first: grep -q leaving early would kill the writer with SIGPIPE)
check "a bad PCI address: exit 2, named" \
	bash -c "out=\$(bash '$setup' --bind 3b:00 2>&1); rc=\$?; [ \$rc = 2 ] && echo \"\$out\" | grep -q '3b:00: not a PCI address'"
check "a bad hugepage count: exit 2" [ "$(rc_of bash "$setup" --hugepages lots)" = 2 ]
check "an unknown driver: exit 2" [ "$(rc_of bash "$setup" --bind 0000:3b:00.0 --driver e1000)" = 2 ]
before=$(cat "$hp" 2>/dev/null || echo none)
check "--dry-run shows the plan (hugepages, module, devbind) and changes nothing" \
	bash -c "out=\$(bash '$setup' --dry-run --hugepages 8 --bind 0000:00:1f.7); echo \"\$out\" | grep -q 'would run: .*nr_hugepages' &&
		echo \"\$out\" | grep -q 'would run: .*devbind.* -b vfio-pci 0000:00:1f.7' && [ \"\$(cat '$hp' 2>/dev/null || echo none)\" = '$before' ]"
check "--check with a missing device: exit 3, the device named" \
	bash -c "out=\$(bash '$setup' --check --bind 0000:00:1f.7); rc=\$?; [ \$rc = 3 ] && echo \"\$out\" | grep -q 'missing  PCI device 0000:00:1f.7'"
if [ -w "$hp" ] && [ "$before" = 0 ]; then
	check "a real run reserves 8 hugepages and mounts hugetlbfs" \
		bash -c "bash '$setup' --hugepages 8 >/dev/null && [ \$(cat '$hp') -ge 8 ] && grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts"
	check "a second run changes nothing (idempotent)" \
		bash -c "bash '$setup' --hugepages 8 | grep -q 'nothing changed'"
	check "--undo releases them and unmounts" \
		bash -c "bash '$setup' --undo >/dev/null && [ \$(cat '$hp') = 0 ] && ! grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts"
else
	echo "skip the real run: $hp is not writable here or already holds $before pages"
fi
[ $failed = 0 ] && echo "dpdk_setup.sh: all checks passed"
exit $((failed > 0))
