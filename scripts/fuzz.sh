#!/usr/bin/env bash
# scripts/fuzz.sh - build the libFuzzer targets with clang + ASan/UBSan and run
# each for a bounded time. CI runs it briefly; run it longer by hand:
#   ./scripts/fuzz.sh 3600          # one hour per target
#   ./scripts/fuzz.sh 60 -jobs=2    # extra args go to libFuzzer
# Targets: fuzz_circuit (hostile peer), fuzz_config (config parser + policy),
# fuzz_proto (operator protocol validator), fuzz_frame (the NIC frame parser), fuzz_pool
# (the operator's slot allocator). New interesting inputs land in build-fuzz/corpus-<target>/ (not committed);
# crashes are written to ./crash-* and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzzing=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz fuzz/fuzz_circuit fuzz/fuzz_config fuzz/fuzz_proto fuzz/fuzz_frame fuzz/fuzz_pool >/dev/null
# target:seed-directory
for spec in fuzz_circuit:corpus fuzz_config:seeds-config fuzz_proto:seeds-proto fuzz_frame:seeds-frame fuzz_pool:seeds-pool; do
	target=${spec%%:*}
	seeds=fuzz/${spec#*:}
	corpus=build-fuzz/corpus-$target
	mkdir -p "$corpus"
	echo "fuzz: $target for ${secs}s (corpus $corpus, seeds $seeds)"
	log=build-fuzz/$target.log
	rc=0
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		./build-fuzz/fuzz/$target "$corpus" "$seeds" \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@" \
		>"$log" 2>&1 || rc=$?
	grep -E 'stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|invariant|crash-' "$log" || true
	if [ "$rc" -ne 0 ]; then
		tail -40 "$log"
		echo "fuzz: $target FAILED (exit $rc), full log in $log"
		exit 1
	fi
done
echo "fuzz: all targets ran ${secs}s without a finding"
