#!/usr/bin/env bash
# test/preload.sh BUILD_DIR - the socket-API test body (sockcheck) over the
# kernel's TCP on loopback, then over circuits between two guests started
# with `circnet run` (a real operator, the preload, network namespaces).
# The two outputs must be identical. Needs root (namespaces): exits 77
# (skipped) without it.
set -uo pipefail
build=$(cd "${1:?usage: preload.sh BUILD_DIR}" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
run=$build/guest/circnet
check=$build/test/sockcheck

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
	echo "preload.sh: needs root and network namespaces: skipped"
	exit 77
fi
# In a sanitizer build the preload carries ASan, and it is loaded before the
# program's own copy of the runtime: allowed, and what we want checked.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
dir=$(mktemp -d /tmp/circnet-preload-test.XXXXXX)
pids=()
cleanup() {
	local p left
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	# bounded: a process that outlives SIGTERM by 5 s is named, with what
	# it waits in, then killed (CI once saw this script hang here)
	for _ in $(seq 50); do
		left=()
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
		[ ${#left[@]} -eq 0 ] && break
		sleep 0.1
	done
	if [ ${#left[@]} -gt 0 ]; then
		echo "preload.sh: still running 5 s after SIGTERM (killed now):"
		ps -eo pid,ppid,stat,wchan:24,args | grep -E "circnet|sockcheck" | grep -v grep | sed 's/^/    /'
		tail -5 "$dir/operator.log" 2>/dev/null | sed 's/^/    operator: /'
		pkill -9 -f "$check" 2>/dev/null
		for p in "${left[@]}"; do pkill -9 -P "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
	fi
	wait 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

port=$((7400 + RANDOM % 500))

# 1. the kernel
timeout 20 "$check" server 127.0.0.1 "$port" 2>"$dir/kernel-server.err" &
pids+=($!)
sleep 0.3
timeout 60 "$check" client 127.0.0.1 "$port" >"$dir/kernel.out" 2>"$dir/kernel-client.err" || {
	echo "preload.sh: the kernel run failed"; cat "$dir/kernel-client.err"; exit 1; }

# 2. circuits
cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
log-level info
network 10.66.0.0/24
guest srv {
    address 10.66.0.2
    listen any any
}
guest cli {
    address 10.66.0.3
}
allow any from cli to srv
deny any from any to any
CONF
"$op" --config "$dir/circnet.conf" 2>"$dir/operator.log" &
pids+=($!)
for _ in $(seq 50); do "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && break; sleep 0.1; done
timeout 60 "$run" run --run-dir "$dir/run" --guest srv -- "$check" server 0.0.0.0 "$port" \
	2>"$dir/circuit-server.err" &
pids+=($!)
for _ in $(seq 50); do
	"$ctl" --run-dir "$dir/run" listeners | grep -q ":$port " && break
	sleep 0.1
done
if ! timeout 60 "$run" run --run-dir "$dir/run" --guest cli -- "$check" client srv "$port" \
	>"$dir/circuit.out" 2>"$dir/circuit-client.err"; then
	echo "preload.sh: the circuit run failed:"
	cat "$dir/circuit-client.err" "$dir/circuit-server.err"
	tail -20 "$dir/operator.log"
	diff "$dir/kernel.out" "$dir/circuit.out"
	exit 1
fi
if ! diff -u "$dir/kernel.out" "$dir/circuit.out"; then
	echo "preload.sh: circuits and the kernel disagree (above: - kernel, + circuits)"
	exit 1
fi
echo "preload.sh: $(wc -l <"$dir/kernel.out") checks, circuits and kernel TCP agree"
