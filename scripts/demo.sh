#!/usr/bin/env bash
# scripts/demo.sh - the main job: install what is needed, build, then
#  1. guests talking over circuits: nginx (guest web), redis (guest cache),
#     iperf3 and sockperf servers as guests, with wrk, redis-benchmark,
#     iperf3 and sockperf in guest client, against the same programs over
#     TCP loopback, over a veth bridge between namespaces and (redis) over
#     AF_UNIX (root only; scripts/bench-apps.py --demo);
#  2. the circuit itself against TCP loopback, AF_UNIX and memcpy;
#  3. connection setup through a real operator against TCP/AF_UNIX connect;
# with the figures written to results/ (tables, JSON, CSV, PNG plots).
#
#   ./scripts/demo.sh            full run (3 repetitions, about 4 minutes)
#   ./scripts/demo.sh --quick    about 40 seconds
# The whole benchmark matrix: ./scripts/bench-apps.py build (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
case "${1:-}" in
--quick) quick=(--quick) ;;
"") ;;
*)
	echo "usage: $0 [--quick]" >&2
	exit 2
	;;
esac
./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
echo "demo: building"
ninja -C build >/dev/null
mkdir -p results
echo "demo: guests over circuits vs TCP loopback vs a veth bridge (progress on stderr)"
if [ "$(id -u)" = 0 ]; then
	./scripts/bench-apps.py --demo "${quick[@]}" --name guests --results results build |
		tee results/guests.txt
else
	echo "demo: guests need root (network namespaces): skipped"
fi
echo
echo "demo: circuit benchmark (two processes, one per core; progress on stderr)"
./build/bench/circnet-bench ring "${quick[@]}" \
	--json results/ring.json --csv results/ring.csv | tee results/ring.txt
echo
echo "demo: connection setup through the operator vs TCP loopback and AF_UNIX"
./build/bench/circnet-bench setup "${quick[@]}" \
	--json results/setup.json --csv results/setup.csv | tee results/setup.txt
echo
echo "demo: figures in results/{guests,ring,setup}.{txt,json,csv}, plots in results/*.png"
