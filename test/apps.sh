#!/usr/bin/env bash
# test/apps.sh BUILD_DIR - unmodified Debian programs over circuits, each in
# its own guest (`circnet run`): python3's http.server and nginx serving
# files to curl, wget and wrk, redis with redis-cli and redis-benchmark,
# iperf3 TCP and UDP, sshd (privilege separation, seccomp sandbox, re-exec)
# with ssh running commands; contents checked by checksum. Then the
# isolation a guest lives in: no network but circuits without the preload,
# no raw sockets, no other guests' sockets. Needs root: exits 77 (skipped)
# without it.
set -uo pipefail
build=$(cd "${1:?usage: apps.sh BUILD_DIR}" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
circnet=$build/guest/circnet

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
	echo "apps.sh: needs root and network namespaces: skipped"
	exit 77
fi
for tool in python3 curl wget wrk sha256sum nginx redis-server redis-cli redis-benchmark iperf3 \
	/usr/sbin/sshd ssh ssh-keygen; do
	command -v "$tool" >/dev/null || { echo "apps.sh: $tool missing (scripts/deps.sh installs it)"; exit 1; }
done
# third-party programs under a sanitizer build's preload: no leak reports of theirs
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0"
dir=$(mktemp -d /tmp/circnet-apps-test.XXXXXX)
chmod 755 "$dir" # nginx workers run as www-data
pids=()
failed=0
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
check() { # check NAME COMMAND...: one line per check
	if "${@:2}"; then echo "ok   $1"; else echo "FAIL $1"; failed=$((failed + 1)); fi
}
guest() { # guest NAME COMMAND...: run it as that guest, bounded in time
	local g=$1
	shift
	timeout 30 "$circnet" run --run-dir "$dir/run" --guest "$g" -- "$@"
}

cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
network 10.67.0.0/24
guest web {
    address 10.67.0.2
    listen tcp 80
}
guest www {
    address 10.67.0.3
    listen tcp 80
}
guest cache {
    address 10.67.0.4 fd67::4
    listen any 6379,5201
}
guest shell {
    address 10.67.0.5
    listen tcp 22
}
guest client {
    address 10.67.0.10 fd67::10
}
allow tcp from client to web port 80
allow tcp from client to www port 80
allow any from client to cache port 6379,5201
allow tcp from client to shell port 22
deny any from any to any
CONF
"$op" --config "$dir/circnet.conf" 2>"$dir/operator.log" &
pids+=($!)
for _ in $(seq 50); do "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p "$dir/www"
head -c 3145728 /dev/urandom >"$dir/www/blob.bin"
echo "hello over a circuit" >"$dir/www/index.html"
want=$(sha256sum <"$dir/www/blob.bin" | cut -d' ' -f1)
(cd "$dir/www" && exec timeout 60 "$circnet" run --run-dir "$dir/run" --guest web -- \
	python3 -m http.server 80 >"$dir/web.log" 2>&1) &
pids+=($!)
for _ in $(seq 100); do
	"$ctl" --run-dir "$dir/run" listeners | grep -q ':80 ' && break
	sleep 0.1
done

# nginx as Debian runs it: master and workers, epoll, sendfile
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<NGX
worker_processes 2;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log info;
events { worker_connections 256; }
http {
    access_log $dir/nginx/access.log;
    sendfile on;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server {
        listen 80;
        root $dir/www;
    }
}
NGX
timeout 60 "$circnet" run --run-dir "$dir/run" --guest www -- \
	nginx -c "$dir/nginx/nginx.conf" -g 'daemon off;' >"$dir/nginx/out.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[ "$("$ctl" --run-dir "$dir/run" listeners | grep -c ':80 ')" = 2 ] && break
	sleep 0.1
done

# redis: epoll, 0.0.0.0 and a V6ONLY :: on the same port; its epoll_wait spins
# 20 us before sleeping (CIRCNET_SPIN_US), so that path runs here too
CIRCNET_SPIN_US=20 timeout 60 "$circnet" run --run-dir "$dir/run" --guest cache -- redis-server --port 6379 \
	--save '' --appendonly no --protected-mode no >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[ "$("$ctl" --run-dir "$dir/run" listeners | grep -c ':6379 ')" = 2 ] && break
	sleep 0.1
done

# the programs
check "curl fetches a page by guest name" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 10 http://web/index.html)\" = 'hello over a circuit' ]"
check "curl fetches 3 MiB, checksum matches" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 20 http://10.67.0.2/blob.bin | sha256sum | cut -d' ' -f1)\" = '$want' ]"
check "wget fetches 3 MiB, checksum matches" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- wget -q -O - -T 10 http://web/blob.bin | sha256sum | cut -d' ' -f1)\" = '$want' ]"
check "10 requests on one keep-alive connection" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 20 $(printf 'http://web/index.html %.0s' $(seq 10)) | grep -c hello)\" = 10 ]"
check "nginx serves a page" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 10 http://www/index.html)\" = 'hello over a circuit' ]"
check "nginx sendfile: 3 MiB, checksum matches" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 20 http://www/blob.bin | sha256sum | cut -d' ' -f1)\" = '$want' ]"
check "nginx: 40 requests, 8 connections in parallel, all 3 MiB intact" \
	bash -c "timeout 60 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS --no-progress-meter -m 40 -Z --parallel-max 8 \
		\$(for i in \$(seq 40); do printf 'http://www/blob.bin -o $dir/par-%d ' \$i; done) &&
		[ \"\$(cat $dir/par-* | wc -c)\" = \$((40 * 3145728)) ] &&
		[ \"\$(sha256sum $dir/par-* | cut -d' ' -f1 | sort -u)\" = '$want' ]"
# past nginx's 1000 requests per keep-alive connection: wrk reconnects
check "wrk: 2 s, 4 connections, over 5000 requests, only 200s, no socket errors" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- wrk -t1 -c4 -d2s http://www/index.html >'$dir/wrk.out' 2>&1 &&
		grep -E 'requests in|Requests/sec' '$dir/wrk.out' | tr -s ' ' | sed 's/^ */wrk: /' &&
		[ \"\$(awk '/ requests in /{print \$1}' '$dir/wrk.out')\" -gt 5000 ] &&
		! grep -qE 'Socket errors|Non-2xx' '$dir/wrk.out'"
check "nginx logged the client's guest address" \
	grep -q '^10.67.0.10 ' "$dir/nginx/access.log"
check "redis-cli SET then GET (IPv4 and IPv6)" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- redis-cli -h 10.67.0.4 set k circuits >/dev/null &&
		[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- redis-cli -h fd67::4 get k)\" = circuits ]"
check "redis-benchmark: 20000 GET/SET from 10 clients, all answered" \
	bash -c "CIRCNET_SPIN_US=20 timeout 60 '$circnet' run --run-dir '$dir/run' --guest client -- redis-benchmark -h cache -n 20000 -c 10 -t get,set -q 2>/dev/null |
		tr '\\r' '\\n' | grep -c 'requests per second' | grep -qx 2"
timeout 30 "$circnet" run --run-dir "$dir/run" --guest cache -- iperf3 -s -1 -p 5201 >"$dir/iperf3-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	"$ctl" --run-dir "$dir/run" listeners | grep -q ':5201 ' && break
	sleep 0.1
done
check "iperf3 TCP, 2 s, both ends report the transfer" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- iperf3 -c cache -p 5201 -t 2 -J >'$dir/iperf3.json' &&
		python3 -c 'import json,sys; d=json.load(open(\"$dir/iperf3.json\")); e=d[\"end\"]; print(\"iperf3: %.1f Gbit/s\" % (e[\"sum_received\"][\"bits_per_second\"]/1e9)); sys.exit(not (e[\"sum_received\"][\"bytes\"] > 0 and e[\"sum_sent\"][\"bytes\"] >= e[\"sum_received\"][\"bytes\"]))'"
timeout 30 "$circnet" run --run-dir "$dir/run" --guest cache -- iperf3 -s -1 -p 5201 >"$dir/iperf3u-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	"$ctl" --run-dir "$dir/run" listeners | grep -q ':5201 ' && break
	sleep 0.1
done
check "iperf3 UDP, 2 s at 1 Gbit/s, datagrams arrive" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- iperf3 -c cache -p 5201 -u -b 1G -t 2 -J >'$dir/iperf3u.json' &&
		python3 -c 'import json,sys; d=json.load(open(\"$dir/iperf3u.json\")); s=d[\"end\"][\"sum\"]; print(\"iperf3 UDP: %d packets, %d lost\" % (s[\"packets\"], s[\"lost_packets\"])); sys.exit(not (s[\"packets\"] > 0 and s[\"lost_packets\"] < s[\"packets\"]))'"
# sshd as Debian builds it: privilege separation, the seccomp-sandboxed
# pre-authentication child, re-exec per connection (absolute path, no -r).
# Not under a sanitizer build's preload: libcap's constructor in sshd reads
# a file before the sanitizer runtime has started, and instrumented code
# cannot run that early.
if ldd "$build/guest/libcircnet-preload.so" 2>/dev/null | grep 'lib[at]san' >/dev/null; then # no -q: pipefail
	echo "skip sshd checks: the preload carries a sanitizer runtime (libcap runs first)"
else
	mkdir -p "$dir/ssh" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/hostkey"
	ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/userkey"
	cp "$dir/ssh/userkey.pub" "$dir/ssh/authorized_keys"
	cat >"$dir/ssh/sshd_config" <<-SSHD
	Port 22
	HostKey $dir/ssh/hostkey
	AuthorizedKeysFile $dir/ssh/authorized_keys
	PermitRootLogin prohibit-password
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	UsePAM no
	StrictModes no
	PidFile $dir/ssh/sshd.pid
	SSHD
	timeout 60 "$circnet" run --run-dir "$dir/run" --guest shell -- /usr/sbin/sshd -D -e \
		-f "$dir/ssh/sshd_config" >"$dir/ssh/sshd.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		"$ctl" --run-dir "$dir/run" listeners | grep -q ':22 ' && break
		sleep 0.1
	done
	head -c 8388608 /dev/urandom >"$dir/ssh/blob"
	sshwant=$(sha256sum <"$dir/ssh/blob" | cut -d' ' -f1)
	sshc="timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- ssh -i '$dir/ssh/userkey' \
		-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@shell"
	check "ssh runs a command in guest shell" \
		bash -c "[ \"\$($sshc 'echo hello from \$(hostname)')\" = 'hello from shell' ]"
	check "ssh: 8 MiB up, checksum matches" \
		bash -c "[ \"\$($sshc sha256sum <'$dir/ssh/blob' | cut -d' ' -f1)\" = '$sshwant' ]"
	check "ssh: 8 MiB down, checksum matches" \
		bash -c "[ \"\$($sshc cat '$dir/ssh/blob' | sha256sum | cut -d' ' -f1)\" = '$sshwant' ]"
fi
check "the policy refuses a port it does not allow" \
	bash -c "! timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- curl -sS -m 5 http://web:8080/ 2>/dev/null"

# isolation
check "without the preload a guest reaches nothing" \
	bash -c "! timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- env -u LD_PRELOAD curl -sS -m 5 http://10.67.0.2/ 2>/dev/null"
check "a guest cannot open a raw socket" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)' 2>&1 | grep -q 'Operation not permitted'"
check "a guest sees only its own operator socket" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- ls '$dir/run')\" = guest ]"
check "the guest's network has only loopback" \
	bash -c "[ \"\$(timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- ls /sys/class/net)\" = lo ]"
check "exit status passes through" \
	bash -c "timeout 30 '$circnet' run --run-dir '$dir/run' --guest client -- sh -c 'exit 7'; [ \$? = 7 ]"

if [ "$failed" -ne 0 ]; then
	echo "apps.sh: $failed checks failed; operator log:"
	tail -30 "$dir/operator.log"
	echo "web log:"
	tail -10 "$dir/web.log"
	echo "nginx error log:"
	tail -10 "$dir/nginx/error.log"
	echo "sshd log:"
	tail -10 "$dir/ssh/sshd.log"
	exit 1
fi
echo "apps.sh: all checks passed"
