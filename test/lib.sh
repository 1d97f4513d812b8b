# test/lib.sh - what the proxy integration tests (proxy.sh, dpdk.sh) share.
# Sourced after the script has set: dir (its temp dir), ns (the remote host's
# namespace), circnet (the guest launcher), ctl (circnetctl) and peers
# (test/netpeers.py).
failed=0
failed_names=()
check() { # check NAME COMMAND...: one line per check
	if "${@:2}"; then
		echo "ok   $1"
	else
		echo "FAIL $1"
		failed=$((failed + 1))
		failed_names+=("$1")
	fi
}
report_failures() { # report_failures LOG: the failed checks and LOG's warnings, last in
	# the output, where a CI that keeps only the tail still shows them
	echo "failed checks:"
	printf '    %s\n' "${failed_names[@]}"
	echo "warnings and errors in $1:"
	grep -E " (warning|error|crit|alert|emerg):|: reset" "$1" | tail -20 | sed 's/^/    /'
}
is() { # is GOT WANT: equal, or say what came instead
	[ "$1" = "$2" ] || { echo "     got '$1', want '$2'"; return 1; }
}
guest() { # guest COMMAND...: run it in guest client, bounded in time
	timeout 60 "$circnet" run --run-dir "$dir/run" --guest client -- "$@"
}
remote() { ip netns exec "$ns" "$@"; } # (not for background jobs: $! would be a subshell)
wait_listener() { # wait_listener REGEX: up to 10 s for a guest listener the operator lists
	for _ in $(seq 100); do
		"$ctl" --run-dir "$dir/run" listeners | grep -E "$1" >/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# silent_remote HOST PORT ADDR/LEN DEV: a guest streams to a sink at HOST:PORT;
# then the remote's ADDR vanishes from DEV (segments to it are dropped there,
# unanswered) until the guest's send fails. Sets silent_errno (what the send
# said) and silent_secs (how long after the address went), then puts it back.
silent_remote() {
	local sender t0
	guest python3 "$peers" send-until-error "$1" "$2" >"$dir/silent.out" 2>"$dir/silent.err" &
	sender=$!
	# connected first (a guest under a sanitizer starts slowly), then a second of sending
	for _ in $(seq 100); do grep -q connected "$dir/silent.err" 2>/dev/null && break; sleep 0.1; done
	sleep 1
	remote ip addr del "$3" dev "$4"
	t0=$(date +%s)
	wait "$sender"
	silent_secs=$(($(date +%s) - t0))
	remote ip addr add "$3" dev "$4"
	silent_errno=$(cat "$dir/silent.out")
	[ -n "$silent_errno" ] || silent_errno=$(grep -v '^connected$' "$dir/silent.err")
}
