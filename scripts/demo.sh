#!/usr/bin/env bash
# scripts/demo.sh - the main job: install what is needed, build, and measure
# circuits against TCP loopback, AF_UNIX and memcpy on this machine, with the
# figures written to results/ (table, JSON, CSV).
#
#   ./scripts/demo.sh            full run (3 repetitions, a few minutes)
#   ./scripts/demo.sh --quick    30-second version
#
# Until the operator and the socket preload land, the demo is the circuit
# benchmark; later issues grow it into the guest-to-guest demo.
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
echo "demo: figures in results/ring.txt, results/ring.json, results/ring.csv"
