#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
scripts/bench-apps.py - the real-application benchmark matrix.

The same unmodified clients and servers run over
  circuit       guests on circnet circuits (circnet run, the preload)
  circuit-spin  the same with the preload's epoll busy-poll budget
                (CIRCNET_SPIN_US=50) on both ends: latency-bound cells only
  tcp-loopback  TCP on 127.0.0.1 in one namespace
  veth-bridge   TCP between two namespaces over veth pairs on a Linux bridge
                (what container networks do)
  af-unix       a Unix stream socket, where both programs support one
side by side in one run, repetitions interleaved. Workloads: nginx + wrk
(small page and 1 MiB file, keep-alive and one connection per request, the
latter being the connection-setup rate), redis-server + redis-benchmark (GET
and SET, plain and pipelined), iperf3 (TCP 1 and 4 streams, UDP, message-size
sweeps) and sockperf ping-pong (latency p50/p99/p99.9).

Besides each figure it records the CPU time per request or per GB (client
processes, server processes with the operator, and the whole host), the
memory the connections hold at load (circuit pages resident; kernel socket
buffers), and each idle server's memory with and without circuits.

Output: a table on stdout, DIR/apps.{json,csv} (schema circnet-bench/v1, as
every benchmark) and PNG plots (gnuplot) in DIR. --smoke runs every cell
once for a second and checks each figure and the content that crossed
(meson test runs it); --demo runs the demo's subset. Needs root.

usage: bench-apps.py [--smoke|--quick] [--demo] [--reps N] [--secs S] [--only W,W]
                     [--transports T,T] [--results DIR] [--name STEM] [--no-plots] BUILD_DIR
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BASELINES = ("tcp-loopback", "veth-bridge", "af-unix")
BASELINE_LABELS = {"tcp-loopback": "vs lo", "veth-bridge": "vs veth", "af-unix": "vs unix",
                   "kernel-proxy": "vs kernel-dp", "veth-direct": "vs veth"}
SPIN_US = "50"


def say(msg):
    print("bench-apps: " + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --- process accounting --------------------------------------------------------

def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(root, kids=None):
    """root and all its descendants."""
    kids = kids if kids is not None else children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_ns(pids):
    """Time on CPU of every thread of pids, in ns (schedstat: ns resolution)."""
    total = 0
    for p in pids:
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def host_busy_s():
    """CPU time all CPUs spent busy (user+nice+system+irq+softirq), in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / hz


def circuit_rss_kib(pids):
    """Resident circuit memory mapped by pids, each circuit counted once."""
    seen = {}
    for p in pids:
        try:
            with open("/proc/%d/smaps" % p) as f:
                inode = None
                for line in f:
                    head = line.split(None, 5)
                    if len(head) >= 5 and "-" in head[0] and ":" in head[3]:
                        inode = head[4] if len(head) == 6 and "circnet-circuit" in head[5] \
                            else None
                    elif inode and line.startswith("Rss:"):
                        seen[inode] = max(seen.get(inode, 0), int(line.split()[1]))
        except OSError:
            pass
    return sum(seen.values())


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


SKMEM = re.compile(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+),o(\d+),bl(\d+)")


def socket_kib(ns_prefix, port):
    """Kernel buffer memory (receive, send queue, forward alloc) of TCP sockets on port."""
    out = subprocess.run(ns_prefix + ["ss", "-tmnH", "state", "established",
                                      "( sport = :%d or dport = :%d )" % (port, port)],
                         capture_output=True, text=True).stdout
    return sum(sum(int(x) for x in m.groups()) for m in SKMEM.finditer(out)) / 1024


def unix_socket_kib(path):
    out = subprocess.run(["ss", "-xmnH"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        f = line.split()
        m = SKMEM.search(line)
        if len(f) >= 8 and m:
            rows.append((f[4], f[5], f[7], sum(int(x) for x in m.groups())))
    ours = {r[1] for r in rows if r[0] == path}
    peers = {r[2] for r in rows if r[0] == path}
    return sum(r[3] for r in rows if r[1] in ours or r[1] in peers) / 1024


# --- the lab: three networks, the servers on each ---------------------------------

class Lab:
    def __init__(self, build, tag):
        self.build = build
        self.op = os.path.join(build, "operator", "circnet-operator")
        self.ctl = os.path.join(build, "operator", "circnetctl")
        self.circnet = os.path.join(build, "guest", "circnet")
        for exe in (self.op, self.ctl, self.circnet):
            if not os.access(exe, os.X_OK):
                raise BenchError("%s is not built" % exe)
        self.dir = tempfile.mkdtemp(prefix="circnet-apps.")
        os.chmod(self.dir, 0o755)
        self.run_dir = os.path.join(self.dir, "run")
        self.tag = tag
        self.net = "10.217.%d" % (tag % 200 + 20)
        self.nss, self.nsc, self.br = "cnba%ds" % tag, "cnba%dc" % tag, "cnba%db" % tag
        self.procs = []          # everything we started
        self.servers = {}        # (transport, service) -> Popen
        self.operator = None
        self.unix_sock = os.path.join(self.dir, "redis.sock")

    # setup / teardown
    def sh(self, *argv):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def spawn(self, argv, log, env=None):
        with open(log, "w") as out:
            p = subprocess.Popen(["timeout", "3600"] + argv, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
        p.log = log
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
        for ns in (self.nss, self.nsc):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", self.br], stderr=subprocess.DEVNULL)
        if os.environ.get("CIRCNET_KEEP_TEST_DIR"):
            say("kept %s (CIRCNET_KEEP_TEST_DIR)" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_operator(self):
        conf = os.path.join(self.dir, "circnet.conf")
        with open(conf, "w") as f:
            f.write("""run-dir %s
guest web {
    address 10.219.0.2
    listen tcp 80
}
guest cache {
    address 10.219.0.3
    listen any 6379,6380,5201,11111,11112
}
guest client {
    address 10.219.0.10
}
allow tcp from client to web port 80
allow any from client to cache port 6379,6380,5201,11111,11112
""" % self.run_dir)
        self.operator = self.spawn([self.op, "--config", conf], self.log("operator"))
        self.wait_for(lambda: subprocess.run([self.ctl, "--run-dir", self.run_dir, "status"],
                                             capture_output=True).returncode == 0,
                      "the operator to start")

    def start_bridge(self):
        self.sh("ip", "link", "add", self.br, "type", "bridge")
        self.sh("ip", "link", "set", self.br, "up")
        for side, ns in (("s", self.nss), ("c", self.nsc)):
            host, inner = "%s%sh" % (self.br, side), "%s%sn" % (self.br, side)
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
            self.sh("ip", "link", "set", host, "master", self.br, "up")
            self.sh("ip", "link", "set", inner, "netns", ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sh("ip", "-n", ns, "link", "set", inner, "up")
            self.sh("ip", "-n", ns, "addr", "add",
                    "%s.%d/24" % (self.net, 2 if side == "s" else 3), "dev", inner)

    def log(self, name):
        return os.path.join(self.dir, name + ".log")

    @staticmethod
    def wait_for(cond, what, secs=10):
        end = time.time() + secs
        while time.time() < end:
            if cond():
                return
            time.sleep(0.1)
        raise BenchError("timed out waiting for " + what)

    def www(self):
        d = os.path.join(self.dir, "www")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("hello from a guest\n")
        with open(os.path.join(d, "1m.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        with open(os.path.join(d, "1m.bin"), "rb") as f:
            self.file_sha = hashlib.sha256(f.read()).hexdigest()
        return d

    def nginx_conf(self, name, listen, root):
        d = os.path.join(self.dir, "nginx-" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("""worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{ listen {listen}; root {root}; }}
}}
""".format(d=d, listen=listen, root=root))
        return os.path.join(d, "nginx.conf")

    def start_servers(self):
        root = self.www()
        redis = ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
        guest = lambda g: [self.circnet, "run", "--run-dir", self.run_dir, "--guest", g, "--"]
        spin = ["env", "CIRCNET_SPIN_US=" + SPIN_US]
        s = self.servers
        # circuits
        s["circuit", "nginx"] = self.spawn(guest("web") + [
            "nginx", "-c", self.nginx_conf("circuit", "80", root), "-g", "daemon off;"],
            self.log("nginx-circuit"))
        s["circuit", "redis"] = self.spawn(guest("cache") + redis + ["--port", "6379"],
                                           self.log("redis-circuit"))
        s["circuit-spin", "redis"] = self.spawn(guest("cache") + spin + redis +
                                                ["--port", "6380"], self.log("redis-spin"))
        s["circuit", "iperf3"] = self.spawn(guest("cache") + ["iperf3", "-s", "-p", "5201"],
                                            self.log("iperf3-circuit"))
        s["circuit", "sockperf"] = self.spawn(guest("cache") + [
            "sockperf", "server", "--tcp", "-i", "0.0.0.0", "-p", "11111"],
            self.log("sockperf-circuit"))
        s["circuit-spin", "sockperf"] = self.spawn(guest("cache") + spin + [
            "sockperf", "server", "--tcp", "-i", "0.0.0.0", "-p", "11112"],
            self.log("sockperf-spin"))
        # kernel TCP, on loopback and behind the bridge
        for t, pre, addr in (("tcp-loopback", [], "127.0.0.1"),
                             ("veth-bridge", ["ip", "netns", "exec", self.nss], self.net + ".2")):
            s[t, "nginx"] = self.spawn(pre + ["nginx", "-c", self.nginx_conf(t, addr + ":8480", root),
                                              "-g", "daemon off;"], self.log("nginx-" + t))
            s[t, "redis"] = self.spawn(pre + redis + ["--bind", addr, "--port", "6480"],
                                       self.log("redis-" + t))
            s[t, "iperf3"] = self.spawn(pre + ["iperf3", "-s", "-B", addr, "-p", "5480"],
                                        self.log("iperf3-" + t))
            s[t, "sockperf"] = self.spawn(pre + ["sockperf", "server", "--tcp", "-i", addr,
                                                 "-p", "11480"], self.log("sockperf-" + t))
        # AF_UNIX: of these programs only redis has it on both ends
        s["af-unix", "redis"] = self.spawn(redis + ["--port", "0", "--unixsocket", self.unix_sock,
                                                    "--unixsocketperm", "777"],
                                           self.log("redis-af-unix"))
        self.wait_for(self.servers_ready, "the servers to listen", 20)

    def servers_ready(self):
        for (t, svc), p in self.servers.items():
            if p.poll() is not None:
                with open(p.log) as f:
                    tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
                raise BenchError("%s server on %s exited: %s" % (svc, t, tail[0]))
        listeners = subprocess.run([self.ctl, "--run-dir", self.run_dir, "listeners"],
                                   capture_output=True, text=True).stdout
        need = [":80 ", ":6379 ", ":6380 ", ":5201 ", ":11111 ", ":11112 "]
        if not all(n in listeners for n in need):
            return False
        def kernel_listening(pre, port):
            out = subprocess.run(pre + ["ss", "-tlnH", "sport = :%d" % port],
                                 capture_output=True, text=True).stdout
            return out.strip() != ""
        for pre in ([], ["ip", "netns", "exec", self.nss]):
            if not all(kernel_listening(pre, p) for p in (8480, 6480, 5480, 11480)):
                return False
        return os.path.exists(self.unix_sock)

    # where a client runs and what it connects to
    def client_prefix(self, t):
        if t.startswith("circuit"):
            pre = [self.circnet, "run", "--run-dir", self.run_dir, "--guest", "client", "--"]
            return pre + (["env", "CIRCNET_SPIN_US=" + SPIN_US] if t == "circuit-spin" else [])
        if t == "veth-bridge":
            return ["ip", "netns", "exec", self.nsc]
        return []

    def target(self, t, svc):
        host = {"circuit": "10.219.0.3", "circuit-spin": "10.219.0.3",
                "tcp-loopback": "127.0.0.1", "veth-bridge": self.net + ".2"}[t]
        if t.startswith("circuit"):
            port = {"nginx": 80, "redis": 6379, "iperf3": 5201, "sockperf": 11111}[svc]
            if t == "circuit-spin":
                port += 1
            if svc == "nginx":
                host = "10.219.0.2"
        else:
            port = {"nginx": 8480, "redis": 6480, "iperf3": 5480, "sockperf": 11480}[svc]
        return host, port

    def proxy_pids(self, t):
        return []  # no proxy stack between these clients and servers

    def server_pids(self, t, svc):
        kids = children_map()
        pids = tree(self.servers[t, svc].pid, kids)
        if t.startswith("circuit"):
            pids += [self.operator.pid]
        return pids

    def net_memory_kib(self, t, svc, client_pid):
        if t.startswith("circuit"):
            kids = children_map()
            return circuit_rss_kib(tree(self.servers[t, svc].pid, kids) + tree(client_pid, kids))
        if t == "af-unix":
            return unix_socket_kib(self.unix_sock)
        port = self.target(t, svc)[1]
        if t == "veth-bridge":
            return sum(socket_kib(["ip", "netns", "exec", ns], port) for ns in (self.nss, self.nsc))
        return socket_kib([], port)


# --- running one client, with its CPU and memory ------------------------------------

class Run:
    """One client run: its output, wall time, and the CPU and memory it cost."""

    def __init__(self, lab, t, svc, argv, limit, mem_at=None):
        self.lab, self.t, self.svc = lab, t, svc
        out = tempfile.TemporaryFile(mode="w+")
        err = tempfile.TemporaryFile(mode="w+")
        srv = lab.server_pids(t, svc)
        proxy = lab.proxy_pids(t)
        srv0, host0, t0 = cpu_ns(srv), host_busy_s(), time.time()
        proxy0 = cpu_ns(proxy)
        p = subprocess.Popen(["timeout", str(limit)] + lab.client_prefix(t) + argv,
                             stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.mem_kib = None
        sampler = None
        if mem_at is not None:
            def sample():
                time.sleep(mem_at)
                if p.poll() is None:
                    self.mem_kib = lab.net_memory_kib(t, svc, p.pid)
            sampler = threading.Thread(target=sample)
            sampler.start()
        # wait4 gives the client tree's rusage (timeout, circnet run and the
        # client are each waited by their parent, so their times add up)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.wall = time.time() - t0
        self.host_cpu = host_busy_s() - host0
        self.server_cpu = (cpu_ns(srv) - srv0) / 1e9
        self.proxy_cpu = (cpu_ns(proxy) - proxy0) / 1e9 if proxy else None
        self.client_cpu = ru.ru_utime + ru.ru_stime
        if sampler:
            sampler.join()
        out.seek(0)
        err.seek(0)
        self.json = out.read()
        err = err.read()
        # text tools: what they printed anywhere, colour codes dropped
        self.out = re.sub(r"\x1b\[[0-9;]*m", "", self.json + err)
        self.rc = p.returncode
        if self.rc != 0:
            raise BenchError("%s client on %s exited %d: %s" %
                             (svc, t, self.rc, self.out.strip()[-300:]))


# --- the workloads ------------------------------------------------------------------

class Cell:
    """One workload: how to run it, on which transports, how to read its figure."""

    def __init__(self, group, svc, size, unit, transports, fn, per, demo=False, mem=False,
                 sweep=None):
        self.group, self.svc, self.size, self.unit = group, svc, size, unit
        self.transports, self.fn, self.per = transports, fn, per
        self.demo, self.mem, self.sweep = demo, mem, sweep


TCP3 = ("circuit", "tcp-loopback", "veth-bridge")


class ProxyLab(Lab):
    """--proxy: a guest reaches a remote host (a network namespace) through the
    DPDK dataplane (net_tap into the remote, lwIP), through the kernel-socket
    dataplane (a veth pair into the remote), and, as the baseline, a client
    namespace talks to the remote over a plain veth pair. Servers run once, in
    the remote, on every address."""

    TRANSPORTS = ("dpdk-proxy", "kernel-proxy", "veth-direct")

    def __init__(self, build, tag):
        super().__init__(build, tag)
        self.dp = os.path.join(build, "dataplane", "circnet-dataplane")
        x = tag % 200 + 20
        self.nets = {"dpdk-proxy": "10.216.%d" % x, "kernel-proxy": "10.215.%d" % x,
                     "veth-direct": "10.214.%d" % x}
        self.nsr, self.nsc = "cnbp%dr" % tag, "cnbp%dc" % tag
        self.nss = self.nsr
        self.tap = "cnbp%dt" % tag
        self.vk, self.vd = "cnbp%dk" % tag, "cnbp%dd" % tag
        self.run_dirs = {t: os.path.join(self.dir, "run-" + t) for t in self.TRANSPORTS[:2]}
        self.operators, self.dataplanes = {}, {}

    def close(self):
        super().close()  # the namespaces (nss is the remote) go there
        subprocess.run(["ip", "link", "del", self.vk], stderr=subprocess.DEVNULL)

    def start_operator(self):
        for t, run in self.run_dirs.items():
            conf = os.path.join(self.dir, "circnet-%s.conf" % t)
            with open(conf, "w") as f:
                f.write("run-dir %s\nguest client {\n    address 10.219.0.10\n}\n"
                        "proxy tcp from client to %s.0/24\n" % (run, self.nets[t]))
            self.operators[t] = self.spawn([self.op, "--config", conf], self.log("operator-" + t))
            self.wait_for(lambda: subprocess.run([self.ctl, "--run-dir", run, "status"],
                                                 capture_output=True).returncode == 0,
                          "the %s operator to start" % t)
        self.operator = self.operators["dpdk-proxy"]

    def start_bridge(self):
        """The remote, its veth to the host (kernel proxy) and to a client namespace."""
        r, c = self.nsr, self.nsc
        self.sh("ip", "netns", "add", r)
        self.sh("ip", "netns", "add", c)
        self.sh("ip", "-n", r, "link", "set", "lo", "up")
        self.sh("ip", "-n", c, "link", "set", "lo", "up")
        k, d = self.nets["kernel-proxy"], self.nets["veth-direct"]
        self.sh("ip", "link", "add", self.vk, "type", "veth", "peer", "name", self.vk + "r")
        self.sh("ip", "link", "set", self.vk + "r", "netns", r)
        self.sh("ip", "addr", "add", k + ".1/24", "dev", self.vk)
        self.sh("ip", "link", "set", self.vk, "up")
        self.sh("ip", "-n", r, "addr", "add", k + ".2/24", "dev", self.vk + "r")
        self.sh("ip", "-n", r, "link", "set", self.vk + "r", "up")
        self.sh("ip", "-n", c, "link", "add", self.vd, "type", "veth", "peer", "name",
                self.vd + "r")
        self.sh("ip", "-n", c, "link", "set", self.vd + "r", "netns", r)
        self.sh("ip", "-n", c, "addr", "add", d + ".1/24", "dev", self.vd)
        self.sh("ip", "-n", c, "link", "set", self.vd, "up")
        self.sh("ip", "-n", r, "addr", "add", d + ".2/24", "dev", self.vd + "r")
        self.sh("ip", "-n", r, "link", "set", self.vd + "r", "up")

    def start_dataplanes(self):
        cores = "0-1" if (os.cpu_count() or 1) > 1 else "0"
        run = self.run_dirs["dpdk-proxy"]
        self.dataplanes["dpdk-proxy"] = self.spawn(
            ["ip", "netns", "exec", self.nsr, self.dp, "--backend", "dpdk", "-l", cores,
             "--no-huge", "-m", "256", "--no-pci", "--file-prefix", "cnbp%d" % self.tag,
             "--vdev=net_tap0,iface=" + self.tap, "--", "--ip",
             self.nets["dpdk-proxy"] + ".2/24", "--run-dir", run, "--idle-sleep", "20"] +
            (["--log-level", "debug"] if os.environ.get("CIRCNET_DEBUG") else []),
            self.log("dataplane-dpdk"))
        self.dataplanes["kernel-proxy"] = self.spawn(
            [self.dp, "--run-dir", self.run_dirs["kernel-proxy"], "--threads", "1"],
            self.log("dataplane-kernel"))
        def attached(t):
            out = subprocess.run([self.ctl, "--run-dir", self.run_dirs[t], "proxy", "--json"],
                                 capture_output=True, text=True).stdout
            return '"operator_sessions":0' not in out and '"operator_sessions"' in out
        for t in self.run_dirs:
            if self.dataplanes[t].poll() is not None:
                raise BenchError("the %s dataplane exited (log %s)" % (t, self.dataplanes[t].log))
            self.wait_for(lambda: attached(t), "the %s dataplane to attach" % t, 20)
        self.sh("ip", "-n", self.nsr, "addr", "add", self.nets["dpdk-proxy"] + ".1/24",
                "dev", self.tap)
        self.sh("ip", "-n", self.nsr, "link", "set", self.tap, "up")

    def start_servers(self):
        self.start_dataplanes()
        root = self.www()
        pre = ["ip", "netns", "exec", self.nsr]
        nginx = self.spawn(pre + ["nginx", "-c", self.nginx_conf("remote", "8480", root),
                                  "-g", "daemon off;"], self.log("nginx-remote"))
        iperf = self.spawn(pre + ["iperf3", "-s", "-p", "5480"], self.log("iperf3-remote"))
        for t in self.TRANSPORTS:
            self.servers[t, "nginx"], self.servers[t, "iperf3"] = nginx, iperf
        self.wait_for(self.servers_ready, "the servers to listen", 20)

    def servers_ready(self):
        for p in list(self.servers.values()) + list(self.dataplanes.values()):
            if p.poll() is not None:
                raise BenchError("%s exited (log %s)" % (p.args[1:4], p.log))
        out = subprocess.run(["ip", "netns", "exec", self.nsr, "ss", "-tlnH"],
                             capture_output=True, text=True).stdout
        return ":8480 " in out and ":5480 " in out

    def client_prefix(self, t):
        if t == "veth-direct":
            return ["ip", "netns", "exec", self.nsc]
        return [self.circnet, "run", "--run-dir", self.run_dirs[t], "--guest", "client", "--"]

    def target(self, t, svc):
        host = self.nets[t] + (".2" if t == "veth-direct" else ".1" if t == "dpdk-proxy" else ".2")
        return host, {"nginx": 8480, "iperf3": 5480}[svc]

    def server_pids(self, t, svc):
        kids = children_map()
        pids = tree(self.servers[t, svc].pid, kids)
        if t in self.dataplanes:
            pids += self.proxy_pids(t) + [self.operators[t].pid]
        return pids

    def proxy_pids(self, t):
        return tree(self.dataplanes[t].pid, children_map()) if t in self.dataplanes else []

    def net_memory_kib(self, t, svc, client_pid):
        return None


def wrk(lab, t, secs, path, conns, close, mem):
    host, port = lab.target(t, "nginx")
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    r = Run(lab, t, "nginx", argv + ["http://%s:%d%s" % (host, port, path)], secs + 60,
            secs / 2 if mem else None)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", r.out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", r.out)
    xfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", r.out)
    if not (m and rate and xfer):
        raise BenchError("wrk on %s printed no figures: %s" % (t, r.out[-300:]))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r.out)
    if bad:
        raise BenchError("wrk on %s: %s responses were not 200" % (t, bad.group(1)))
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", r.out)
    if errs and int(errs.group(1)) + int(errs.group(3)) + int(errs.group(4)):
        raise BenchError("wrk on %s: %s" % (t, errs.group(0)))
    reqs = int(m.group(1))
    if reqs <= 0:
        raise BenchError("wrk on %s completed no request" % t)
    mult = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    read = re.search(r"([\d.]+)([KMG]?B) read", r.out)
    r.bytes = float(read.group(1)) * mult[read.group(2)] if read else 0
    return r, float(rate.group(1)), reqs, float(xfer.group(1)) * mult[xfer.group(2)] * 8 / 1e9


def nginx_rate(close):
    def fn(lab, t, secs, mem):
        r, rate, reqs, _ = wrk(lab, t, secs, "/index.html", 16, close, mem)
        return r, rate, reqs
    return fn


def nginx_gbps(close):
    def fn(lab, t, secs, mem):
        r, _, reqs, gbps = wrk(lab, t, secs, "/1m.bin", 4, close, mem)
        return r, gbps, r.bytes or gbps * 1e9 / 8 * r.wall
    return fn


def redis(test, pipeline, clients=20):
    def fn(lab, t, secs, mem):
        n = secs * (150000 if pipeline == 1 else 1000000)
        if t == "af-unix":
            where = ["-s", lab.unix_sock]
        else:
            host, port = lab.target(t, "redis")
            where = ["-h", host, "-p", str(port)]
        r = Run(lab, t, "redis", ["redis-benchmark"] + where +
                ["-t", test, "-n", str(n), "-c", str(clients), "-P", str(pipeline), "-q"],
                secs * 10 + 60, 0.3 if mem else None)
        m = re.findall(r"%s: ([\d.]+) requests per second" % test.upper(), r.out.replace("\r", "\n"))
        if not m:
            raise BenchError("redis-benchmark on %s printed no figure: %s" % (t, r.out[-300:]))
        return r, float(m[-1]), n
    return fn


def iperf3(streams=1, length=None, udp=False, reverse=False):
    def fn(lab, t, secs, mem):
        host, port = lab.target(t, "iperf3")
        argv = ["iperf3", "-c", host, "-p", str(port), "-t", str(secs), "-J"]
        if reverse:
            argv += ["-R"]
        if streams > 1:
            argv += ["-P", str(streams)]
        if length:
            argv += ["-l", str(length)]
        if udp:
            argv += ["-u", "-b", "0"]
        r = Run(lab, t, "iperf3", argv, secs + 60, secs / 2 if mem else None)
        try:
            end = json.loads(r.json)["end"]
            s = end["sum"] if udp else end["sum_received"]
            gbps, nbytes = s["bits_per_second"] / 1e9, s["bytes"]
        except (ValueError, KeyError) as e:
            raise BenchError("iperf3 on %s: no result (%s): %s" % (t, e, r.out[-300:]))
        if nbytes <= 0:
            raise BenchError("iperf3 on %s moved no byte" % t)
        if udp:
            # goodput: what arrived, not what was sent
            gbps *= 1 - s["lost_percent"] / 100
            nbytes *= 1 - s["lost_percent"] / 100
            r.loss = s["lost_percent"]
        return r, gbps, nbytes
    return fn


def sockperf(pct):
    def fn(lab, t, secs, mem):
        host, port = lab.target(t, "sockperf")
        r = Run(lab, t, "sockperf", ["sockperf", "ping-pong", "--tcp", "-i", host, "-p", str(port),
                                     "-t", str(secs), "-m", "64"], secs + 60)
        got = {}
        for p in ("50.000", "99.000", "99.900"):
            m = re.search(r"percentile %s =\s+([\d.]+)" % p, r.out)
            if not m:
                raise BenchError("sockperf on %s printed no p%s: %s" % (t, p, r.out[-300:]))
            got[p] = float(m.group(1))
        n = re.search(r"ReceivedMessages=(\d+)", r.out)
        if not n or int(n.group(1)) <= 0:
            raise BenchError("sockperf on %s: no message came back" % t)
        r.percentiles = got
        return r, got[pct], int(n.group(1))
    return fn


def cells():
    c = []
    add = lambda *a, **k: c.append(Cell(*a, **k))
    add("nginx-small-keepalive", "nginx", 19, "req/s", TCP3, nginx_rate(False), "req",
        demo=True, mem=True)
    add("nginx-small-setup", "nginx", 19, "req/s", TCP3, nginx_rate(True), "req")
    add("nginx-1MiB-keepalive", "nginx", 1 << 20, "Gbit/s", TCP3, nginx_gbps(False), "byte",
        demo=True, mem=True)
    add("nginx-1MiB-setup", "nginx", 1 << 20, "Gbit/s", TCP3, nginx_gbps(True), "byte")
    redis_t = TCP3 + ("circuit-spin", "af-unix")
    add("redis-GET", "redis", 3, "req/s", redis_t, redis("get", 1), "req", demo=True, mem=True)
    add("redis-SET", "redis", 3, "req/s", redis_t, redis("set", 1), "req")
    add("redis-GET-pipelined-16", "redis", 3, "req/s", TCP3 + ("af-unix",), redis("get", 16),
        "req", demo=True)
    add("redis-SET-pipelined-16", "redis", 3, "req/s", TCP3 + ("af-unix",), redis("set", 16),
        "req")
    add("iperf3-tcp-1", "iperf3", 131072, "Gbit/s", TCP3, iperf3(1), "byte", demo=True, mem=True)
    add("iperf3-tcp-4", "iperf3", 131072, "Gbit/s", TCP3, iperf3(4), "byte")
    add("iperf3-udp", "iperf3", 1400, "Gbit/s", TCP3, iperf3(1, 1400, True), "byte")
    for size in (1024, 4096, 16384, 65536, 262144):
        add("iperf3-tcp-size", "iperf3", size, "Gbit/s", TCP3, iperf3(1, size), "byte",
            sweep="tcp")
    for size in (8192, 32000):
        add("iperf3-udp-size", "iperf3", size, "Gbit/s", TCP3, iperf3(1, size, True), "byte",
            sweep="udp")
    lat_t = TCP3 + ("circuit-spin",)
    add("sockperf-p50", "sockperf", 64, "us", lat_t, sockperf("50.000"), "req", demo=True)
    return c


P3 = ProxyLab.TRANSPORTS


def proxy_cells():
    c = []
    add = lambda *a, **k: c.append(Cell(*a, **k))
    add("iperf3-up", "iperf3", 131072, "Gbit/s", P3, iperf3(1), "byte", demo=True)
    add("iperf3-down", "iperf3", 131072, "Gbit/s", P3, iperf3(1, reverse=True), "byte",
        demo=True)
    add("iperf3-up-4", "iperf3", 131072, "Gbit/s", P3, iperf3(4), "byte")
    add("nginx-small-keepalive", "nginx", 19, "req/s", P3, nginx_rate(False), "req", demo=True)
    add("nginx-small-setup", "nginx", 19, "req/s", P3, nginx_rate(True), "req")
    add("nginx-1MiB-keepalive", "nginx", 1 << 20, "Gbit/s", P3, nginx_gbps(False), "byte",
        demo=True)
    return c


# --- results --------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.samples = {}   # (group, transport, size, unit) -> [values]
        self.order = []

    def add(self, group, t, size, unit, value):
        k = (group, t, size, unit)
        if k not in self.samples:
            self.samples[k] = []
            self.order.append(k)
        self.samples[k].append(value)

    def rows(self):
        med = {k: statistics.median(v) for k, v in self.samples.items()}
        out = []
        for k in self.order:
            group, t, size, unit = k
            s = self.samples[k]
            ratios = {}
            for b in BASELINES:
                bk = (group, b, size, unit)
                if b != t and bk in med and med[bk] > 0:
                    ratios[b] = round(med[k] / med[bk], 6)
            out.append({"name": "%s/%s/%d" % (group, t, size), "group": group, "transport": t,
                        "size": size, "unit": unit, "value": round(med[k], 6), "min": min(s),
                        "max": max(s), "repetitions": len(s),
                        "higher_is_better": unit in ("req/s", "Gbit/s"),
                        "samples": s, "ratios": ratios})
        return out


def write_json(rows, path, config, benchmark="apps"):
    doc = {"schema": "circnet-bench/v1", "benchmark": benchmark,
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "host": {"kernel": platform.release(), "machine": platform.machine(),
                    "cpus": os.cpu_count()},
           "config": config, "results": rows}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def write_csv(rows, path, benchmark="apps"):
    with open(path, "w") as f:
        f.write("benchmark,group,transport,size,unit,median,min,max,repetitions,"
                "higher_is_better," + ",".join("ratio_" + b for b in BASELINES) + "\n")
        for r in rows:
            f.write("%s,%s,%s,%d,%s,%.6g,%.6g,%.6g,%d,%d,%s\n" % (
                benchmark, r["group"], r["transport"], r["size"], r["unit"], r["value"], r["min"], r["max"],
                r["repetitions"], r["higher_is_better"],
                ",".join("%.6g" % r["ratios"][b] if b in r["ratios"] else "" for b in BASELINES)))


def print_table(rows, config, brief=False):
    """brief: the figures only, not their CPU and memory rows (those stay in the files)."""
    if brief:
        rows = [r for r in rows if "/" not in r["group"] and not r["group"].endswith("-loss")]
    print("bench-apps: %s" % config)
    heads = [BASELINE_LABELS.get(b, b) for b in BASELINES]
    print(("%-24s %-13s %7s %12s %-10s %7s" + " %12s" * len(heads)) % (
        ("workload", "transport", "size", "median", "unit", "spread") + tuple(heads)))
    for r in rows:
        spread = (r["max"] - r["min"]) / r["value"] * 100 if r["value"] else 0
        ratio = lambda b: ("%.2fx" % r["ratios"][b]) if b in r["ratios"] else "-"
        size = r["size"]
        size = "%dK" % (size >> 10) if size >= 1024 and size % 1024 == 0 else str(size)
        print(("%-24s %-13s %7s %12.4g %-10s %6.0f%%" + " %12s" * len(BASELINES)) % (
            (r["group"], r["transport"], size, r["value"], r["unit"], spread) +
            tuple(ratio(b) for b in BASELINES)))
    print("ratios: median / the baseline's median, same run (for us and cpu rows lower is "
          "better); spread = (max-min)/median")


def plots(rows, outdir):
    """goodput vs message size (TCP, UDP), latency percentiles, ratios: PNG via gnuplot."""
    if not shutil.which("gnuplot"):
        say("gnuplot missing (scripts/deps.sh): no plots")
        return []
    made = []
    data = os.path.join(outdir, "plot-data")
    os.makedirs(data, exist_ok=True)
    ts = ["circuit", "tcp-loopback", "veth-bridge"]
    for sweep, title in (("iperf3-tcp-size", "iperf3 TCP goodput vs write size"),
                         ("iperf3-udp-size", "iperf3 UDP goodput vs datagram size")):
        pts = {t: sorted((r["size"], r["value"], r["min"], r["max"]) for r in rows
                         if r["group"] == sweep and r["transport"] == t) for t in ts}
        if not any(pts.values()):
            continue
        for t in ts:
            with open(os.path.join(data, "%s-%s.dat" % (sweep, t)), "w") as f:
                for p in pts[t]:
                    f.write("%d %g %g %g\n" % p)
        png = os.path.join(outdir, "%s.png" % sweep)
        gp = ["set terminal pngcairo size 900,560", "set output '%s'" % png,
              "set title '%s (median, min-max)'" % title, "set logscale x 2",
              "set xlabel 'message size (bytes)'", "set ylabel 'Gbit/s'", "set grid",
              "set key top left", "set yrange [0:*]",
              "plot " + ", ".join("'%s/%s-%s.dat' using 1:2:3:4 with yerrorlines lw 2 title '%s'"
                                  % (data, sweep, t, t) for t in ts)]
        subprocess.run(["gnuplot"], input="\n".join(gp), text=True, check=True)
        made.append(png)
    lat = [r for r in rows if r["group"].startswith("sockperf-p")]
    if lat:
        lts = [t for t in ("circuit", "circuit-spin", "tcp-loopback", "veth-bridge")
               if any(r["transport"] == t for r in lat)]
        with open(os.path.join(data, "latency.dat"), "w") as f:
            for g in ("sockperf-p50", "sockperf-p99", "sockperf-p99.9"):
                vals = {r["transport"]: r["value"] for r in lat if r["group"] == g}
                f.write("%s %s\n" % (g.split("-")[1], " ".join("%g" % vals.get(t, 0) for t in lts)))
        png = os.path.join(outdir, "latency.png")
        gp = ["set terminal pngcairo size 900,560", "set output '%s'" % png,
              "set title 'sockperf TCP ping-pong, 64 bytes: half round trip (median of reps)'",
              "set style data histogram", "set style histogram cluster gap 1",
              "set style fill solid 0.8 border -1", "set ylabel 'microseconds'", "set grid y",
              "set yrange [0:*]", "set key top left",
              "plot " + ", ".join("'%s/latency.dat' using %d:xtic(1) title '%s'" % (data, i + 2, t)
                                  for i, t in enumerate(lts))]
        subprocess.run(["gnuplot"], input="\n".join(gp), text=True, check=True)
        made.append(png)
    main = [r for r in rows if r["transport"] in ("circuit", "circuit-spin") and
            "tcp-loopback" in r["ratios"] and r["unit"] in ("req/s", "Gbit/s", "us") and
            "-size" not in r["group"]]
    if main:
        with open(os.path.join(data, "ratios.dat"), "w") as f:
            for r in main:
                label = r["group"] + (" (busy-poll)" if r["transport"] == "circuit-spin" else "")
                f.write('"%s" %g %g\n' % (label, r["ratios"]["tcp-loopback"],
                                          r["ratios"].get("veth-bridge", 0)))
        png = os.path.join(outdir, "ratios.png")
        gp = ["set terminal pngcairo size 1200,650", "set output '%s'" % png,
              "set title 'circuits / baseline, same run (latency: lower is better)'",
              "set style data histogram", "set style histogram cluster gap 1",
              "set style fill solid 0.8 border -1", "set xtics rotate by -35",
              "set grid y", "set yrange [0:*]", "set ylabel 'ratio'",
              "plot '%s/ratios.dat' using 2:xtic(1) title 'vs TCP loopback', "
              "'' using 3 title 'vs veth bridge', 1 with lines lt -1 notitle" % data]
        subprocess.run(["gnuplot"], input="\n".join(gp), text=True, check=True)
        made.append(png)
    return made


# --- content checks (smoke) -------------------------------------------------------------

def check_content(lab, proxy=False):
    """What crosses each transport arrives intact: the 1 MiB file, a redis value."""
    for t in (P3 if proxy else TCP3):
        host, port = lab.target(t, "nginx")
        got = subprocess.run(["timeout", "60"] + lab.client_prefix(t) +
                             ["curl", "-sf", "http://%s:%d/1m.bin" % (host, port)],
                             capture_output=True)
        if got.returncode or hashlib.sha256(got.stdout).hexdigest() != lab.file_sha:
            raise BenchError("nginx on %s: the 1 MiB file arrived damaged" % t)
    if proxy:
        say("content check: the 1 MiB file (sha256) through both dataplanes and the veth: intact")
        return
    value = hashlib.sha256(os.urandom(16)).hexdigest()
    for t in TCP3 + ("circuit-spin", "af-unix"):
        if t == "af-unix":
            where = ["-s", lab.unix_sock]
        else:
            host, port = lab.target(t, "redis")
            where = ["-h", host, "-p", str(port)]
        cli = ["redis-cli"] + where
        out = subprocess.run(["timeout", "30"] + lab.client_prefix(t) +
                             ["sh", "-c", "%s set k %s >/dev/null && %s get k" %
                              (" ".join(cli), value, " ".join(cli))],
                             capture_output=True, text=True).stdout.strip()
        if out != value:
            raise BenchError("redis on %s: got %r back, not the value set" % (t, out))
    say("content checks: 1 MiB file (sha256) over 3 transports, a redis value over 5: intact")


def check_no_circuit_left(lab):
    """Every client has ended: the operator must hold no circuit (none leaked)."""
    deadline = time.time() + 5
    while True:
        st = subprocess.run([lab.ctl, "--run-dir", lab.run_dir, "status"],
                            capture_output=True, text=True).stdout
        m = re.search(r"^circuits\s+(\d+)", st, re.M)
        if not m:
            raise BenchError("circnetctl status shows no circuit count: %s" % st[-200:])
        if int(m.group(1)) == 0:
            say("no circuit left open after the clients ended")
            return
        if time.time() > deadline:
            circs = subprocess.run([lab.ctl, "--run-dir", lab.run_dir, "circuits"],
                                   capture_output=True, text=True).stdout
            raise BenchError("%s circuits still open after every client ended:\n%s" %
                             (m.group(1), circs[:3000]))
        time.sleep(0.2)


# --- main -------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="every cell once, 1 s, checked")
    mode.add_argument("--quick", action="store_true", help="1 repetition of 2 s")
    ap.add_argument("--demo", action="store_true", help="only the demo's cells")
    ap.add_argument("--proxy", action="store_true",
                    help="guest -> remote host through the DPDK and the kernel dataplanes, "
                         "against a plain veth (results DIR/proxy.*)")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--secs", type=int)
    ap.add_argument("--only", help="comma-separated workload name prefixes")
    ap.add_argument("--transports", help="comma-separated transports (default: all)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--name", default="apps", help="results file stem (default apps)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("build")
    a = ap.parse_args()
    secs = a.secs or (1 if a.smoke or (a.quick and a.demo) else 2)
    reps = a.reps or (1 if a.smoke or a.quick else 3)
    if not 1 <= reps <= 32 or not 1 <= secs <= 60:
        ap.error("--reps must be 1..32 and --secs 1..60")
    if os.geteuid() != 0:
        print("bench-apps: needs root (network namespaces): skipped")
        return 77 if a.smoke else 0
    for tool in ("nginx", "wrk", "redis-server", "redis-benchmark", "redis-cli", "iperf3",
                 "sockperf", "curl", "ip", "ss"):
        if not shutil.which(tool):
            print("bench-apps: %s missing (scripts/deps.sh)" % tool, file=sys.stderr)
            return 1
    global BASELINES
    if a.proxy:
        BASELINES = ("kernel-proxy", "veth-direct")
        if a.name == "apps":
            a.name = "proxy"
    todo = [c for c in (proxy_cells() if a.proxy else cells()) if (not a.demo or c.demo) and
            (not a.only or any(c.group.startswith(p) for p in a.only.split(",")))]
    if a.transports:
        keep = a.transports.split(",")
        for c in todo:
            c.transports = tuple(t for t in c.transports if t in keep)
        todo = [c for c in todo if c.transports]
    if not todo:
        ap.error("--only and --transports match no cell")
    os.makedirs(a.results, exist_ok=True)
    lab = (ProxyLab if a.proxy else Lab)(os.path.abspath(a.build), os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    res = Results()
    total = sum(len(c.transports) for c in todo) * reps
    done = 0
    try:
        if a.proxy:
            say("starting two operators, the DPDK and the kernel dataplanes, the remote host "
                "and its servers (nginx, iperf3)")
        else:
            say("starting the operator, the bridge and the servers (nginx, redis, iperf3, "
                "sockperf) on circuits, loopback, veth and AF_UNIX")
        lab.start_operator()
        lab.start_bridge()
        lab.start_servers()
        if a.smoke:
            check_content(lab, a.proxy)
        for rep in range(1, reps + 1):
            for c in todo:
                for t in c.transports:
                    done += 1
                    say("[%d/%d] rep %d/%d %s%s on %s" % (done, total, rep, reps, c.group,
                                                          " %d" % c.size if c.sweep else "", t))
                    run_cell(lab, res, c, t, secs)
        if not a.proxy:
            idle_memory(lab, res)
        if a.smoke and not a.proxy:
            check_no_circuit_left(lab)
    except BenchError as e:
        print("bench-apps: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        lab.close()
    rows = res.rows()
    config = "secs=%d reps=%d nginx-workers=2 wrk-conns=16/4 redis-clients=20 spin-us=%s%s" % (
        secs, reps, SPIN_US, " smoke" if a.smoke else "")
    if a.proxy:
        config = ("secs=%d reps=%d proxy: dpdk (net_tap, lwIP, 1 polling lcore, idle-sleep 20us)"
                  " vs kernel (1 thread) vs veth%s" % (secs, reps, " smoke" if a.smoke else ""))
    stem = os.path.join(a.results, a.name)
    write_json(rows, stem + ".json", config, "proxy" if a.proxy else "apps")
    write_csv(rows, stem + ".csv", "proxy" if a.proxy else "apps")
    print_table(rows, config, brief=a.demo)
    made = [] if a.no_plots or a.proxy else plots(rows, a.results)
    if a.smoke:
        return smoke_verdict(rows, todo, made, a.no_plots)
    say("figures in %s.{json,csv}%s" % (stem, "; plots: " + ", ".join(made) if made else ""))
    return 0


def run_cell(lab, res, c, t, secs):
    r, value, work = c.fn(lab, t, secs, c.mem)
    res.add(c.group, t, c.size, c.unit, value)
    if c.group == "sockperf-p50":
        res.add("sockperf-p99", t, c.size, "us", r.percentiles["99.000"])
        res.add("sockperf-p99.9", t, c.size, "us", r.percentiles["99.900"])
    if getattr(r, "loss", None) is not None:
        res.add(c.group + "-loss", t, c.size, "%", r.loss)
    if c.sweep:
        return
    # CPU per unit of work: per request in us, per GB moved in ms
    scale, unit = (1e6, "cpu-us/req") if c.per == "req" else (1e3 * 1e9, "cpu-ms/GB")
    for who, cpu in (("client", r.client_cpu), ("server", r.server_cpu), ("host", r.host_cpu),
                     ("proxy", r.proxy_cpu)):
        if cpu is not None:
            res.add("%s/cpu-%s" % (c.group, who), t, c.size, unit, cpu * scale / work)
    if r.mem_kib is not None:
        res.add(c.group + "/net-memory", t, c.size, "KiB", r.mem_kib)


def idle_memory(lab, res):
    """Each server's memory, idle after the runs (Pss of its process tree)."""
    kids = children_map()
    for (t, svc), p in sorted(lab.servers.items()):
        if t == "circuit-spin":
            continue
        res.add("idle-memory/" + svc, t, 0, "KiB", pss_kib(tree(p.pid, kids)))


def smoke_verdict(rows, todo, made, no_plots):
    want = {(c.group, t) for c in todo for t in c.transports}
    have = {(r["group"], r["transport"]) for r in rows if r["value"] > 0}
    missing = sorted(want - have)
    if missing:
        print("bench-apps smoke: no valid figure for %s" % missing, file=sys.stderr)
        return 1
    if not no_plots and made is not None and len(made) < 3 and want and \
            not all(t in ProxyLab.TRANSPORTS for _, t in want):
        print("bench-apps smoke: only %d plots were made" % len(made), file=sys.stderr)
        return 1
    for png in made:
        with open(png, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                print("bench-apps smoke: %s is not a PNG" % png, file=sys.stderr)
                return 1
    print("bench-apps smoke: %d cells, each a valid figure; %d plots" % (len(want), len(made)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
