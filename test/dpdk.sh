#!/usr/bin/env bash
# test/dpdk.sh BUILD_DIR - the DPDK proxy stack (circnet-dataplane --backend
# dpdk: DPDK drives a net_tap port, lwIP terminates TCP) between a guest and
# a "remote host": a network namespace this test makes. The dataplane runs
# in that namespace so that its tap device appears there; the namespace's
# kernel is the remote, the dataplane's own stack is lwIP on the tap (the
# namespace's addresses are never its). No address outside the test's /24.
#  - ARP and ICMP echo: the remote pings the dataplane's address; IPv6 too
#    (neighbour discovery, ICMPv6 echo), and a guest's fetch over IPv6;
#  - curl in a guest fetches 5 MiB from python3's http.server on the remote
#    (sha256), and 8 fetches run at once;
#  - iperf3 through the dataplane, both directions;
#  - UDP: queries answered, a 14000-byte datagram whole (fragmented by lwIP
#    and reassembled by the remote, and back);
#  - published ports: curl on the remote fetches from a guest's http.server
#    (which sees the remote's address), over IPv4 and IPv6 (its listener is
#    dual-stack), 16 at once (past the guest's backlog); a published port with no
#    listener behind it resets, an unpublished one refuses; a published UDP
#    port answered by a guest that sees the remote's address, a flow per client;
#  - 500 connections open at once to an echo server, each intact;
#  - errors as Linux gives them: a closed port (ECONNREFUSED), nobody at the
#    address (ETIMEDOUT after --connect-timeout), the remote resetting
#    mid-transfer (ECONNRESET after the data), the remote going silent
#    mid-transfer (ETIMEDOUT after --user-timeout);
#  - loss: the dataplane restarted with --fault-drop 20000 (2 % of frames
#    lost each way; plus 2 % by tc netem where the kernel has it): the
#    fetch is intact, iperf3 completes;
#  - malformed frames sent raw from the remote: dropped, counted, no harm;
#  - the status view: port, link, per-queue counters, the stack's counters;
#  - SIGTERM: the dataplane stops, and the operator holds no circuit with a
#    proxy end after.
#    (Checks run in this order: SIGTERM comes before the loss run.)
# Needs root and network namespaces (77 without); 77 too when the dataplane
# was built without DPDK, or DPDK cannot start here (the log says why).
set -uo pipefail
build=$(cd "${1:?usage: dpdk.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
dp=$build/dataplane/circnet-dataplane
circnet=$build/guest/circnet
peers=$here/netpeers.py

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
	echo "dpdk.sh: needs root and network namespaces: skipped"
	exit 77
fi
if [[ " $("$dp" --backends) " != *" dpdk "* ]]; then
	echo "dpdk.sh: circnet-dataplane was built without DPDK (libdpdk-dev, liblwip-dev): skipped"
	exit 77
fi
for tool in python3 curl iperf3 sha256sum ip ping tc; do
	command -v "$tool" >/dev/null || { echo "dpdk.sh: $tool missing (scripts/deps.sh installs it)"; exit 1; }
done
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0"
dir=$(mktemp -d /tmp/circnet-dpdk-test.XXXXXX)
tag=$(($$ % 200 + 20))
ns=cndk$$
tap=cndt$$
net=10.218.$tag
net6=fd00:218:$tag:
far6=fd7e:218:$tag::7 # an IPv6 host off the stack's /64: reached through --gw6
pids=()
dp_pid=
cleanup() {
	[ -n "$dp_pid" ] && kill "$dp_pid" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
. "$(dirname "$0")/lib.sh" # check, is, guest, remote, silent_remote
status() { "$ctl" --run-dir "$dir/run" proxy "$@" 2>/dev/null; }

cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
guest client {
    address 10.212.0.10
    address fd00:212::10
    max-circuits 4096
}
guest web {
    address 10.212.0.20
    address fd00:212::20
    listen tcp 80
    listen tcp 82
    listen udp 5353
}
proxy any from client to $net.0/24
proxy tcp from client to $net6:/64
proxy tcp from client to $far6/128
publish tcp 8080 to web port 80
publish tcp 8081 to web port 81
publish tcp 8082 to web port 82
publish udp 5354 to web port 5353
CONF
"$op" --config "$dir/circnet.conf" 2>"$dir/operator.log" &
pids+=($!)
for _ in $(seq 50); do "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && break; sleep 0.1; done

# the remote host, and the dataplane in it (its tap appears there)
ip netns add "$ns" || exit 1
remote ip link set lo up
remote ip addr add "$far6/128" dev lo
cores=0
[ "$(nproc)" -gt 1 ] && cores=0-1 # the loop on its own lcore (1), the main one keeps signals
eal_cores=(-l "$cores")
want_sessions=[1-9] # operator sessions up once the dataplane is attached
start_dp() { # start_dp [DATAPLANE-OPTION...]: up, attached to the operator, tap configured
	ip netns exec "$ns" "$dp" --backend dpdk "${eal_cores[@]}" --no-huge -m 256 --no-pci \
		--file-prefix "cndk$$" --vdev="net_tap0,iface=$tap" -- --ip "$net.2/24" --ip6 "$net6:2/64" \
		--run-dir "$dir/run" --connect-timeout 3 --user-timeout 3 --udp-idle 2 --idle-sleep 20 "$@" \
		2>>"$dir/dataplane.log" &
	dp_pid=$!
	for _ in $(seq 100); do
		status --json | grep "\"operator_sessions\":$want_sessions" >/dev/null && break
		kill -0 "$dp_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$dp_pid" 2>/dev/null || return 1
	remote ip addr add "$net.1/24" dev "$tap" && remote ip addr add "$net6:1/64" dev "$tap" nodad &&
		remote ip link set "$tap" up
}
stop_dp() { # stop_dp: SIGTERM; true if it exited 0 within 5 s
	local t0=$(date +%s) rc
	kill -TERM "$dp_pid"
	wait "$dp_pid"
	rc=$?
	dp_pid=
	[ "$rc" = 0 ] && [ $(($(date +%s) - t0)) -le 5 ]
}
if ! start_dp; then
	echo "dpdk.sh: the DPDK dataplane did not start here; its log:"
	sed 's/^/    /' "$dir/dataplane.log" | tail -20
	dp_pid=
	if [ -n "${CIRCNET_REQUIRE_DPDK:-}" ]; then
		echo "FAIL CIRCNET_REQUIRE_DPDK is set: DPDK must start"
		exit 1
	fi
	echo "dpdk.sh: skipped (DPDK cannot start on this machine)"
	exit 77
fi

# remote services
mkdir -p "$dir/www"
head -c 5242880 /dev/urandom >"$dir/www/blob"
want=$(sha256sum <"$dir/www/blob" | cut -d' ' -f1)
(cd "$dir/www" && exec timeout 300 ip netns exec "$ns" python3 -m http.server 8000 \
	--bind "$net.1" >"$dir/http.log" 2>&1) &
pids+=($!)
(cd "$dir/www" && exec timeout 300 ip netns exec "$ns" python3 -m http.server 8006 \
	--bind "$net6:1" >"$dir/http6.log" 2>&1) &
pids+=($!)
(cd "$dir/www" && exec timeout 300 ip netns exec "$ns" python3 -m http.server 8007 \
	--bind "$far6" >"$dir/http-far6.log" 2>&1) &
pids+=($!)
ip netns exec "$ns" timeout 300 iperf3 -s -B "$net.1" -p 5201 >"$dir/iperf3-server.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 300 python3 "$peers" rst "$net.1" 8100 >"$dir/rst.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 300 python3 "$peers" rst "$net.1" 8101 100 >"$dir/rst-small.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 300 python3 "$peers" echo "$net.1" 8300 >"$dir/echo.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 300 python3 "$peers" sink "$net.1" 8400 >"$dir/sink.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" timeout 300 python3 "$peers" udp-echo "$net.1" 5353 >"$dir/uecho.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	remote ss -ltn 2>/dev/null | grep ":8000 " >/dev/null && remote ss -ltn | grep ":8300 " >/dev/null && break
	sleep 0.1
done

check "ARP and ICMP: the remote pings the dataplane's stack" \
	remote ping -c 3 -i 0.2 -W 2 "$net.2" -q
check "IPv6 neighbour discovery and ICMPv6: the remote pings the stack's IPv6 address" \
	remote ping -6 -c 2 -i 0.2 -W 2 "$net6:2" -q
fetch() { guest curl -sS -m 60 "http://$net.1:8000/blob" | sha256sum | cut -d' ' -f1; }
pub_fetch() { remote curl -sS -m 60 "http://$net.2:8080/blob" 2>>"$dir/curl.err" | sha256sum | cut -d' ' -f1; }
at_once() { # at_once N NAME FUNC: FUNC N times at once; the distinct results it printed
	local pids=() i
	for i in $(seq "$1"); do
		"$3" >"$dir/$2.$i" &
		pids+=($!)
	done
	wait "${pids[@]}"
	cat "$dir/$2".* | sort -u
}
check "curl in a guest fetches 5 MiB through the DPDK dataplane, checksum matches" \
	is "$(fetch)" "$want"
check "over IPv6: curl in a guest fetches 5 MiB through lwIP, checksum matches" \
	is "$(guest curl -sS -m 60 "http://[$net6:1]:8006/blob" | sha256sum | cut -d' ' -f1)" "$want"
check "8 fetches at once, every checksum matches" is "$(at_once 8 par fetch)" "$want"

iperf() { # iperf NAME ARGS...: 2 s through the dataplane, both ends report bytes
	guest iperf3 -c "$net.1" -p 5201 -t 2 -J "${@:2}" >"$dir/$1.json" 2>&1 &&
		python3 -c "import json,sys; e=json.load(open('$dir/$1.json'))['end']; print('     $1: %.0f Mbit/s' % (e['sum_received']['bits_per_second']/1e6)); sys.exit(not e['sum_received']['bytes'] > 0)"
}
check "iperf3 through the DPDK dataplane, guest to remote" iperf iperf3-up
check "iperf3 through the DPDK dataplane, remote to guest (-R)" iperf iperf3-down -R

# (lwIP as packaged reassembles at most 10 fragments: about 14.8 KB; docs/dpdk.md)
check "UDP through lwIP: 20 queries answered, a 14000-byte datagram whole (10 IP fragments)" \
	is "$(guest python3 "$peers" udp-ask "$net.1" 5353 14000)" "20 14007 True"

# Which lwIP: ours (Debian's source, dataplane/lwip/lwipopts.h) or the packaged one.
tcp_build=$(status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tcp"]["build"])' 2>/dev/null || true)
if [ -n "${CIRCNET_REQUIRE_DPDK:-}" ]; then
	check "lwIP is built from Debian's source with our options (scripts/lwip-source.sh)" \
		is "$tcp_build" circnet
fi
if [ "$tcp_build" = circnet ]; then
	# what the remote's Linux agreed on with lwIP, from its TCP_INFO
	ip netns exec "$ns" timeout 20 python3 "$peers" tcpinfo-accept "$net.1" 8500 >"$dir/tcpinfo.out" 2>&1 &
	acc=$!
	for _ in $(seq 50); do remote ss -ltn | grep ":8500 " >/dev/null && break; sleep 0.1; done
	guest python3 "$peers" errno "$net.1" 8500 >/dev/null
	wait $acc
	check "TCP with Linux, lwIP connecting: its window scale (5), SACK and timestamps agreed" \
		is "$(cat "$dir/tcpinfo.out")" "wscale:5 sack:1 ts:1"
	check "UDP through lwIP: a 60000-byte datagram whole (41 IP fragments each way)" \
		is "$(guest python3 "$peers" udp-ask "$net.1" 5353 60000)" "20 60007 True"
fi

check "500 connections open at once, each echoes its 600 bytes intact" \
	is "$(timeout 90 "$circnet" run --run-dir "$dir/run" --guest client -- \
		bash -c "ulimit -n 8192; exec python3 '$peers' many '$net.1' 8300 500")" True

check "a closed remote port: ECONNREFUSED" is "$(guest python3 "$peers" errno "$net.1" 8999)" ECONNREFUSED
t0=$(date +%s)
check "nobody at the address: ETIMEDOUT (after --connect-timeout)" \
	is "$(guest python3 "$peers" errno "$net.99" 80)" ETIMEDOUT
check "... within the timeout" [ $(($(date +%s) - t0)) -lt 10 ]
check "the remote resets mid-transfer (10 tries): the guest reads data, then ECONNRESET" \
	is "$(guest python3 "$peers" read-reset "$net.1" 8100 10)" ECONNRESET
check "the remote replies and resets at once (10 tries): connected, the reply, ECONNRESET" \
	is "$(guest python3 "$peers" read-reset "$net.1" 8101 10)" ECONNRESET
# the remote goes silent mid-transfer: its address vanishes, segments are dropped there
silent_remote "$net.1" 8400 "$net.1/24" "$tap"
check "the remote stops answering mid-transfer: the guest's send fails with ETIMEDOUT" \
	is "$silent_errno" ETIMEDOUT
check "... after --user-timeout (3 s), not lwIP's minutes of retries" \
	bash -c "[ $silent_secs -ge 2 ] && [ $silent_secs -le 10 ]"

# published ports: lwIP listens on the dataplane's address, the guest web answers
(cd "$dir/www" && exec timeout 300 "$circnet" run --run-dir "$dir/run" --guest web -- \
	python3 -m http.server 80 >"$dir/web.log" 2>&1) &
pids+=($!)
wait_listener ':80 '
check "a published port: curl on the remote fetches 5 MiB from a guest through lwIP" \
	is "$(remote curl -sS -m 60 "http://$net.2:8080/blob" | sha256sum | cut -d' ' -f1)" "$want"
check "... and the guest sees the remote's real address" \
	grep -q "^$net.1 .*GET /blob" "$dir/web.log"
# a dual-stack listener (::, IPV6_V6ONLY off) takes both families through one published port
(cd "$dir/www" && exec timeout 300 "$circnet" run --run-dir "$dir/run" --guest web -- \
	python3 -m http.server --bind :: 82 >"$dir/web6.log" 2>&1) &
pids+=($!)
wait_listener ':82 '
check "over IPv6: curl on the remote fetches 5 MiB from a guest's dual-stack listener" \
	is "$(remote curl -sS -m 60 -g "http://[$net6:2]:8082/blob" | sha256sum | cut -d' ' -f1)" "$want"
check "... which sees the remote's IPv6 address" grep -q "^$net6:1 .*GET /blob" "$dir/web6.log"
check "... and over IPv4 through the same port, the remote's address as IPv4-mapped" \
	bash -c "[ \"\$(ip netns exec '$ns' curl -sS -m 60 http://$net.2:8082/blob | sha256sum | cut -d' ' -f1)\" = '$want' ] && grep -q '^::ffff:$net.1 .*GET /blob' '$dir/web6.log'"
# (16: past the backlog of 5 of python's http.server; the dataplane holds
# each client until the guest has room, as a Linux client resends its SYN)
check "16 fetches from the remote at once, past the guest's backlog: every checksum matches" \
	is "$(at_once 16 pub pub_fetch)" "$want"
# (the reset can reach curl before or after it sees the connect complete: 7, 52 or 56)
if [ "$tcp_build" = circnet ]; then
	check "TCP with Linux, lwIP listening: its SYN-ACK agrees on scale 5, SACK, timestamps" \
		is "$(ip netns exec "$ns" python3 "$peers" tcpinfo-connect "$net.2" 8080)" "wscale:5 sack:1 ts:1"
fi
check "a published port with nothing listening behind it: the client is reset" \
	bash -c "ip netns exec '$ns' curl -sS -m 5 http://$net.2:8081/ 2>/dev/null; rc=\$?; [ \$rc = 7 ] || [ \$rc = 52 ] || [ \$rc = 56 ]"
timeout 300 "$circnet" run --run-dir "$dir/run" --guest web -- python3 "$peers" udp-from 0.0.0.0 5353 \
	>"$dir/web-udp.log" 2>&1 &
pids+=($!)
wait_listener 'udp .*:5353 '
udp_pub() { # udp_pub SRCPORT: three datagrams and a 1400-byte one to the published port
	ip netns exec "$ns" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); s.bind(('$net.1', $1))
r = []
for i in range(3):
    s.sendto(b'q%d' % i, ('$net.2', 5354)); d, a = s.recvfrom(2000); r.append(d.decode())
s.sendto(b'B' * 1400, ('$net.2', 5354)); d, a = s.recvfrom(2000)
print(' '.join(r), len(d), a == ('$net.2', 5354))"
}
check "a published UDP port: the guest answers the remote, seeing its address" \
	is "$(udp_pub 40001)" "$net.1:q0 $net.1:q1 $net.1:q2 $((1401 + ${#net} + 2)) True"
check "... and a second client gets a flow of its own" \
	is "$(udp_pub 40002)" "$net.1:q0 $net.1:q1 $net.1:q2 $((1401 + ${#net} + 2)) True"
check "a port nobody published: refused (RST from lwIP)" \
	bash -c "ip netns exec '$ns' curl -sS -m 5 http://$net.2:8099/ 2>/dev/null; [ \$? = 7 ]"

# hostile frames: a datagram longer than its frame, a TCP option with length 0
cat >"$dir/badframes.py" <<'PY'
import socket, struct, sys
tap, dst = sys.argv[1], socket.inet_aton(sys.argv[2])
src = socket.inet_aton("10.0.0.9")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((tap, 0))
eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
def csum(b):
    b += b"\0" * (len(b) & 1)
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def ip(total, proto, body):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + body
tcp = struct.pack("!HHIIBBHHH", 999, 80, 1, 0, 6 << 4, 2, 1000, 0, 0) + b"\x02\x00\x00\x00"
tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!HH", 6, len(tcp)) + tcp)) + tcp[18:]
# (checksums right: the parser, not the NIC's checksum check, must be what drops them)
for _ in range(10):
    s.send(eth + ip(1000, 6, b"x" * 20))   # claims 1000 bytes, brings 40
    s.send(eth + ip(44, 6, tcp))           # MSS option of length 0
print("sent 20")
PY
check "20 malformed frames from the wire: dropped and counted, the stack still answers" \
	bash -c "ip netns exec '$ns' python3 '$dir/badframes.py' '$tap' '$net.2' >/dev/null &&
		ip netns exec '$ns' ping -c 1 -W 2 '$net.2' >/dev/null &&
		'$ctl' --run-dir '$dir/run' proxy --json | grep -E '\"rx_malformed\":([2-9][0-9]|[0-9]{3,})' >/dev/null"

status >"$dir/status.txt"
grep -E "^(port|tcp) " "$dir/status.txt" | sed 's/^/     /'
check "the status view: the port's link is up, its queue counted packets" \
	grep -Eq "link up.*queues 1" "$dir/status.txt"
check "... and the JSON view has the port, per-queue and stack counters" \
	bash -c "'$ctl' --run-dir '$dir/run' proxy --json | python3 -c 'import json,sys; d=json.load(sys.stdin); p=d[\"port\"]; sys.exit(not (d[\"backend\"]==\"dpdk\" and p[\"rx_packets\"]>0 and p[\"per_queue\"][0][\"tx_packets\"]>0 and d[\"stack\"][\"rx_frames\"]>0))'"
# TSO (our build, a port that reports TSO and chained mbufs, as net_tap does):
# the uploads above (iperf3, the published fetches) went out as merged frames,
# which the tap's software GSO cut again, and every one of them arrived intact
if [ "$tcp_build" = circnet ]; then
	"$ctl" --run-dir "$dir/run" proxy --json >"$dir/tso.json"
	if python3 -c "import json,sys; o=json.load(open('$dir/tso.json'))['port']['offloads']; sys.exit(not (o['tso'] and o['multi_seg'] and o['tx_cksum']))"; then
		check "TSO: lwIP's consecutive segments went out as merged frames, the transfers intact" \
			python3 -c "import json,sys; s=json.load(open('$dir/tso.json'))['stack']; print('     tso: %d frames carried %d segments' % (s['tso_frames'], s['tso_segs'])); sys.exit(not (s['tso_frames'] > 0 and s['tso_segs'] >= 2 * s['tso_frames']))"
	else
		echo "     (the port reports no TSO with chained mbufs: segments go out one by one)"
	fi
fi
check "every relay ended: none active" \
	bash -c "for i in \$(seq 50); do '$ctl' --run-dir '$dir/run' proxy --json | grep '\"active\":0' >/dev/null && exit 0; sleep 0.1; done; exit 1"

check "SIGTERM: the dataplane stops cleanly (exit 0) within 5 s" stop_dp
# (guests still running, web's UDP server, drop their ends of closed flows lazily)
check "... and the operator holds no circuit with a proxy end after" \
	bash -c "for i in \$(seq 30); do ! '$ctl' --run-dir '$dir/run' circuits | grep ' proxy ' >/dev/null && exit 0; sleep 0.1; done; '$ctl' --run-dir '$dir/run' circuits; exit 1"

# loss: the dataplane drops 2 % of the frames each way (lwIP must retransmit
# and Linux must too), and tc netem adds 2 % on the remote where the kernel has it
if start_dp --fault-drop 20000; then
	netem=
	remote tc qdisc add dev "$tap" root netem loss 2% 2>/dev/null && netem=" and 2 % more by tc netem"
	check "2 % loss each way$netem: the 5 MiB fetch is intact" is "$(fetch)" "$want"
	check "... and iperf3 guest to remote completes" iperf iperf3-loss
	check "... the stack counted the frames it dropped" \
		bash -c "'$ctl' --run-dir '$dir/run' proxy --json | grep -E '\"injected_drops\":[1-9]' >/dev/null"
	check "... and stops cleanly" stop_dp
else
	check "the dataplane restarts with --fault-drop" false
fi

# two stacks, two queues, two polling lcores (our lwIP build: a copy of the
# loop module per core). net_tap has no RSS here: the tap spreads frames by
# its own hash and the stacks hand each other what the other owns.
if [ "$tcp_build" = circnet ]; then
	last=$(($(nproc) - 1))
	eal_cores=(--lcores "0@0,1@$last,2@$last")
	want_sessions=3 # loop 0: tcp and udp; loop 1: tcp
	if start_dp --gw6 "$net6:1"; then
		status --json >"$dir/multi.json"
		check "two polling lcores: two stacks, each on a queue of its own" \
			python3 -c "import json,sys; d=json.load(open('$dir/multi.json')); sys.exit(not (len(d['stacks'])==2 and d['port']['queues']==2))"
		check "... the stacks answer ping" remote ping -c 3 -i 0.2 -W 2 "$net.2" -q
		check "... curl in a guest fetches 5 MiB, checksum matches" is "$(fetch)" "$want"
		check "... 8 fetches at once, every checksum matches" \
			is "$(at_once 8 mpar fetch)" "$want"
		check "... 6 fetches from the remote through the published port, every checksum matches" \
			is "$(at_once 6 mpub pub_fetch)" "$want"
		check "... 300 connections at once, each echoes its bytes intact" \
			is "$(timeout 90 "$circnet" run --run-dir "$dir/run" --guest client -- \
				bash -c "ulimit -n 8192; exec python3 '$peers' many '$net.1' 8300 300")" True
		check "... --gw6: a guest fetches 5 MiB from an IPv6 host off the /64, checksum matches" \
			is "$(guest curl -sS -m 60 "http://[$far6]:8007/blob" | sha256sum | cut -d' ' -f1)" "$want"
		check "... UDP (stack 0's) answered, a 14000-byte datagram whole" \
			is "$(guest python3 "$peers" udp-ask "$net.1" 5353 14000)" "20 14007 True"
		status --json >"$dir/multi.json"
		check "... both stacks carried connections (each sent and received frames)" \
			python3 -c "import json,sys; s=json.load(open('$dir/multi.json'))['stacks']; print('     stacks:', s); sys.exit(not all(x['rx_frames']+x['taken_over']>0 and x['tx_frames']>0 for x in s))"
		check "... and stops cleanly" stop_dp
	else
		check "the dataplane starts with two polling lcores" false
	fi
fi

if [ "$failed" -gt 0 ]; then
	echo "dpdk.sh: $failed check(s) failed; the dataplane's log:"
	tail -30 "$dir/dataplane.log" | sed 's/^/    /'
	report_failures "$dir/dataplane.log"
	[ -s "$dir/curl.err" ] && sed 's/^/    curl: /' "$dir/curl.err"
	exit 1
fi
echo "dpdk.sh: all checks passed"
