#!/usr/bin/env bash
# scripts/test.sh - install what is needed, build, run every test:
#   1. normal build (-O2 -g, -Werror): all meson suites
#   2. AddressSanitizer + UBSan build: all meson suites
#   3. ThreadSanitizer build: the ring stress tests and the wake-up tests
#   4. the packaged-lwIP build of the DPDK dataplane compiles (our lwIP build is the default)
#   5. libFuzzer (clang, ASan+UBSan): the fuzz targets for CIRCNET_FUZZ_SECS (default 60)
# Exits non-zero on any failure; ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh || exit 1

passed=0
failed=0
logdir=build-logs
mkdir -p "$logdir"

# setup DIR [meson options...]: configure once, reconfigure never (options are fixed per dir)
setup() {
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$logdir/$(basename "$dir")-setup.log" 2>&1 ||
			{ cat "$logdir/$(basename "$dir")-setup.log"; return 1; }
	fi
	ninja -C "$dir" >"$logdir/$(basename "$dir")-build.log" 2>&1 ||
		{ tail -50 "$logdir/$(basename "$dir")-build.log"; return 1; }
}

# run_meson NAME DIR [meson test args...]
run_meson() {
	local name=$1 dir=$2 out ok fail xfail
	shift 2
	echo "== $name"
	out=$(meson test -C "$dir" --print-errorlogs "$@" 2>&1)
	local rc=$?
	echo "$out" | grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): '
	ok=$(echo "$out" | awk '/^Ok:/ {print $2}')
	xfail=$(echo "$out" | awk '/^Expected Fail:/ {print $3}')
	fail=$(echo "$out" | awk '/^(Fail|Unexpected Pass|Timeout):/ {s += $NF} END {print s + 0}')
	if [ $((${ok:-0} + ${xfail:-0} + fail)) -eq 0 ]; then
		echo "$out" | tail -5
		echo "== $name: no test ran"
		failed=$((failed + 1))
		return
	fi
	passed=$((passed + ${ok:-0} + ${xfail:-0}))
	failed=$((failed + fail))
	if [ $rc -ne 0 ]; then
		[ "$fail" -gt 0 ] || failed=$((failed + 1))
		echo "$out" | tail -60
		echo "== $name: FAILED (log: $dir/meson-logs/testlog.txt)"
	fi
}

step() {
	if ! "$@"; then
		failed=$((failed + 1))
		echo "== step failed: $*"
	fi
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

if setup build; then
	run_meson "normal build: all suites" build
else
	failed=$((failed + 1))
fi
if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
	run_meson "ASan+UBSan build: all suites" build-asan
else
	failed=$((failed + 1))
fi
if setup build-tsan -Db_sanitize=thread -Db_lundef=false; then
	run_meson "TSan build: ring stress + wake-ups" build-tsan --suite tsan
else
	failed=$((failed + 1))
fi
# the fallback when lwIP's source is missing: the packaged liblwip, linked in
echo "== packaged-lwIP build: the DPDK dataplane compiles against Debian's liblwip"
if setup build-pkglwip -Dlwip_source=/nonexistent -Dtests=false; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi
echo "== libFuzzer: ${CIRCNET_FUZZ_SECS:-60}s per target"
if ./scripts/fuzz.sh "${CIRCNET_FUZZ_SECS:-60}"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

echo
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
