#!/usr/bin/env bash
# test/proxy.sh BUILD_DIR - the kernel-socket proxy stack (circnet-dataplane)
# between a guest and a "remote host": a network namespace this test makes,
# joined to the host by a veth pair (no other address is ever used).
#  - the socket-API test body (sockcheck: TCP and UDP) from the host straight
#    to the remote, then from a guest through the proxy: identical output;
#  - UDP through the proxy: a DNS-style query/answer and 30000-byte datagrams;
#  - DNS through the guest's resolver: getent in a guest started with
#    `circnet run --dns` asks dnsmasq on the remote;
#  - curl fetching 5 MiB from python3's http.server on the remote (sha256);
#  - iperf3 through the proxy in both directions;
#  - connect errors as Linux gives them: refused, no answer (ETIMEDOUT after
#    --connect-timeout), no proxy rule (ENETUNREACH);
#  - published ports: curl from the host and from the remote to python3's
#    http.server in a guest (the guest sees the real client address), wrk
#    from the host to a published nginx in a guest, a published port with no
#    listener behind it (reset), a reload that withdraws a publish; a
#    published UDP port answered by a guest that sees the real clients;
#  - faults: the remote resets mid-transfer (the guest reads ECONNRESET), goes
#    silent mid-transfer (ETIMEDOUT after --user-timeout), the
#    guest is killed mid-transfer and the proxy is restarted mid-transfer
#    (nothing hangs, and the proxy ends with no connection and the operator
#    with no circuit: no leaks);
#  - restarts: the operator killed under the proxy stack (the dataplane
#    re-attaches, routes and published ports work again), then the dataplane
#    killed and started again.
# Needs root: exits 77 (skipped) without it.
set -uo pipefail
build=$(cd "${1:?usage: proxy.sh BUILD_DIR}" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
dp=$build/dataplane/circnet-dataplane
circnet=$build/guest/circnet
check_bin=$build/test/sockcheck
peers=$(cd "$(dirname "$0")" && pwd)/netpeers.py

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
	echo "proxy.sh: needs root and network namespaces: skipped"
	exit 77
fi
for tool in python3 curl wget wrk nginx iperf3 sha256sum ip getent dnsmasq; do
	command -v "$tool" >/dev/null || { echo "proxy.sh: $tool missing (scripts/deps.sh installs it)"; exit 1; }
done
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0"
dir=$(mktemp -d /tmp/circnet-proxy-test.XXXXXX)
chmod 755 "$dir" # nginx workers run as www-data
# names and a /24 of our own, so that parallel runs do not meet
tag=$(( $$ % 200 + 20 ))
ns=cnpx$$
vh=cnpx$$h
vr=cnpx$$r
net=10.213.$tag
blackhole=10.214.$tag
unreach=10.216.$tag
pids=()
dp_pid=
cleanup() {
	for p in "${pids[@]}" $dp_pid; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	ip link del "$vh" 2>/dev/null
	ip route del "$blackhole.0/24" 2>/dev/null
	ip route del unreachable "$unreach.0/24" 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh" # check, is, guest, remote, silent_remote

# the remote host
ip netns add "$ns" || exit 1
ip link add "$vh" type veth peer name "$vr" || exit 1
ip link set "$vr" netns "$ns"
ip addr add "$net.1/24" dev "$vh"
ip link set "$vh" up
remote ip addr add "$net.2/24" dev "$vr"
remote ip link set "$vr" up
remote ip link set lo up
# a prefix routed to the remote, which does not forward: SYNs vanish there
ip route add "$blackhole.0/24" via "$net.2"
# a prefix the host has an unreachable route for: EHOSTUNREACH at once
ip route add unreachable "$unreach.0/24"

pub=$((18000 + tag))
write_conf() { # write_conf [EXTRA-LINE]
	cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
guest client {
    address 10.212.0.10
    max-circuits 8192
}
guest web {
    address 10.212.0.20
    listen any 80,81,8080,5353
}
proxy any from client to $net.0/24
proxy tcp from client to $blackhole.0/24
proxy tcp from client to $unreach.0/24
publish tcp $pub to web port 80
publish tcp 127.0.0.1:$((pub + 1)) to web port 8080
publish udp $((pub + 3)) to web port 5353
${1:-}
CONF
}
write_conf "publish tcp $((pub + 2)) to web port 81"
"$op" --config "$dir/circnet.conf" 2>"$dir/operator.log" &
op_pid=$!
pids+=($!)
start_dp() {
	"$dp" --run-dir "$dir/run" --threads 2 --connect-timeout 2 --udp-idle 2 --user-timeout 3 \
		2>>"$dir/dataplane.log" &
	dp_pid=$!
	for _ in $(seq 50); do
		"$ctl" --run-dir "$dir/run" proxy --json 2>/dev/null | grep -q '"operator_sessions":[1-9]' && return
		sleep 0.1
	done
}
for _ in $(seq 50); do "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && break; sleep 0.1; done
start_dp

# remote services
mkdir -p "$dir/www"
head -c 5242880 /dev/urandom >"$dir/www/blob"
want=$(sha256sum <"$dir/www/blob" | cut -d' ' -f1)
# the remote's servers live as long as the test may (meson: 240 s): the restart
# checks at its end fetch from them again, past 120 s on a slow run
(cd "$dir/www" && exec timeout 240 ip netns exec "$ns" python3 -m http.server 8000 \
	--bind "$net.2" >"$dir/http.log" 2>&1) &
pids+=($!)
remote timeout 240 iperf3 -s -B "$net.2" -p 5201 >"$dir/iperf3-server.log" 2>&1 &
pids+=($!)
# a server that streams slowly until the client goes away, then says how it went
cat >"$dir/slow.py" <<'PY'
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8200)); s.listen(4)
while True:
    c, _ = s.accept()
    try:
        while True:
            c.sendall(b"s" * 65536); time.sleep(0.01)
    except OSError as e:
        print("peer gone:", type(e).__name__, flush=True)
    c.close()
PY
# a DNS-style UDP server: answers each query with its id and the name asked
cat >"$dir/dns.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 5353))
while True:
    q, a = s.recvfrom(65535)
    s.sendto(q[:2] + b"answer:" + q[2:], a)
PY
remote timeout 240 python3 "$dir/dns.py" "$net.2" >"$dir/dns.log" 2>&1 &
pids+=($!)
# a real DNS server on the remote, for the guest's resolver
printf '%s db.example\n%s web.example\n' "$net.77" "$net.78" >"$dir/dns.hosts"
remote timeout 240 dnsmasq --no-daemon --no-resolv --no-hosts --addn-hosts="$dir/dns.hosts" \
	--listen-address="$net.2" --bind-interfaces --port=53 --user=root \
	--pid-file="$dir/dnsmasq.pid" >"$dir/dnsmasq.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 240 python3 "$peers" rst "$net.2" 8100 >"$dir/rst.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 240 python3 "$peers" rst "$net.2" 8101 100 >"$dir/rst-small.log" 2>&1 &
pids+=($!)
remote timeout 240 python3 "$dir/slow.py" "$net.2" >"$dir/slow.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 240 python3 "$peers" sink "$net.2" 8400 \
	>"$dir/sink.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	remote ss -ltn 2>/dev/null | grep -q ":8000 " && remote ss -ltn | grep -q ":8200 " && break
	sleep 0.1
done

# the socket API through the proxy, against the kernel
port=$((7400 + RANDOM % 500))
remote timeout 60 "$check_bin" server "$net.2" "$port" 2>"$dir/sc-server1.err" &
pids+=($!)
sleep 0.3
timeout 60 "$check_bin" client "$net.2" "$port" >"$dir/kernel.out" 2>&1
remote timeout 60 "$check_bin" server "$net.2" "$((port + 1))" 2>"$dir/sc-server2.err" &
pids+=($!)
sleep 0.3
guest "$check_bin" client "$net.2" "$((port + 1))" >"$dir/proxy.out" 2>&1
check "sockcheck: $(wc -l <"$dir/kernel.out") TCP and UDP checks through the proxy agree with the kernel" \
	diff -u "$dir/kernel.out" "$dir/proxy.out"

check "wget fetches 5 MiB from the remote, checksum matches" \
	is "$(guest wget -q -O - -T 30 "http://$net.2:8000/blob" | sha256sum | cut -d' ' -f1)" "$want"
check "curl fetches 5 MiB from the remote, checksum matches" \
	bash -c "[ \"\$(timeout 60 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 30 http://$net.2:8000/blob | sha256sum | cut -d' ' -f1)\" = '$want' ]"
iperf() { # iperf NAME ARGS...: 2 s through the proxy, both ends report bytes
	guest iperf3 -c "$net.2" -p 5201 -t 2 -J "${@:2}" >"$dir/$1.json" 2>&1 &&
		python3 -c "import json,sys; e=json.load(open('$dir/$1.json'))['end']; print('$1: %.1f Gbit/s' % (e['sum_received']['bits_per_second']/1e9)); sys.exit(not e['sum_received']['bytes'] > 0)"
}
check "iperf3 through the proxy, guest to remote" iperf iperf3-up
check "iperf3 through the proxy, remote to guest (-R)" iperf iperf3-down -R

check "UDP through the proxy: queries answered, 30000-byte datagrams whole" \
	is "$(guest python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
ok = 0
for i in range(20):
    q = bytes([i, 7]) + b'host%d.example' % i
    s.sendto(q, ('$net.2', 5353))
    d, a = s.recvfrom(65535)
    ok += d == q[:2] + b'answer:' + q[2:] and a == ('$net.2', 5353)
big = bytes(range(256)) * 117 + b'xyzabcdefghi'
s.sendto(big, ('$net.2', 5353)); d, a = s.recvfrom(65535)
print(ok, len(big), d[9:] == big[2:])")" "20 29964 True"

check "the guest's resolver through the proxy: getent asks dnsmasq on the remote" \
	is "$(timeout 30 "$circnet" run --run-dir "$dir/run" --dns "$net.2" --guest client -- \
		getent hosts db.example | tr -s ' \t' ' ')" "$net.77 db.example"
check "... and a name dnsmasq does not know is not found (exit 2)" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --dns '$net.2' --guest client -- \
		getent hosts nosuch.example; [ \$? = 2 ]"

errno_of() { guest python3 "$peers" errno "$1" "$2"; } # what a guest's connect() says
check "a closed remote port: ECONNREFUSED" is "$(errno_of "$net.2" 8999)" ECONNREFUSED
t0=$(date +%s)
check "a remote that never answers: ETIMEDOUT (after --connect-timeout)" \
	is "$(errno_of "$blackhole.7" 80)" ETIMEDOUT
check "... within the timeout, not the kernel's two minutes" [ $(( $(date +%s) - t0 )) -lt 10 ]
check "no proxy rule for the destination: ENETUNREACH" is "$(errno_of 10.215.0.1 80)" ENETUNREACH
check "no route on the host: EHOSTUNREACH, the kernel's errno passed on" \
	is "$(errno_of "$unreach.9" 80)" EHOSTUNREACH

# (the remote's reset drops what it had not sent yet: the guest gets some, then the reset)
check "the remote resets mid-transfer (20 tries): the guest reads data, then ECONNRESET" \
	is "$(guest python3 "$peers" read-reset "$net.2" 8100 20)" ECONNRESET
# a fast server's reply and its reset can both land before the proxy sees its
# connect complete: the guest still connects, reads the reply, then the reset
check "the remote replies and resets at once (20 tries): connected, the reply, ECONNRESET" \
	is "$(guest python3 "$peers" read-reset "$net.2" 8101 20)" ECONNRESET
# the remote goes silent mid-transfer: its address vanishes, the host's TCP gives up
# after --user-timeout (TCP_USER_TIMEOUT), and the guest reads why
silent_remote "$net.2" 8400 "$net.2/24" "$vr"
ip route replace "$blackhole.0/24" via "$net.2" 2>/dev/null
check "the remote stops answering mid-transfer: the guest's send fails with ETIMEDOUT" \
	is "$silent_errno" ETIMEDOUT
check "... after --user-timeout (3 s)" \
	bash -c "[ $silent_secs -ge 2 ] && [ $silent_secs -le 10 ]"

# scale: many proxied connections open at once, each echoing its own bytes
ip netns exec "$ns" timeout 120 python3 "$peers" echo "$net.2" 8300 >"$dir/echo.log" 2>&1 &
pids+=($!)
sleep 0.5
check "2000 proxied connections open at once, each echoes its 600 bytes intact" \
	is "$(timeout 90 "$circnet" run --run-dir "$dir/run" --guest client -- \
		bash -c "ulimit -n 65536; exec python3 '$peers' many '$net.2' 8300 2000")" True

# faults: the guest dies mid-transfer
guest curl -sS -m 30 -o /dev/null "http://$net.2:8200/" 2>/dev/null &
victim=$!
sleep 1
pkill -KILL -f "curl -sS -m 30 -o /dev/null http://$net.2:8200/" 2>/dev/null
wait "$victim" 2>/dev/null
check "a guest killed mid-transfer: the remote sees its connection end" \
	bash -c "for i in \$(seq 50); do grep -q 'peer gone' '$dir/slow.log' && exit 0; sleep 0.1; done; exit 1"

# faults: the proxy restarts mid-transfer
guest python3 -c "
import socket
s = socket.create_connection(('$net.2', 8200)); n = 0
print('connected', flush=True)
try:
    while True:
        b = s.recv(65536)
        if not b: print('EOF'); break
        n += len(b)
except OSError as e:
    print(type(e).__name__)" >"$dir/restart.out" 2>&1 &
reader=$!
# connected first (a guest under a sanitizer starts slowly), then a second of data
for _ in $(seq 100); do grep -q connected "$dir/restart.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
kill -TERM "$dp_pid"
wait "$dp_pid" 2>/dev/null
dp_pid=
wait "$reader"
check "the proxy stops mid-transfer: the guest reads a reset" grep -qx ConnectionResetError "$dir/restart.out"
start_dp
sleep 0.5
dp_fds_start=$(ls /proc/"$dp_pid"/fd | wc -l)
check "after the proxy restarts, new connections go through" \
	bash -c "[ \"\$(timeout 60 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 30 http://$net.2:8000/blob | sha256sum | cut -d' ' -f1)\" = '$want' ]"

# published ports: host and remote clients reach guests
(cd "$dir/www" && exec timeout 120 "$circnet" run --run-dir "$dir/run" --guest web -- \
	python3 -m http.server 80 >"$dir/web.log" 2>&1) &
pids+=($!)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<NGX
worker_processes 2;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server { listen 8080; root $dir/www; }
}
NGX
echo published >"$dir/www/index.html"
timeout 120 "$circnet" run --run-dir "$dir/run" --guest web -- \
	nginx -c "$dir/nginx/nginx.conf" -g 'daemon off;' >"$dir/nginx/out.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[ "$("$ctl" --run-dir "$dir/run" listeners | grep -cE ':(80|8080) ')" -ge 3 ] && break
	sleep 0.1
done
check "a published port: curl on the host fetches 5 MiB from a guest" \
	is "$(curl -sS -m 30 "http://127.0.0.1:$pub/blob" | sha256sum | cut -d' ' -f1)" "$want"
check "a published port: curl on the remote fetches 5 MiB from a guest" \
	is "$(remote curl -sS -m 30 "http://$net.1:$pub/blob" | sha256sum | cut -d' ' -f1)" "$want"
# python's http.server listens with a backlog of 5: 16 clients at once overflow
# it, and the proxy holds each one until the guest has room, as a Linux
# client would resend its SYN (conn.h, DP_PUB_HOLD_MS)
pub16() { curl -sS -m 30 "http://127.0.0.1:$pub/blob" 2>>"$dir/curl.err" | sha256sum | cut -d' ' -f1; }
check "16 fetches at once through a published port, past the guest's backlog of 5: all whole" \
	bash -c "$(declare -f pub16); dir='$dir'; pub=$pub; for i in \$(seq 16); do pub16 >'$dir/p16.'\$i & done; wait; [ \"\$(cat '$dir'/p16.* | sort -u)\" = '$want' ]"
check "the guest sees the real client addresses (127.0.0.1 and the remote's)" \
	bash -c "grep -q '^127.0.0.1 .*GET /blob' '$dir/web.log' && grep -q '^$net.2 .*GET /blob' '$dir/web.log'"
check "wrk on the host to a published nginx: over 2000 requests, no errors" \
	bash -c "wrk -t1 -c8 -d2s http://127.0.0.1:$((pub + 1))/index.html >'$dir/wrk.out' 2>&1 &&
		awk '/Requests\/sec/{print \"wrk via the proxy:\", \$2, \"req/s\"}' '$dir/wrk.out' &&
		[ \"\$(awk '/ requests in /{print \$1}' '$dir/wrk.out')\" -gt 2000 ] &&
		! grep -qE 'Socket errors|Non-2xx' '$dir/wrk.out'"
cat >"$dir/uecho.py" <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))
while True:
    d, a = s.recvfrom(65535); s.sendto(b"%s:" % a[0].encode() + d, a)
PY
timeout 120 "$circnet" run --run-dir "$dir/run" --guest web -- python3 "$dir/uecho.py" \
	>"$dir/uecho.log" 2>&1 &
pids+=($!)
wait_listener 'udp .*:5353 '
udp_ask() { # udp_ask HOST PORT: three datagrams and a 30000-byte one
	python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
r = []
for i in range(3):
    s.sendto(b'q%d' % i, ('$1', $2)); r.append(s.recvfrom(1000)[0].decode())
s.sendto(b'B' * 30000, ('$1', $2)); d = s.recvfrom(65535)[0]
print(' '.join(r), len(d))"
}
check "a published UDP port: the guest answers the host, seeing 127.0.0.1" \
	is "$(udp_ask 127.0.0.1 $((pub + 3)))" "127.0.0.1:q0 127.0.0.1:q1 127.0.0.1:q2 30010"
check "a published UDP port: the guest answers the remote, seeing its address" \
	is "$(remote bash -c "$(declare -f udp_ask); udp_ask $net.1 $((pub + 3))")" \
	"$net.2:q0 $net.2:q1 $net.2:q2 $((30001 + ${#net} + 2))"
# (the reset can reach curl before or after it sees the connect complete: 7 or 56)
check "a published port with nothing listening behind it: the client is reset" \
	bash -c "curl -sS -m 5 http://127.0.0.1:$((pub + 2))/ 2>'$dir/nolisten.err'; rc=\$?; [ \$rc = 7 ] || [ \$rc = 56 ]"
write_conf
"$ctl" --run-dir "$dir/run" reload >/dev/null
sleep 0.5
check "a reload withdraws a publish: its host port is closed (curl: cannot connect)" \
	bash -c "curl -sS -m 5 http://127.0.0.1:$((pub + 2))/ 2>/dev/null; [ \$? = 7 ]"
check "... and keeps the others" is "$(curl -sS -m 10 "http://127.0.0.1:$((pub + 1))/index.html")" published

# the operator killed (a crash) and started again under the proxy stack: the
# dataplane attaches again by itself and takes its routes and published ports
# back, the guests' listeners come back; nobody does anything (issue 13)
kill -KILL "$op_pid"
wait "$op_pid" 2>/dev/null
"$op" --config "$dir/circnet.conf" 2>>"$dir/operator.log" &
op_pid=$!
pids+=($!)
within() { # within SECONDS COMMAND...: until it succeeds
	local end=$(($(date +%s) + $1))
	until "${@:2}" 2>/dev/null; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.2; done
}
fetch_remote() { [ "$(guest curl -sS -m 10 "http://$net.2:8000/blob" | sha256sum | cut -d' ' -f1)" = "$want" ]; }
fetch_published() { [ "$(curl -sS -m 5 "http://127.0.0.1:$((pub + 1))/index.html")" = published ]; }
check "operator restarted (SIGKILL): a guest fetches from the remote through the proxy again" \
	within 10 fetch_remote
check "operator restarted (SIGKILL): a published port reaches its guest again" \
	within 10 fetch_published
check "... through the dataplane that was attached before (not restarted)" kill -0 "$dp_pid"

# no leaks: the proxy and the operator forget every connection (UDP flows after --udp-idle)
sleep 3
"$ctl" --run-dir "$dir/run" proxy
# (the reload withdrew one tcp publish: one listener fewer per loop)
check "the proxy holds the fds it started with, less the withdrawn listeners (no fd leak)" \
	is "$(ls /proc/"$dp_pid"/fd | wc -l)" "$((dp_fds_start - 2))"
check "the proxy holds no connection at the end" \
	bash -c "'$ctl' --run-dir '$dir/run' proxy --json | grep -q '\"active\":0,'"
# (guests still running report their closes in batches: their ends may linger)
check "the operator holds no circuit with a proxy end at the end" \
	bash -c "for i in \$(seq 30); do ! '$ctl' --run-dir '$dir/run' circuits | grep -q ' proxy ' && exit 0; sleep 0.1; done; '$ctl' --run-dir '$dir/run' circuits; exit 1"

# the dataplane killed (SIGKILL) and started again: it takes the routes and
# published ports over, with no guest doing anything
kill -KILL "$dp_pid"
wait "$dp_pid" 2>/dev/null
start_dp
check "dataplane restarted (SIGKILL): a guest fetches from the remote through it" \
	within 10 fetch_remote
check "dataplane restarted (SIGKILL): the published port reaches its guest" \
	within 10 fetch_published

if [ "$failed" -ne 0 ]; then
	echo "proxy.sh: $failed checks failed; dataplane log:"
	tail -20 "$dir/dataplane.log"
	report_failures "$dir/dataplane.log"
	[ -s "$dir/curl.err" ] && sed 's/^/    curl: /' "$dir/curl.err"
	echo "operator log:"
	tail -20 "$dir/operator.log"
	exit 1
fi
echo "proxy.sh: all checks passed"
