#!/usr/bin/env python3
"""scripts/vm-add-peer.py - give a running VM one more pair device (docs/vms.md).

usage: scripts/vm-add-peer.py --qmp PATH --socket RUN/guests/NAME/ivshmem.sock --slot N

Over the VM's QMP socket (scripts/vm-run.sh --qmp), a chardev to the
operator's ivshmem.sock for the guest and an ivshmem-doorbell device with 32
vectors on the empty PCIe slot circnet-hpN (vm-run.sh --hotplug). The
operator serves it as any further device: a free pair device, assigned to
the VM's next new peer. The guest's PCIe hotplug driver finds it and the
module binds it. Exit 0 once QEMU accepted both; 1 with QMP's error.
"""
import argparse
import json
import socket
import sys


def qmp(f, cmd, args=None):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            sys.exit("vm-add-peer: QEMU closed the QMP socket")
        reply = json.loads(line)
        if "return" in reply:
            return reply["return"]
        if "error" in reply:
            sys.exit("vm-add-peer: %s: %s" % (cmd, reply["error"].get("desc", reply["error"])))
        # events ({"event": ...}) pass by


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--socket", required=True, help="the operator's ivshmem.sock for the guest")
    ap.add_argument("--slot", type=int, required=True, help="N of vm-run.sh's circnet-hpN")
    ap.add_argument("--vectors", type=int, default=32)
    a = ap.parse_args()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(a.qmp)
    f = s.makefile("rw")
    json.loads(f.readline())  # the greeting
    qmp(f, "qmp_capabilities")
    cid = "circnet-hpdev%d" % a.slot
    qmp(f, "chardev-add", {"id": cid, "backend": {"type": "socket", "data": {
        "addr": {"type": "unix", "data": {"path": a.socket}}, "server": False}}})
    qmp(f, "device_add", {"driver": "ivshmem-doorbell", "chardev": cid,
                          "vectors": a.vectors, "bus": "circnet-hp%d" % a.slot,
                          "id": "circnet-pair-hp%d" % a.slot})
    print("vm-add-peer: pair device on circnet-hp%d added" % a.slot)


if __name__ == "__main__":
    main()
