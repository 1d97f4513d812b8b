#!/usr/bin/env python3
"""test/netpeers.py - the small network peers the proxy tests talk to.

Servers (run on the test's remote host, bounded by the caller's timeout):
  rst HOST PORT [BYTES]  send BYTES (1 MiB), then reset the connection (SO_LINGER 0)
  echo HOST PORT         echo every connection's bytes back (many at once)
  sink HOST PORT         read and drop everything, one connection at a time
  udp-echo HOST PORT     answer each datagram with "answer:" + it
  udp-from HOST PORT     answer each datagram with "<sender's address>:" + it
  tcpinfo-accept HOST PORT   accept one connection, print what TCP options the
                         kernel agreed on ("wscale:N sack:0|1 ts:0|1"; N: the peer's)
Clients (run in a guest):
  tcpinfo-connect HOST PORT  connect, print the same, close
  errno HOST PORT        connect; print ok or the errno's name
  read-reset HOST PORT [TRIES]  read until EOF or reset: ECONNRESET, "EOF N",
                         "damaged" or "connect ERRNO"; mixed outcomes are counted
  many HOST PORT N       N connections at once to an echo server, each sends
                         its own 600 bytes and reads them back: prints True
  send-until-error HOST PORT   send until a send fails: prints the errno's name
  udp-ask HOST PORT [N]  20 small queries and one N-byte datagram (30000) to a
                         udp-echo server: prints "ANSWERED LEN INTACT" ("20 30007 True")
"""
import errno
import selectors
import socket
import struct
import sys
import time


def listener(host, port, backlog=4):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def udp_bound(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    return s


def serve_rst(host, port, size):
    s = listener(host, port)
    while True:
        c, _ = s.accept()
        c.sendall(b"r" * size)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


def serve_echo(host, port):
    sel = selectors.DefaultSelector()
    ls = listener(host, port, 4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is ls:
                try:
                    c, _ = ls.accept()
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
                except BlockingIOError:
                    pass
                continue
            c = key.fileobj
            try:
                d = c.recv(65536)
            except ConnectionError:
                d = b""
            if d:
                c.setblocking(True)
                c.sendall(d)
                c.setblocking(False)
            else:
                sel.unregister(c)
                c.close()


def serve_sink(host, port):
    s = listener(host, port)
    while True:
        c, _ = s.accept()
        try:
            while c.recv(1 << 16):
                pass
        except OSError:
            pass
        c.close()


def send_until_error(host, port):
    s = socket.create_connection((host, port), timeout=60)
    s.settimeout(None)
    # the caller makes the remote go silent only once the connection stands
    sys.stderr.write("connected\n")
    sys.stderr.flush()
    chunk = b"s" * (1 << 16)
    try:
        while True:
            s.sendall(chunk)
    except OSError as e:
        print(errno.errorcode.get(e.errno, e.errno))


def serve_udp_echo(host, port):
    s = udp_bound(host, port)
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(b"answer:" + d, a)


def serve_udp_from(host, port):
    s = udp_bound(host, port)
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(a[0].encode() + b":" + d, a)


def udp_ask(host, port, size=30000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((host, port))
    ok = 0
    for i in range(20):
        q = b"query %d" % i
        s.send(q)
        ok += s.recv(65535) == b"answer:" + q
    big = (bytes(range(256)) * (size // 256 + 1))[:size]
    s.send(big)
    d = s.recv(65535)
    print(ok, len(d), d == b"answer:" + big)


def connect_errno(host, port):
    s = socket.socket()
    try:
        s.connect((host, port))
        print("ok")
    except OSError as e:
        print(errno.errorcode.get(e.errno, e.errno))


def tcp_options(s):
    """What this kernel agreed with the peer: the peer's window scale, SACK, timestamps."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    opts, scales = info[5], info[6]
    return "wscale:%d sack:%d ts:%d" % (scales & 15 if opts & 4 else -1, bool(opts & 2), bool(opts & 1))


def tcpinfo_accept(host, port):
    s = listener(host, port)
    c, _ = s.accept()
    print(tcp_options(c), flush=True)
    c.close()


def tcpinfo_connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    print(tcp_options(s))
    s.close()


def read_reset_once(host, port):
    try:
        s = socket.create_connection((host, port), timeout=30)
    except OSError as e:
        return "connect " + errno.errorcode.get(e.errno, str(e.errno))
    n = 0
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return "EOF %d" % n
            if b.strip(b"r"):
                return "damaged"
            n += len(b)
    except ConnectionResetError:
        return "ECONNRESET" if n > 0 else "no data"
    finally:
        s.close()


def read_reset(host, port, tries):
    """One outcome if every try agrees, else each outcome with its count."""
    seen = {}
    for _ in range(tries):
        r = read_reset_once(host, port)
        seen[r] = seen.get(r, 0) + 1
    if len(seen) == 1:
        print(next(iter(seen)))
    else:
        print(", ".join("%s x%d" % kv for kv in sorted(seen.items())))


def many(host, port, n):
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.time()
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, i)
    want = {i: (b"%06d" % i) * 100 for i in range(n)}
    got = {i: b"" for i in range(n)}
    done = 0
    while done < n and time.time() - t0 < 60:
        for key, ev in sel.select(5):
            s, i = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                s.sendall(want[i])
                sel.modify(s, selectors.EVENT_READ, i)
            else:
                got[i] += s.recv(65536)
                if len(got[i]) >= len(want[i]):
                    sel.unregister(s)
                    done += 1
    good = sum(got[i] == want[i] for i in range(n))
    print(n, done, good, "in %.1f s" % (time.time() - t0), file=sys.stderr)
    print(done == n and good == n)
    for s in socks:
        s.close()


def main(argv):
    modes = {
        "tcpinfo-accept": lambda a: tcpinfo_accept(a[0], int(a[1])),
        "tcpinfo-connect": lambda a: tcpinfo_connect(a[0], int(a[1])),
        "rst": lambda a: serve_rst(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 1 << 20),
        "echo": lambda a: serve_echo(a[0], int(a[1])),
        "sink": lambda a: serve_sink(a[0], int(a[1])),
        "udp-echo": lambda a: serve_udp_echo(a[0], int(a[1])),
        "udp-from": lambda a: serve_udp_from(a[0], int(a[1])),
        "udp-ask": lambda a: udp_ask(a[0], int(a[1]), *(int(x) for x in a[2:3])),
        "send-until-error": lambda a: send_until_error(a[0], int(a[1])),
        "errno": lambda a: connect_errno(a[0], int(a[1])),
        "read-reset": lambda a: read_reset(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 1),
        "many": lambda a: many(a[0], int(a[1]), int(a[2])),
    }
    if len(argv) < 3 or argv[0] not in modes:
        print(__doc__, file=sys.stderr)
        return 2
    modes[argv[0]](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
