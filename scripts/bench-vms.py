#!/usr/bin/env python3
"""scripts/bench-vms.py - VM to VM goodput: a circuit against virtio-net, same VMs, same run.

usage: sudo scripts/bench-vms.py [BUILD_DIR] [--bytes N] [--reps R] [--out DIR] [--quick]

Boots two QEMU VMs (TCG unless CIRCNET_VM_ACCEL=kvm) with the guest module.
Each VM gets its circnet devices (docs/vms.md) and a virtio-net NIC on a Linux
bridge with a tap per VM: what a packet-switched VM network is. vm1 puts N
bytes to vm2 R times over each path:

  socket    circnet-vm tcp-connect with the module's kernel sockets: a plain
            connect()/write() whose socket is a circuit (what applications get)
  circuit   circnet-vm connect: the same circuit driven from user space
            (the module with sockets=0, the device mapped by circnet-vm)
  virtio    circnet-vm tcp-connect with sockets=0: the kernel's TCP over the
            NICs and the bridge

circuit and virtio runs interleave; then both VMs reload the module with
kernel sockets and the socket runs follow.

Both sides check every byte (FNV-1a). Time is the VM's own clock (the same
clock for both paths, so the ratio holds; under TCG the absolute figures are
an emulator's). Output: a table on stdout and DIR/vms.{json,csv}
(schema circnet-bench/v1, docs/benchmarks.md). Needs root (bridge, taps).
"""
import argparse
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRIDGE, TAPS = "cnvmbr0", ("cnvmtap1", "cnvmtap2")


def load_bench_apps():
    """bench-apps.py's JSON and CSV writers: one schema for every benchmark."""
    spec = importlib.util.spec_from_file_location("bench_apps",
                                                  os.path.join(ROOT, "scripts", "bench-apps.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def net_up():
    net_down()
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "set", BRIDGE, "up")
    for t in TAPS:
        sh("ip", "tuntap", "add", "dev", t, "mode", "tap")
        sh("ip", "link", "set", t, "master", BRIDGE)
        sh("ip", "link", "set", t, "up")


def net_down():
    for t in TAPS:
        sh("ip", "link", "del", t, check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def image(build, scratch, name, script):
    env = dict(os.environ)
    out = sh(os.path.join(ROOT, "scripts", "vm-image.sh"), "--build", build, "--out",
             os.path.join(build, "vm")).stdout
    vals = dict(line.split("=", 1) for line in out.split() if "=" in line)
    d = os.path.join(scratch, name)
    os.makedirs(d)
    with open(os.path.join(d, "test.sh"), "w") as f:
        f.write(script)
    os.chmod(os.path.join(d, "test.sh"), 0o755)
    cpio = subprocess.run("cd %s && echo test.sh | cpio -o -H newc --quiet | gzip -1" % d,
                          shell=True, check=True, stdout=subprocess.PIPE, env=env).stdout
    initrd = os.path.join(scratch, name + ".gz")
    with open(initrd, "wb") as f, open(vals["INITRD"], "rb") as base:
        f.write(base.read())
        f.write(cpio)
    return vals["KERNEL"], initrd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--bytes", type=int, default=8 << 20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "results"))
    ap.add_argument("--quick", action="store_true", help="1 MiB, 2 repetitions")
    a = ap.parse_args()
    if a.quick:
        a.bytes, a.reps = 1 << 20, 2
    if os.geteuid() != 0:
        sys.exit("bench-vms: needs root (a bridge and taps for the virtio-net baseline)")
    for tool in ("qemu-system-x86_64", "ip", "cpio", "gzip"):
        if not shutil.which(tool):
            sys.exit("bench-vms: %s missing (scripts/deps.sh installs it)" % tool)
    build = os.path.abspath(a.build)
    bench = load_bench_apps()
    scratch = tempfile.mkdtemp(prefix="circnet-bench-vms.")
    run_dir = os.path.join(scratch, "run")
    conf = os.path.join(scratch, "op.conf")
    with open(conf, "w") as f:
        f.write("run-dir %s\nnetwork 10.78.0.0/24\n"
                "guest vm1 {\n address 10.78.0.1\n vm ivshmem\n vm-memory 16M\n}\n"
                "guest vm2 {\n address 10.78.0.2\n vm ivshmem\n vm-memory 16M\n"
                " listen tcp 7200,7202\n}\n"
                "allow tcp from vm1 to vm2 port 7200\n"
                "allow tcp from vm1 to vm2 port 7202\n" % run_dir)
    sockets_on = "rmmod circnet && insmod /lib/modules/circnet.ko\n"
    vm2 = ("#!/bin/sh\nvirtio-net-up 192.168.78.2/24\n"
           "circnet-vm tcp-serve 7201 --count %d &\n"
           "circnet-vm serve 7200 --count %d\nwait\n" % (a.reps, a.reps) + sockets_on +
           "circnet-vm tcp-serve 7202 --count %d\n" % a.reps)
    vm1 = ("#!/bin/sh\nvirtio-net-up 192.168.78.1/24\n"
           "for i in $(seq 120); do ping -c1 -W1 192.168.78.2 >/dev/null 2>&1 && break; done\n"
           "for r in $(seq %d); do\n"
           "  for i in $(seq 120); do circnet-vm connect 10.78.0.2:7200 --put %d 2>/tmp/e && break;"
           " grep -q refused /tmp/e || { cat /tmp/e; break; }; sleep 1; done\n"
           "  for i in $(seq 60); do circnet-vm tcp-connect 192.168.78.2:7201 --put %d && break;"
           " sleep 1; done\n"
           "done\n" % (a.reps, a.bytes, a.bytes) + sockets_on + "echo PHASE sockets\n" +
           "for r in $(seq %d); do\n"
           "  for i in $(seq 120); do circnet-vm tcp-connect 10.78.0.2:7202 --put %d 2>/tmp/e"
           " && break; grep -q refused /tmp/e || { cat /tmp/e; break; }; sleep 1; done\n"
           "done\n" % (a.reps, a.bytes))
    procs = []
    try:
        net_up()
        kernel, initrd1 = image(build, scratch, "vm1", vm1)
        _, initrd2 = image(build, scratch, "vm2", vm2)
        oplog = open(os.path.join(scratch, "op.log"), "w")
        procs.append(subprocess.Popen([os.path.join(build, "operator", "circnet-operator"),
                                       "--config", conf], stderr=oplog))
        sock = os.path.join(run_dir, "guests", "vm1", "ivshmem.sock")
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.1)
        logs = {}
        for name, initrd, tap, mac in (("vm1", initrd1, TAPS[0], "52:54:00:78:00:01"),
                                       ("vm2", initrd2, TAPS[1], "52:54:00:78:00:02")):
            logs[name] = os.path.join(scratch, name + ".console")
            cmd = [os.path.join(ROOT, "scripts", "vm-run.sh"), "--guest", name, "--run-dir",
                   run_dir, "--kernel", kernel, "--initrd", initrd, "--peers", "1",
                   "--append", "circnet.sockets=0", "--",
                   "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % tap,
                   "-device", "virtio-net-pci,netdev=n0,mac=%s" % mac]
            procs.append(subprocess.Popen(["timeout", "900"] + cmd, stdin=subprocess.DEVNULL,
                                          stdout=open(logs[name], "w"),
                                          stderr=subprocess.STDOUT))
            if name == "vm1":  # vm2's pair device becomes the other half of vm1's
                for _ in range(100):
                    if "vm vm1: control device attached" in open(oplog.name).read():
                        break
                    time.sleep(0.1)
                time.sleep(0.5)
            print("bench-vms: %s booting" % name, flush=True)
        for p in procs[1:]:
            p.wait()
        samples = {"socket": [], "circuit": [], "virtio": []}
        sockets = False
        for line in open(logs["vm1"], errors="replace"):
            sockets = sockets or line.startswith("PHASE sockets")
            m = re.match(r"RESULT transport=(\w+) put=(\d+) get=\d+ secs=([\d.]+)", line.strip())
            if m and float(m.group(3)) > 0:
                t = "circuit" if m.group(1) == "circuit" else "socket" if sockets else "virtio"
                samples[t].append(int(m.group(2)) * 8 / float(m.group(3)) / 1e9)
        if any(len(s) != a.reps for s in samples.values()):
            print(open(logs["vm1"], errors="replace").read()[-3000:])
            print(open(logs["vm2"], errors="replace").read()[-1500:])
            sys.exit("bench-vms: %s runs of %d finished" % (
                ", ".join("%d %s" % (len(s), t) for t, s in samples.items()), a.reps))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        net_down()
    base = statistics.median(samples["virtio"])
    rows = []
    for t in ("socket", "circuit", "virtio"):
        s = samples[t]
        med = statistics.median(s)
        rows.append({"name": "vm-goodput/%s/%d" % (t, a.bytes), "group": "vm-goodput",
                     "transport": t, "size": a.bytes, "unit": "Gbit/s", "value": round(med, 6),
                     "min": min(s), "max": max(s), "repetitions": len(s),
                     "higher_is_better": True, "samples": s,
                     "ratios": {} if t == "virtio" else {"virtio": round(med / base, 4)}})
    accel = os.environ.get("CIRCNET_VM_ACCEL", "tcg")
    config = "bytes=%d reps=%d accel=%s clock=guest" % (a.bytes, a.reps, accel)
    os.makedirs(a.out, exist_ok=True)
    bench.write_json(rows, os.path.join(a.out, "vms.json"), config, benchmark="vms")
    with open(os.path.join(a.out, "vms.csv"), "w") as f:
        f.write("benchmark,group,transport,size,unit,median,min,max,repetitions,"
                "higher_is_better,ratio_virtio\n")
        for r in rows:
            f.write("vms,%s,%s,%d,%s,%.6g,%.6g,%.6g,%d,1,%s\n" % (
                r["group"], r["transport"], r["size"], r["unit"], r["value"], r["min"],
                r["max"], r["repetitions"], r["ratios"].get("virtio", "")))
    print("bench-vms: %s" % config)
    print("%-12s %-9s %10s %12s %-7s %8s %10s" % ("test", "transport", "bytes", "median", "unit",
                                                 "spread", "virtio"))
    for r in rows:
        spread = (r["max"] - r["min"]) / r["value"] * 100 if r["value"] else 0
        print("%-12s %-9s %10d %12.4g %-7s %7.0f%% %10s" % (
            r["group"], r["transport"], r["size"], r["value"], r["unit"], spread,
            ("%.2fx" % r["ratios"]["virtio"]) if "virtio" in r["ratios"] else "-"))
    print("ratio: median / virtio-net median, same VMs, same run, the VMs' clock")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
