#!/usr/bin/env python3
"""test/scale.py - the scale run: N concurrent idle circuits between two
guests through a real operator (circnet-bench idle), next to N TCP loopback
and N AF_UNIX connections.

Fails when a connection cannot be set up or carry its byte each way (the
benchmark exits non-zero), when a figure is missing, or when an idle
circuit's shared memory is above what its touched pages can explain: the
slot's head page and one page of each ring (12 KiB), with 4 KiB of slack
for noise. A circuit that mapped or zeroed its rings up front would cost
hundreds of KiB here.

N (default 10 000) is capped by the open-file limit where it cannot be
raised (the operator holds a lease per circuit end: 2 fds per circuit); the
cap is printed.

usage: scale.py CIRCNET-BENCH [N]
"""
import json
import os
import resource
import subprocess
import sys
import tempfile


def fd_cap(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 4096
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = (soft - 512) * 100 // 204  # the operator: 2 leases per circuit, and its chunks
    if cap < n:
        print("scale: %d circuits capped at %d by the open-file limit (%d), which cannot be "
              "raised here" % (n, cap, soft))
    return min(n, cap)

SHM_MAX_KIB = 16.0


def main():
    bench = sys.argv[1]
    n = fd_cap(int(sys.argv[2]) if len(sys.argv) > 2 else 10000)
    with tempfile.TemporaryDirectory(prefix="circnet-scale.") as d:
        out = os.path.join(d, "idle.json")
        r = subprocess.run([bench, "idle", "--circuits", str(n), "--json", out],
                           timeout=600)
        if r.returncode:
            sys.exit("scale: circnet-bench idle failed (exit %d)" % r.returncode)
        with open(out) as f:
            res = json.load(f)["results"]
    got = {(x["group"], x["transport"]): x for x in res}
    for group in ("idle-setup", "idle-shm", "idle-kernel", "idle-total", "idle-fds"):
        for t in ("circuit", "tcp-loopback", "af-unix"):
            if (group, t) not in got or got[(group, t)]["size"] != n:
                sys.exit("scale: no %s figure for %s with %d connections" % (group, t, n))
    shm = got[("idle-shm", "circuit")]["value"]
    if shm > SHM_MAX_KIB:
        sys.exit("scale: an idle circuit holds %.1f KiB of shared memory (at most %.0f)"
                 % (shm, SHM_MAX_KIB))
    if got[("idle-setup", "circuit")]["value"] <= 0:
        sys.exit("scale: no setup rate")
    print("scale: %d idle circuits held: %.1f KiB shared + %.1f KiB kernel per connection "
          "(TCP loopback: %.1f KiB kernel)" % (
              n, shm, got[("idle-kernel", "circuit")]["value"],
              got[("idle-kernel", "tcp-loopback")]["value"]))


if __name__ == "__main__":
    main()
