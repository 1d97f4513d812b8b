#!/usr/bin/env python3
# test/vm_peer.py PORT [COUNT] - the host guest a VM talks to in test/vm.sh,
# run under the socket preload: serves COUNT connections (default: forever)
# on PORT, one at a time, each a series of requests, a line and its bytes:
#   "put N\n" + N bytes   -> "fnv=HEX\n", the FNV-1a 64 of the N bytes
#   "get N\n"             -> "fnv=HEX\n" + N bytes (circnet-vm's pattern)
# test/vm_peer.py client HOST PORT PUT GET - the other way: connect to a VM
# that serves the same protocol (circnet-vm serve), put PUT bytes and get GET
# bytes, each checked by the FNV-1a the other side sends; exit 0 if all match.
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


def recv_line(f):
    line = f.readline().decode()
    if not line.startswith("fnv="):
        raise OSError(f"bad answer {line!r}")
    return int(line[4:], 16)


def client(host, port, put, get):
    conn = socket.create_connection((host, port), timeout=60)
    f = conn.makefile("rb")
    data = pattern(put)
    conn.sendall(b"put %d\n" % put + data)
    if recv_line(f) != fnv(FNV_OFFSET, data):
        print("vm_peer: client: put: the VM's checksum differs", flush=True)
        return 1
    conn.sendall(b"get %d\n" % get)
    want = recv_line(f)
    got = f.read(get)
    if len(got) != get or fnv(FNV_OFFSET, got) != want:
        print(f"vm_peer: client: get: {len(got)} bytes, checksum differs", flush=True)
        return 1
    conn.close()
    print(f"vm_peer: client: put {put} and got {get} bytes from {host}:{port}, all checked",
          flush=True)
    return 0


def main():
    if sys.argv[1] == "client":
        sys.exit(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
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
