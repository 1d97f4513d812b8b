#!/usr/bin/env bash
# scripts/throughput.sh - the proxy stacks' throughput run: a guest reaches a
# remote host through the DPDK dataplane (DPDK + lwIP on a net_tap port into
# the remote's network namespace), through the kernel-socket dataplane (a
# veth pair into the remote) and, as the baseline, a client namespace talks
# to the remote over a plain veth. iperf3 up, down and 4 streams; nginx + wrk
# small pages (keep-alive and one connection per request) and a 1 MiB file.
# Side by side in one run, repetitions interleaved; CPU per GB or request of
# the client, the server side (with the dataplane and operator) and the
# dataplane alone (cpu-proxy). A table with ratios, and DIR/proxy.{json,csv}
# (circnet-bench/v1, as every benchmark).
#
#   sudo scripts/throughput.sh [--quick|--smoke] [--reps N] [--secs S] [--results DIR] [BUILD_DIR]
#
# On a machine with a real NIC, see docs/dpdk.md ("A 10 Gbit run").
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
args=()
for a in "$@"; do
	if [ -d "$a" ] && [ -f "$a/build.ninja" ]; then build=$a; else args+=("$a"); fi
done
exec python3 scripts/bench-apps.py --proxy "${args[@]}" "$build"
