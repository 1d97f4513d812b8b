#!/usr/bin/env bash
# test/vm.sh BUILD_DIR - VMs are guests (issue 15): the operator serves
# the VMs' ivshmem-doorbell devices itself, the guest module binds them.
# Two VMs (QEMU, TCG), each booted once.
# vm1 first runs with circnet.sockets=0, user space owning the devices:
# circnet-vm over the control circuit (HELLO, 1 MiB echoed, a hostile
# scribble, circuits to a process guest, to vm2 and off-host; unload
# refused while a device is open). Then the module is loaded again with
# kernel sockets, and unmodified socket programs run over circuits: the
# same transfers through plain connect()/accept(), busybox wget against a
# Python HTTP server in a process guest, sockcheck against the kernel's
# own TCP (the outputs must agree, as in preload.sh), unload refused while
# a circuit socket is open, and the VM killed mid-transfer. vm2 serves vm1
# with kernel sockets throughout. On the host: the operator lived through
# it all, counted the violation, holds no fd more than before, and let the
# devices go when QEMU exited.
# Skips (77) only where QEMU, a kernel with headers or busybox is absent,
# and never under CIRCNET_REQUIRE_VM=1 (CI).
set -uo pipefail
build=$(cd "${1:?usage: vm.sh BUILD_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl

# CI sets CIRCNET_REQUIRE_VM=1: there a missing piece is a failure, not a skip
skip() {
	if [ -n "${CIRCNET_REQUIRE_VM:-}" ]; then
		echo "vm.sh: FAIL: $* (scripts/deps.sh installs it), and CIRCNET_REQUIRE_VM is set"
		exit 1
	fi
	echo "vm.sh: $* (scripts/deps.sh installs it): skipped"
	exit 77
}
for tool in qemu-system-x86_64 busybox cpio gzip make; do
	command -v "$tool" >/dev/null || skip "$tool missing"
done
ls /lib/modules/*/build/Makefile >/dev/null 2>&1 || skip "no kernel headers"
{ [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; } || skip "no root or network namespaces (the host peer runs in one)"

dir=$(mktemp -d /tmp/circnet-vm-test.XXXXXX)
op_pid= peer_pid= dp_pid= remote_pid= remote2_pid=
ns=cnvm-remote-$$ vh=cnvmh$$ ns2=cnvm-dpdk-$$ tap2=cnvmt$$
app_pids=
cleanup() {
	for p in $app_pids $remote_pid $remote2_pid $dp_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
	ip netns del "$ns2" 2>/dev/null
	ip link del "$vh" 2>/dev/null
	[ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
	[ -n "$op_pid" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
	echo "vm.sh: FAIL: $*"
	[ -f "$dir/console.log" ] && { echo "--- VM console"; tail -40 "$dir/console.log"; }
	[ -f "$dir/op.log" ] && { echo "--- operator"; tail -20 "$dir/op.log"; }
	[ -f "$dir/peer.log" ] && { echo "--- host peer"; tail -10 "$dir/peer.log"; }
	exit 1
}

# until a proxy stack has attached to the operator (bounded)
wait_proxy() {
	for _ in $(seq 100); do
		"$ctl" --run-dir "$dir/run" proxy --json 2>/dev/null | grep -q '"operator_sessions":[1-9]' && return
		sleep 0.1
	done
}

eval "$("$root/scripts/vm-image.sh" --build "$build" --out "$build/vm")" || fail "no VM image"

cat >"$dir/op.conf" <<CONF
run-dir $dir/run
log-level info
network 10.77.0.0/24
guest vm1 {
    address 10.77.0.21
    address fd00:77::21
    vm ivshmem
    vm-memory 4M
    listen tcp 7100,7500
}
guest vm2 {
    address 10.77.0.22
    vm ivshmem
    vm-memory 4M
    listen tcp 7200,7201
}
guest h1 {
    address 10.77.0.31
    address fd00:77::31
    listen tcp 7000,7001,7003,7004,7010
    listen udp 7010
}
allow tcp from vm1 to h1 port 7000
allow tcp from vm1 to h1 port 7003
allow tcp from vm1 to h1 port 7004
allow tcp from vm1 to h1 port 7010
allow udp from vm1 to h1 port 7010
allow tcp from h1 to vm1 port 7100
allow tcp from vm1 to vm2 port 7200
allow tcp from vm1 to vm2 port 7201
allow tcp from vm2 to h1 port 7000
proxy tcp from vm1 to 10.214.77.0/24
proxy tcp from vm1 to 10.218.77.0/24
deny any from any to any
CONF
"$op" --config "$dir/op.conf" 2>"$dir/op.log" &
op_pid=$!
for _ in $(seq 50); do [ -S "$dir/run/guests/vm1/ivshmem.sock" ] && break; sleep 0.1; done
[ -S "$dir/run/guests/vm1/ivshmem.sock" ] || fail "the operator made no ivshmem.sock"
# the VM's host peer: a process guest serving test/vm_peer.py's protocol
"$build/guest/circnet" run --guest h1 --run-dir "$dir/run" -- \
	python3 "$root/test/vm_peer.py" 7000 >"$dir/peer.log" 2>&1 &
peer_pid=$!
for _ in $(seq 100); do grep -q listening "$dir/peer.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$dir/peer.log" || fail "the host peer did not start: $(cat "$dir/peer.log")"
# off-host: a remote host in a network namespace behind a veth pair, reached
# through the kernel proxy stack (circnet-dataplane)
ip netns add "$ns" || fail "no network namespace"
ip link add "$vh" type veth peer name cnvmr$$ || fail "no veth pair"
ip link set cnvmr$$ netns "$ns"
ip addr add 10.214.77.1/24 dev "$vh"
ip link set "$vh" up
ip netns exec "$ns" ip addr add 10.214.77.2/24 dev cnvmr$$
ip netns exec "$ns" ip link set cnvmr$$ up
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" python3 "$root/test/vm_peer.py" 7300 >"$dir/remote.log" 2>&1 &
remote_pid=$!
fds_before=$(ls /proc/$op_pid/fd | wc -l)
ls -l /proc/$op_pid/fd | awk '{print $NF}' | sort >"$dir/fds-before"
"$build/dataplane/circnet-dataplane" --run-dir "$dir/run" --threads 1 --connect-timeout 3 \
	2>"$dir/dataplane.log" &
dp_pid=$!
wait_proxy
for _ in $(seq 100); do grep -q listening "$dir/remote.log" 2>/dev/null && break; sleep 0.1; done
# sockcheck over the kernel's TCP on the host's loopback: what the VM must print
port=$((7400 + RANDOM % 500))
timeout 20 "$build/test/sockcheck" server 127.0.0.1 $port 2>/dev/null &
kernel_server=$!
sleep 0.3
timeout 60 "$build/test/sockcheck" client 127.0.0.1 $port >"$dir/kernel.out" 2>"$dir/kernel.err" ||
	fail "sockcheck over the kernel's TCP: $(cat "$dir/kernel.err")"
kill $kernel_server 2>/dev/null
wait $kernel_server 2>/dev/null
# The DPDK proxy stack takes over from the kernel's halfway through (both
# backends carry the VM's circuits): its remote is another namespace, whose
# tap the dataplane drives; lwIP is 10.218.77.2 there, the remote .1.
dpdk=
if [[ " $("$build/dataplane/circnet-dataplane" --backends) " == *" dpdk "* ]]; then
	dpdk=1
	ip netns add "$ns2" || fail "no network namespace"
	ip netns exec "$ns2" ip link set lo up
	ip netns exec "$ns2" python3 "$root/test/vm_peer.py" 7300 >"$dir/remote2.log" 2>&1 &
	remote2_pid=$!
elif [ -n "${CIRCNET_REQUIRE_DPDK:-}" ]; then
	fail "circnet-dataplane has no DPDK backend, and CIRCNET_REQUIRE_DPDK is set"
fi
swap_to_dpdk() {
	kill -TERM "$dp_pid" && wait "$dp_pid"
	dp_pid=
	local cores=0
	[ "$(nproc)" -gt 1 ] && cores=0-1
	ip netns exec "$ns2" "$build/dataplane/circnet-dataplane" --backend dpdk -l $cores \
		--no-huge -m 256 --no-pci --file-prefix "cnvm$$" --vdev="net_tap0,iface=$tap2" -- \
		--ip 10.218.77.2/24 --run-dir "$dir/run" --connect-timeout 3 --idle-sleep 20 \
		2>"$dir/dataplane-dpdk.log" &
	dp_pid=$!
	wait_proxy
	ip netns exec "$ns2" ip addr add 10.218.77.1/24 dev "$tap2" &&
		ip netns exec "$ns2" ip link set "$tap2" up ||
		{ tail -5 "$dir/dataplane-dpdk.log"; fail "the DPDK dataplane did not come up"; }
	echo "vm.sh: the DPDK proxy stack took over from the kernel's"
}
# ... and its server as a process guest, for the VM's client (port 7011: refused)
"$build/guest/circnet" run --guest h1 --run-dir "$dir/run" -- \
	timeout 200 "$build/test/sockcheck" server 0.0.0.0 7010 2>"$dir/sockcheck-server.log" &
app_pids=$!
# an unmodified HTTP server in a process guest, for busybox wget in the VM
mkdir -p "$dir/www" "$dir/t"
head -c 1048576 /dev/urandom >"$dir/www/blob"
md5sum <"$dir/www/blob" | cut -d' ' -f1 >"$dir/t/blob.md5"
"$build/guest/circnet" run --guest h1 --run-dir "$dir/run" -- \
	timeout 200 python3 -m http.server 7003 --bind :: --directory "$dir/www" \
	>"$dir/http.log" 2>&1 &
app_pids="$app_pids $!"
# iperf3's server in a process guest, for iperf3 in the VM (both directions)
"$build/guest/circnet" run --guest h1 --run-dir "$dir/run" -- \
	timeout 200 iperf3 -s -p 7004 >"$dir/iperf3.log" 2>&1 &
app_pids="$app_pids $!"
for _ in $(seq 100); do
	[ "$("$ctl" --run-dir "$dir/run" listeners | grep -Ec ':(7003|7004|7010) ')" = 3 ] && break
	sleep 0.1
done

# the VM's part: one line "CHECK name ok|FAIL" per step
cat >"$dir/t/test.sh" <<'VMTEST'
#!/bin/sh
check() { name=$1; shift; if "$@"; then echo "CHECK $name ok"; else echo "CHECK $name FAIL"; fi; }
check device test -c /dev/circnet-ivshmem0
check info circnet-vm info
check hello circnet-vm hello
check echo circnet-vm echo --bytes 1048576 --window 16
check vectors sh -c 'grep circnet /proc/interrupts | awk "{n += \$2} END {exit !(n > 0)}"'
check pair-devices test -c /dev/circnet-ivshmem3
check put circnet-vm connect 10.77.0.31:7000 --put 1048576
check get circnet-vm connect 10.77.0.31:7000 --get 1048576
check put-get circnet-vm connect 10.77.0.31:7000 --put 300000 --get 300000
check denied sh -c '! circnet-vm connect 10.77.0.31:7001 --put 10 2>/tmp/err && grep -q "refused" /tmp/err'
# off-host through the proxy stack: 1 MiB each way to the remote, and a port nobody serves
check proxy circnet-vm connect 10.214.77.2:7300 --put 1048576 --get 1048576
check proxy-refused sh -c '! circnet-vm connect 10.214.77.2:7399 --put 10 2>/tmp/err && grep -q "refused" /tmp/err'
# VM to VM: vm2 serves once it is up (refused until then)
check vm-to-vm sh -c 'for i in $(seq 90); do circnet-vm connect 10.77.0.22:7200 --put 1048576 --get 1048576 2>/tmp/err && exit 0; grep -q refused /tmp/err || { cat /tmp/err; exit 1; }; sleep 1; done; exit 1'
check scribble circnet-vm scribble
sleep 1
check hello-again circnet-vm hello
check echo-again circnet-vm echo --bytes 65536 --window 32
sleep 30 </dev/circnet-ivshmem0 &
holder=$!
sleep 0.5
check unload-busy sh -c '! rmmod circnet 2>/dev/null'
kill $holder; wait $holder 2>/dev/null
check unload rmmod circnet
check device-gone test ! -e /dev/circnet-ivshmem0
check reload insmod /lib/modules/circnet.ko sockets=0
check hello-reloaded circnet-vm hello
check put-reloaded circnet-vm connect 10.77.0.31:7000 --put 65536
# the other way: a host guest connects to the VM (vm.sh runs the client when it sees this serve)
check serve circnet-vm serve 7100 --count 1
# kernel sockets: every AF_INET stream socket is a circuit
check sockets-load sh -c 'rmmod circnet && insmod /lib/modules/circnet.ko'
check sockets-up sh -c 'for i in $(seq 50); do dmesg | grep -q "stream sockets are circuits" && exit 0; sleep 0.1; done; exit 1'
check devices-kernel sh -c '! circnet-vm info 2>/dev/null'
check k-put-get circnet-vm tcp-connect 10.77.0.31:7000 --put 1048576 --get 1048576
check k-denied sh -c '! circnet-vm tcp-connect 10.77.0.31:7001 --put 10 2>/tmp/err && grep -q "refused" /tmp/err'
check k-proxy circnet-vm tcp-connect 10.214.77.2:7300 --put 1048576 --get 1048576
check k-proxy-refused sh -c '! circnet-vm tcp-connect 10.214.77.2:7399 --put 10 2>/tmp/err && grep -q "refused" /tmp/err'
# the DPDK proxy stack: vm.sh swaps it in for the kernel's when it reads this
if [ -e /dpdk ]; then
	echo "VM: kernel proxy done"
	check k-dpdk-proxy sh -c 'for i in $(seq 120); do circnet-vm tcp-connect 10.218.77.1:7300 --put 1048576 --get 1048576 2>/tmp/err && exit 0; sleep 0.5; done; cat /tmp/err; exit 1'
	check k-dpdk-refused sh -c '! circnet-vm tcp-connect 10.218.77.1:7399 --put 10 2>/tmp/err && grep -q "refused" /tmp/err'
fi
check k-vm-to-vm circnet-vm tcp-connect 10.77.0.22:7200 --put 1048576 --get 1048576
# vm2 turns hostile (its module replaced by a writer of garbage over all of its pair
# devices): a connection to it fails, and this kernel lives on (k-kernel-clean, below)
check k-hostile-peer sh -c 'for i in $(seq 60); do circnet-vm tcp-connect 10.77.0.22:7201 --put 200000000 >/tmp/h 2>&1; grep -q refused /tmp/h || break; sleep 0.5; done; cat /tmp/h; ! grep -q RESULT /tmp/h'
check k-wget sh -c 'wget -q -O /tmp/blob http://10.77.0.31:7003/blob && [ "$(md5sum </tmp/blob | cut -d" " -f1)" = "$(cat /blob.md5)" ]'
check k-curl sh -c 'curl -sf -o /tmp/blob2 http://10.77.0.31:7003/blob && [ "$(md5sum </tmp/blob2 | cut -d" " -f1)" = "$(cat /blob.md5)" ]'
check k-curl-ipv6 sh -c 'curl -sfg -o /tmp/blob3 "http://[fd00:77::31]:7003/blob" && [ "$(md5sum </tmp/blob3 | cut -d" " -f1)" = "$(cat /blob.md5)" ]'
check k-iperf3 sh -c 'iperf3 -c 10.77.0.31 -p 7004 -n 4M >/tmp/iperf 2>&1 || { cat /tmp/iperf; exit 1; }; grep receiver /tmp/iperf'
check k-iperf3-reverse sh -c 'iperf3 -c 10.77.0.31 -p 7004 -n 4M -R >/tmp/iperf 2>&1 || { cat /tmp/iperf; exit 1; }; grep receiver /tmp/iperf'
timeout 90 sockcheck client 10.77.0.31 7010 2>/tmp/sockcheck.err | sed 's/^/SOCKCHECK /'
sed 's/^/SOCKCHECK-ERR /' /tmp/sockcheck.err
check k-serve circnet-vm tcp-serve 7100 --count 1
# inside the VM: sockcheck's server and client over loopback (circuits in the
# kernel's own memory; UDP over loopback is not a circuit yet)
sockcheck server 127.0.0.1 7500 2>/dev/null &
lsrv=$!
sleep 0.5
SOCKCHECK_NO_UDP=1 timeout 60 sockcheck client 127.0.0.1 7500 2>/tmp/lsc.err | sed 's/^/LOCALCHECK /'
kill $lsrv
# every circuit socket closed: the module goes and comes back (the session's teardown)
check k-unload sh -c 'rmmod circnet && insmod /lib/modules/circnet.ko'
check k-again sh -c 'for i in $(seq 50); do circnet-vm tcp-connect 10.77.0.31:7000 --put 65536 >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1'
check k-kernel-clean sh -c '! dmesg | grep -Ei "bug:|warning:|oops|general protection|refcount_t"'
# unload refused while a circuit socket is open; then the VM dies with it
# mid-transfer: its host peer must see the end, the operator leak nothing
circnet-vm tcp-connect 10.77.0.31:7000 --put 4000000000 >/dev/null 2>&1 &
sleep 2
check k-unload-busy sh -c '! rmmod circnet 2>/dev/null'
VMTEST
chmod +x "$dir/t/test.sh"
[ -n "$dpdk" ] && touch "$dir/t/dpdk"
(cd "$dir/t" && ls test.sh blob.md5 dpdk 2>/dev/null | cpio -o -H newc --quiet | gzip -1) >"$dir/t.cpio.gz"
cat "$INITRD" "$dir/t.cpio.gz" >"$dir/initrd.gz"
# vm2: serves vm1 twice with kernel sockets (vm1's circnet-vm, then its
# kernel), over the device its QEMU shares with vm1's; then it turns hostile:
# the module without kernel sockets, a listener for vm1, and garbage over all
# of the shared memory while vm1 talks to it
mkdir -p "$dir/t2"
cat >"$dir/t2/test.sh" <<'VMTEST'
#!/bin/sh
if circnet-vm tcp-serve 7200 --count 2; then echo "CHECK serve-vm ok"; else echo "CHECK serve-vm FAIL"; fi
# its one pair device is vm1's: a new peer needs another, which vm.sh hot-plugs
# (QMP) when it reads this line; until then the operator refuses
echo "VM2: a device for h1, please"
ok=
for i in $(seq 100); do
	circnet-vm tcp-connect 10.77.0.31:7000 --put 65536 >/dev/null 2>&1 && { ok=1; break; }
	sleep 0.3
done
[ -n "$ok" ] && echo "CHECK hotplug-peer ok" || echo "CHECK hotplug-peer FAIL"
if rmmod circnet && insmod /lib/modules/circnet.ko sockets=0; then echo "CHECK hostile-module ok"; fi
circnet-vm serve 7201 --count 1 >/dev/null 2>&1 &
circnet-vm scribble-pairs 15
VMTEST
chmod +x "$dir/t2/test.sh"
(cd "$dir/t2" && echo test.sh | cpio -o -H newc --quiet | gzip -1) >"$dir/t2.cpio.gz"
cat "$INITRD" "$dir/t2.cpio.gz" >"$dir/initrd2.gz"

echo "vm.sh: booting the VM (QEMU TCG, kernel $KVER)"
start=$(date +%s)
timeout 240 "$root/scripts/vm-run.sh" --guest vm1 --run-dir "$dir/run" --kernel "$KERNEL" \
	--initrd "$dir/initrd.gz" --peers 3 --append circnet.sockets=0 </dev/null >"$dir/console.log" 2>&1 &
qemu=$!
# vm2 starts once vm1's devices are up: its pair device becomes the other half of one of vm1's
for _ in $(seq 100); do grep -q 'vm vm1: control device attached' "$dir/op.log" && break; sleep 0.1; done
sleep 0.5
timeout 240 "$root/scripts/vm-run.sh" --guest vm2 --run-dir "$dir/run" --kernel "$KERNEL" \
	--initrd "$dir/initrd2.gz" --peers 1 --hotplug 1 --qmp "$dir/vm2.qmp" \
	</dev/null >"$dir/console2.log" 2>&1 &
qemu2=$!
# vm2 asks for a device for a new peer: QMP hot-plugs one into its empty slot
(
	for _ in $(seq 1800); do
		grep -aq 'VM2: a device for h1' "$dir/console2.log" && break
		kill -0 $qemu2 2>/dev/null || exit 0
		sleep 0.1
	done
	python3 "$root/scripts/vm-add-peer.py" --qmp "$dir/vm2.qmp" \
		--socket "$dir/run/guests/vm2/ivshmem.sock" --slot 1 >"$dir/hotplug.log" 2>&1
) &
hotplug_pid=$!
# when the VM serves (circnet-vm, then the kernel's sockets), a host guest
# connects to it: 1 MiB each way; in between, the DPDK proxy stack comes in
for what in 'serving on port 7100' 'VM: kernel proxy done' 'serving tcp on port 7100'; do
	[ "$what" = 'VM: kernel proxy done' ] && [ -z "$dpdk" ] && continue
	for _ in $(seq 1800); do
		grep -aq "$what" "$dir/console.log" && break
		kill -0 $qemu 2>/dev/null || break
		sleep 0.1
	done
	grep -aq "$what" "$dir/console.log" || break
	if [ "$what" = 'VM: kernel proxy done' ]; then
		swap_to_dpdk
		continue
	fi
	"$build/guest/circnet" run --guest h1 --run-dir "$dir/run" -- \
		python3 "$root/test/vm_peer.py" client 10.77.0.21 7100 1048576 1048576 >>"$dir/client.log" 2>&1
	echo "vm.sh: host client ($what) exit $?: $(tail -1 "$dir/client.log")"
done
wait $qemu
rc=$?
wait $qemu2
rc2=$?
echo "vm.sh: vm2: $(grep -a '^serve\|^CHECK\|^scribble' "$dir/console2.log" | tr -d '\r' | tr '\n' ' ')"
[ $rc2 = 0 ] || fail "vm2's QEMU exit $rc2"
grep -aq '^CHECK serve-vm ok' "$dir/console2.log" || { tail -20 "$dir/console2.log"; fail "vm2 did not serve vm1"; }
grep -aq '^CHECK hotplug-peer ok' "$dir/console2.log" ||
	{ cat "$dir/hotplug.log"; tail -20 "$dir/console2.log"; fail "vm2 got no hot-plugged pair device"; }
wait $hotplug_pid
grep -aq '^scribble-pairs: [1-9][0-9]* passes over 2 pair devices' "$dir/console2.log" ||
	{ tail -20 "$dir/console2.log"; fail "vm2 did not scribble"; }
echo "vm.sh: the VM ran $(($(date +%s) - start)) s (exit $rc)"
[ $rc = 0 ] || fail "QEMU exit $rc"
grep -a '^CHECK' "$dir/console.log" | tr -d '\r'
grep -a 'echo:' "$dir/console.log" | tr -d '\r'
want=42
[ -n "$dpdk" ] && want=44 # and the two checks through the DPDK proxy stack
got=$(grep -ac '^CHECK .* ok' "$dir/console.log")
[ "$got" = "$want" ] || fail "$got of $want checks in the VM passed"
grep -a '^connect\|^serve' "$dir/console.log" | tr -d '\r'
[ "$(grep -c 'all checked' "$dir/client.log")" = 2 ] ||
	fail "the host client's transfers to the VM: $(cat "$dir/client.log")"
# sockcheck in the VM, over kernel sockets that are circuits (TCP and UDP),
# against the kernel's own TCP/IP on the host
grep -a '^SOCKCHECK ' "$dir/console.log" | tr -d '\r' | sed 's/^SOCKCHECK //' >"$dir/vm.out"
grep -a '^SOCKCHECK-ERR ' "$dir/console.log" | tr -d '\r' | head -5
if ! diff -u "$dir/kernel.out" "$dir/vm.out"; then
	fail "sockcheck in the VM and over the kernel's TCP/IP disagree (above: - kernel, + VM)"
fi
echo "vm.sh: sockcheck: $(wc -l <"$dir/kernel.out") checks, the VM's kernel sockets and the host kernel's TCP/IP agree"
# ... and inside the VM over loopback (the TCP cases)
grep -a '^LOCALCHECK ' "$dir/console.log" | tr -d '\r' | sed 's/^LOCALCHECK //' >"$dir/vm-local.out"
if ! diff -u <(grep -v '^udp:' "$dir/kernel.out") "$dir/vm-local.out"; then
	fail "sockcheck over the VM's loopback and over the kernel's TCP disagree (above: - kernel, + VM)"
fi
echo "vm.sh: sockcheck over the VM's loopback: $(wc -l <"$dir/vm-local.out") TCP checks agree"

kill -0 "$op_pid" 2>/dev/null || fail "the operator died"
for _ in $(seq 50); do
	"$ctl" --run-dir "$dir/run" status --json | grep -q '"vm_devices":0' && break
	sleep 0.1
done
"$ctl" --run-dir "$dir/run" status --json | grep -q '"vm_devices":0' || fail "the device outlived QEMU"
"$ctl" --run-dir "$dir/run" guests --json >"$dir/guests.json"
python3 - "$dir/guests.json" <<'PY' || fail "operator's VM view"
import json, sys
vm = [g for g in json.load(open(sys.argv[1])) if g["name"] == "vm1"][0]["vm"]
print("vm.sh: operator's view:", vm)
assert vm["attaches"] == 1 and not vm["attached"], vm
assert vm["violations"] == 1, vm
PY
grep -q 'control circuit dropped' "$dir/op.log" || fail "the scribble went unnoticed"
# the circuit open when the VM died: its host end was reset or saw EOF, and is gone
for _ in $(seq 50); do
	"$ctl" --run-dir "$dir/run" status --json | grep -q '"circuits":0,' && break
	sleep 0.1
done
"$ctl" --run-dir "$dir/run" status --json | grep -q '"circuits":0,' || fail "circuits outlived the VM"
"$ctl" --run-dir "$dir/run" status --json | grep -q '"slots_in_use":0' || fail "slots outlived the VM"
tail -3 "$dir/peer.log"
grep -Eq 'connection lost|EOF with' "$dir/peer.log" || fail "the host peer never saw the VM go"
kill -0 "$peer_pid" 2>/dev/null || fail "the host peer died"
[ "$(grep -c '^vm_peer: put\|^vm_peer: get' "$dir/peer.log")" = 9 ] || fail "the host peer served $(grep -c '^vm_peer: put\|^vm_peer: get' "$dir/peer.log") of 9 transfers"
# the host's application servers and the proxy stack go (their sessions with
# them): what is left is the VMs'
for p in $app_pids $dp_pid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
dp_pid=
for _ in $(seq 50); do [ "$(ls /proc/$op_pid/fd | wc -l)" = "$fds_before" ] && break; sleep 0.1; done
fds_after=$(ls /proc/$op_pid/fd | wc -l)
if [ "$fds_after" != "$fds_before" ]; then
	ls -l /proc/$op_pid/fd | awk '{print $NF}' | sort | diff "$dir/fds-before" - | grep '^[<>]'
	fail "the operator holds $fds_after fds, $fds_before before the VM"
fi
grep -E ' (error|crit|alert|emerg):' "$dir/op.log" && fail "errors in the operator's log"
echo "vm.sh: all passed"
