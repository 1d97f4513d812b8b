#!/usr/bin/env bash
# scripts/demo.sh - the main job: install what is needed, build, then
#  1. guests talking over circuits: nginx, redis and iperf3 as guests with
#     wrk, redis-benchmark and iperf3 clients, against the same programs over
#     TCP loopback and over a veth bridge between namespaces (root only);
#  2. the circuit itself against TCP loopback, AF_UNIX and memcpy;
#  3. connection setup through a real operator against TCP/AF_UNIX connect;
# with the figures written to results/ (tables, JSON, CSV).
#
#   ./scripts/demo.sh            full run (3 repetitions, a few minutes)
#   ./scripts/demo.sh --quick    about a minute
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
./scripts/guests-demo.sh "${quick[@]}" --results results build | tee results/guests.txt
echo
echo "demo: circuit benchmark (two processes, one per core; progress on stderr)"
./build/bench/circnet-bench ring "${quick[@]}" \
	--json results/ring.json --csv results/ring.csv | tee results/ring.txt
echo
echo "demo: connection setup through the operator vs TCP loopback and AF_UNIX"
./build/bench/circnet-bench setup "${quick[@]}" \
	--json results/setup.json --csv results/setup.csv | tee results/setup.txt
echo
echo "demo: figures in results/{guests,ring,setup}.{txt,json,csv}"
