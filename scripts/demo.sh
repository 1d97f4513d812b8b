#!/usr/bin/env bash
# scripts/demo.sh - the main job: install what is needed, build, and measure
# circuits against TCP loopback, AF_UNIX and memcpy on this machine, then
# connection setup through a real operator against TCP/AF_UNIX connect, with
# the figures written to results/ (table, JSON, CSV).
#
#   ./scripts/demo.sh            full run (3 repetitions, a few minutes)
#   ./scripts/demo.sh --quick    30-second version
#
# Until the socket preload lands, the demo is these two benchmarks; issue 7
# grows it into the guest-to-guest demo with real applications.
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
echo "demo: circuit benchmark (two processes, one per core; progress on stderr)"
./build/bench/circnet-bench ring "${quick[@]}" \
	--json results/ring.json --csv results/ring.csv | tee results/ring.txt
echo
echo "demo: connection setup through the operator vs TCP loopback and AF_UNIX"
./build/bench/circnet-bench setup "${quick[@]}" \
	--json results/setup.json --csv results/setup.csv | tee results/setup.txt
echo
echo "demo: figures in results/{ring,setup}.{txt,json,csv}"
