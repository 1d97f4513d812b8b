#!/usr/bin/env python3
# test/vm_peer.py PORT [COUNT] - the host guest a VM talks to in test/vm.sh,
# run under the socket preload: serves COUNT connections (default: forever)
# on PORT, one at a time, each a series of requests, a line and its bytes:
#   "put N\n" + N bytes   -> "fnv=HEX\n", the FNV-1a 64 of the N bytes
#   "get N\n"             -> "fnv=HEX\n" + N bytes (circnet-vm's pattern)
# It reads and writes with the plain socket API: the circuit to the VM is
# a socket to it like any other.
import socket
import sys

FNV_OFFSET, FNV_PRIME, MASK = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def pattern(n):
    return bytes(((i * 2654435761) & 0xffffffff) >> 13 & 0xff for i in range(n))


def serve(conn):
    f = conn.makefile("rb")
    while True:
        line = f.readline().decode().split()
        if not line:
            return  # the VM closed: EOF
        if len(line) != 2 or line[0] not in ("put", "get"):
            print(f"vm_peer: bad request {line!r}", flush=True)
            return
        if not serve_one(conn, f, line):
            return


def serve_one(conn, f, line):
    n = int(line[1])
    if line[0] == "put":
        h, left = FNV_OFFSET, n
        while left:
            chunk = f.read(min(left, 65536))
            if not chunk:
                print(f"vm_peer: put: EOF with {left} bytes to go", flush=True)
                return False
            h = fnv(h, chunk)
            left -= len(chunk)
        conn.sendall(b"fnv=%016x\n" % h)
        print(f"vm_peer: put {n} bytes, fnv {h:016x}", flush=True)
    else:
        data = pattern(n)
        h = fnv(FNV_OFFSET, data)
        conn.sendall(b"fnv=%016x\n" % h + data)
        print(f"vm_peer: get {n} bytes, fnv {h:016x}", flush=True)
    return True


def main():
    port = int(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    print(f"vm_peer: listening on {port}", flush=True)
    while count:
        conn, peer = srv.accept()
        print(f"vm_peer: connection from {peer[0]}:{peer[1]}", flush=True)
        with conn:
            try:
                serve(conn)
            except OSError as e:
                print(f"vm_peer: connection lost: {e}", flush=True)
        count -= 1


if __name__ == "__main__":
    main()
