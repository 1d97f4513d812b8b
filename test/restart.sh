#!/usr/bin/env bash
# test/restart.sh BUILD_DIR - nothing is lost when the operator restarts
# (issue 13). Servers run as guests: nginx (master and 2 workers), python3's
# http.server, redis and memcached; guest client loads them (wrk,
# redis-benchmark, a curl loop checking contents, one long-lived redis
# connection) while the operator is killed with SIGKILL and restarted 4 times,
# then left down for 5 s. Checked: the servers spin no CPU while it is down;
# after it, every one accepts new connections without being restarted, all
# 4 listeners are back within 5 s of the operator's start, established
# connections lived through it all, no content was ever wrong and no request
# hung, and no server grew fds or memory. Then a config that no longer lets
# py listen: py:8000 is refused while python lives on idle, and serves again
# once the original config is back. A guest cannot take another's address.
# Needs root: exits 77 (skipped) without it.
# pid lists (procs[NAME], fd counts) are split into words on purpose
# shellcheck disable=SC2086,SC2206,SC2207
set -uo pipefail
build=$(cd "${1:?usage: restart.sh BUILD_DIR}" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
circnet=$build/guest/circnet

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
	echo "restart.sh: needs root and network namespaces: skipped"
	exit 77
fi
for tool in python3 curl wrk sha256sum nginx redis-server redis-cli redis-benchmark memcached pgrep; do
	command -v "$tool" >/dev/null || { echo "restart.sh: $tool missing (scripts/deps.sh installs it)"; exit 1; }
done
# third-party programs under a sanitizer build's preload: no leak reports of theirs
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=0"
py3=$(python3 -c 'import sys; print(sys.executable)') # the interpreter itself, not a shim
hz=$(getconf CLK_TCK)
dir=$(mktemp -d /tmp/circnet-restart-test.XXXXXX)
chmod 755 "$dir" # nginx workers and memcached run as nobody
stop=$dir/chaos.done # the loads stop when it appears
pids=()              # background jobs: the servers and the loads
op_wrap='' op_pid='' # the operator's `timeout` and the operator itself

alive() { # alive PID: exists and is not a zombie
	local s
	s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$s" ] && [ "${s%% *}" != Z ]
}
descendants() { # descendants PID: its children, theirs, ...
	local c
	for c in $(pgrep -P "$1"); do
		echo "$c"
		descendants "$c"
	done
}
cleanup() {
	local p all=() roots=() left=()
	[ -n "$op_wrap" ] && pids+=("$op_wrap")
	# only processes of ours: jobs of this shell still running, and below them
	for p in "${pids[@]}"; do
		if [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2)" != "$$" ] || ! alive "$p"; then
			continue
		fi
		roots+=("$p")
		all+=("$p" $(descendants "$p"))
	done
	for p in "${roots[@]}"; do kill "$p" 2>/dev/null; done # timeout passes SIGTERM on
	# bounded: what outlives SIGTERM by 5 s is named, then killed
	for _ in $(seq 50); do
		left=()
		for p in "${all[@]}"; do alive "$p" && left+=("$p"); done
		[ ${#left[@]} -eq 0 ] && break
		sleep 0.1
	done
	if [ ${#left[@]} -gt 0 ]; then
		echo "restart.sh: still running 5 s after SIGTERM (killed now):"
		ps -o pid,ppid,stat,wchan:24,args -p "$(IFS=,; echo "${left[*]}")" | sed 's/^/    /'
		for p in "${left[@]}"; do kill -9 "$p" 2>/dev/null; done
	fi
	wait 2>/dev/null
	[ -n "${CIRCNET_KEEP_TEST_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# check, is, report_failures (its guest is replaced below: any guest, not only client)
. "$(dirname "$0")/lib.sh"
below() { # below GOT LIMIT: GOT < LIMIT (integers), or say what came
	[ "$1" -lt "$2" ] 2>/dev/null || { echo "     got '$1', want below $2"; return 1; }
}
guest() { # guest NAME COMMAND...: run it as that guest, bounded in time
	local g=$1
	shift
	timeout 30 "$circnet" run --run-dir "$dir/run" --guest "$g" -- "$@"
}
retry() { # retry N COMMAND...: until it succeeds, at most N tries 0.2 s apart;
	# what shows is the output of the try that succeeded, or all of the last one's
	local n=$1 out
	shift
	for _ in $(seq $((n - 1))); do
		if out=$("$@" 2>/dev/null); then
			[ -z "$out" ] || printf '%s\n' "$out"
			return 0
		fi
		sleep 0.2
	done
	"$@"
}
now_ms() {
	local t=${EPOCHREALTIME//[!0-9]/}
	echo $((t / 1000))
}

# the operator: started again and again, killed as a crash would kill it
start_operator() { # start_operator [CONFIG]: returns once it answers (5 s at most)
	timeout 280 "$op" --config "${1:-$dir/circnet.conf}" 2>>"$dir/operator.log" &
	op_wrap=$!
	op_pid=
	for _ in $(seq 100); do
		[ -n "$op_pid" ] || op_pid=$(pgrep -P "$op_wrap")
		[ -n "$op_pid" ] && "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "     the operator did not answer within 5 s"
	return 1
}
kill_operator() { # SIGKILL, then reap it
	[ -n "$op_pid" ] && kill -9 "$op_pid" 2>/dev/null
	[ -n "$op_wrap" ] && wait "$op_wrap" 2>/dev/null
	op_wrap='' op_pid=''
}
listener_ports() { # the ports the operator lists TCP listeners on, sorted, on one line
	"$ctl" --run-dir "$dir/run" listeners 2>/dev/null |
		awk '$3 == "tcp" { n = split($4, a, ":"); print a[n] }' | sort -nu | tr '\n' ' ' | sed 's/ $//'
}
wait_ports() { # wait_ports T0_MS LIMIT_MS PORT...: until the listeners are exactly these
	# ports; echoes the ms since T0_MS, or "never" (and fails) past LIMIT_MS
	local t0=$1 limit=$2 t
	shift 2
	while :; do
		t=$(($(now_ms) - t0))
		[ "$(listener_ports)" = "$*" ] && { echo "$t"; return 0; }
		[ "$t" -gt "$limit" ] && { echo never; return 1; }
		sleep 0.05
	done
}
status_field() { # status_field KEY: a total from `circnetctl status --json`
	"$ctl" --run-dir "$dir/run" status --json 2>/dev/null |
		"$py3" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null
}

# the servers, each a guest started with `circnet run`
declare -A srv  # NAME -> the `timeout` around its `circnet run`
declare -A procs # NAME -> its processes (pids), as found before the chaos
start_server() { # start_server NAME LOG COMMAND...: in the background
	local g=$1 log=$2
	shift 2
	timeout 280 "$circnet" run --run-dir "$dir/run" --guest "$g" -- "$@" >"$log" 2>&1 &
	srv[$g]=$!
	pids+=($!)
}
server_procs() { # server_procs NAME: the processes under its `circnet run`, sorted
	local launcher
	launcher=$(pgrep -P "${srv[$1]}" | head -1)
	[ -n "$launcher" ] && descendants "$launcher" | sort -n | tr '\n' ' ' | sed 's/ $//'
}
cpu_ms() { # cpu_ms PID...: utime + stime of these processes (all threads), in ms
	local p t sum=0
	for p in "$@"; do
		t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
		sum=$((sum + ${t:-0}))
	done
	echo $((sum * 1000 / hz))
}
rss_kib() { # rss_kib PID...: VmRSS summed, in KiB
	local p t sum=0
	for p in "$@"; do
		t=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}
fds() { # fds PID...: the open fd count of each
	local p out=()
	for p in "$@"; do out+=("$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"); done
	echo "${out[*]}"
}
servers=(web py cache mc)

cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
network 10.68.0.0/24
guest web {
    address 10.68.0.2
    listen tcp 80
}
guest py {
    address 10.68.0.3
    listen tcp 8000
}
guest cache {
    address 10.68.0.4 fd68::4
    listen tcp 6379
}
guest mc {
    address 10.68.0.5
    listen tcp 11211
}
guest client {
    address 10.68.0.10 fd68::10
}
allow tcp from client to web port 80
allow tcp from client to py port 8000
allow tcp from client to cache port 6379
allow tcp from client to mc port 11211
deny any from any to any
CONF
# the same, but py may no longer listen
sed '/listen tcp 8000/d' "$dir/circnet.conf" >"$dir/circnet-nopy.conf"

# the small clients, run in guest client
cat >"$dir/helpers.py" <<'PY'
import os, socket, sys, time


def ping(host, port, stop, limit):
    """PING every 200 ms on one connection until STOP exists: all must PONG."""
    deadline = time.monotonic() + float(limit)
    s = socket.create_connection((host, int(port)), timeout=5)
    print("connected", flush=True)
    pongs, worst = 0, 0.0
    try:
        while not os.path.exists(stop) and time.monotonic() < deadline:
            t = time.monotonic()
            s.sendall(b"PING\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                d = s.recv(64)
                if not d:
                    raise ConnectionError("connection closed")
                buf += d
            if buf != b"+PONG\r\n":
                raise ValueError("answer %r" % buf)
            worst = max(worst, time.monotonic() - t)
            pongs += 1
            time.sleep(0.2)
    except Exception as e:
        print("%d PONGs, then %s: %s" % (pongs, type(e).__name__, e))
        return 1
    print("%d PONGs, none failed, slowest %.0f ms" % (pongs, worst * 1000))
    return 0 if pongs else 1


def mc(host, port, op, key=None, value=None):
    """memcached text protocol: version, set KEY VALUE, get KEY."""
    s = socket.create_connection((host, int(port)), timeout=5)
    f = s.makefile("rb")
    if op == "version":
        s.sendall(b"version\r\n")
        line = f.readline()
        print(line.decode().strip())
        return 0 if line.startswith(b"VERSION ") else 1
    if op == "set":
        s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value.encode()))
        line = f.readline()
        print(line.decode().strip())
        return 0 if line == b"STORED\r\n" else 1
    s.sendall(b"get %s\r\n" % key.encode())
    line = f.readline()
    if not line.startswith(b"VALUE "):
        print("no value: %r" % line)
        return 1
    n = int(line.split()[3])
    data = f.read(n + 2)[:n]
    print(data.decode())
    return 0 if f.readline() == b"END\r\n" else 1


def bind(host, port):
    """Listen on HOST:PORT: prints the errno it fails with, or "listening"."""
    s = socket.socket()
    try:
        s.bind((host, int(port)))
        s.listen(5)
    except OSError as e:
        print(e.errno)
        return 0
    print("listening")
    return 0


sys.exit({"ping": ping, "mc": mc, "bind": bind}[sys.argv[1]](*sys.argv[2:]))
PY
# fetchloop.sh STOP MAX URL SHA256 URL SHA256: fetch the two in turn until STOP
# exists (MAX at most); one line per request: N URL rc=RC ok|err|WRONG|HANG MS
cat >"$dir/fetchloop.sh" <<'SH'
stop=$1 max=$2 i=0
tmp=$(dirname "$stop")/fetch.tmp
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
while [ ! -e "$stop" ] && [ "$i" -lt "$max" ]; do
	i=$((i + 1))
	if [ $((i % 2)) = 0 ]; then url=$3 want=$4; else url=$5 want=$6; fi
	t0=$(now_ms)
	curl -sS --max-time 10 -o "$tmp" "$url" 2>>"$tmp.err"
	rc=$?
	ms=$(($(now_ms) - t0))
	if [ "$rc" = 28 ] || [ "$ms" -gt 11000 ]; then verdict=HANG
	elif [ "$rc" != 0 ]; then verdict=err
	elif [ "$(sha256sum <"$tmp" | cut -d' ' -f1)" = "$want" ]; then verdict=ok
	else verdict=WRONG
	fi
	echo "$i $url rc=$rc $verdict ${ms}ms"
	sleep 0.1
done
SH
# benchloop.sh STOP: redis-benchmark again and again until STOP exists (30 at most);
# one line per run: N rc=RC complete|noconnect|ERROR|HANG. A run takes 1-2 s
# (under ASan and the chaos, a few); one still going after 15 s hangs.
# It runs through the quick restarts, not the long outage: a connect that
# fails (EHOSTUNREACH once the operator has been gone for 3 s, as for a host
# that never answers) makes redis-benchmark spin forever, over circuits as
# over TCP (its writeHandler retries the EAGAIN that cliWriteConn reports
# for any error of a non-blocking context).
cat >"$dir/benchloop.sh" <<'SH'
stop=$1 i=0
out=$(dirname "$stop")/bench.tmp
while [ ! -e "$stop" ] && [ "$i" -lt 30 ]; do
	i=$((i + 1))
	timeout 15 redis-benchmark -h cache -n 20000 -c 4 -q -t get,set >"$out" 2>&1
	rc=$?
	n=$(tr '\r' '\n' <"$out" | grep -c 'requests per second')
	if [ "$rc" = 124 ]; then verdict=HANG
	elif [ "$rc" = 0 ] && [ "$n" = 2 ]; then verdict=complete
	elif grep -q 'Could not connect' "$out"; then verdict=noconnect
	else verdict=ERROR
	fi
	echo "$i rc=$rc $verdict $(tr '\r' '\n' <"$out" | grep -vE 'rps=|^ *$' | tail -3 | tr '\n' ' ')"
	sleep 0.2
done
SH

# what they serve
mkdir -p "$dir/www" "$dir/pywww" "$dir/nginx"
echo "nginx, over a circuit" >"$dir/www/index.html"
head -c 1048576 /dev/urandom >"$dir/www/blob.bin"
head -c 65536 /dev/urandom >"$dir/pywww/known.bin"
blobsum=$(sha256sum <"$dir/www/blob.bin" | cut -d' ' -f1)
knownsum=$(sha256sum <"$dir/pywww/known.bin" | cut -d' ' -f1)
cat >"$dir/nginx/nginx.conf" <<NGX
worker_processes 2;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log info;
events { worker_connections 256; }
http {
    access_log off;
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

start_operator || { echo "restart.sh: the operator did not start"; tail -20 "$dir/operator.log"; exit 1; }
start_server web "$dir/nginx/out.log" nginx -c "$dir/nginx/nginx.conf" -g 'daemon off;'
start_server py "$dir/py.log" "$py3" -m http.server 8000 --directory "$dir/pywww"
start_server cache "$dir/redis.log" redis-server --port 6379 --save '' --appendonly no --protected-mode no
# memcached: no UDP; it drops root for nobody before it opens its sockets
start_server mc "$dir/memcached.log" memcached -U 0 -p 11211 -u nobody
listening() { wait_ports "$1" 15000 80 6379 8000 11211 >/dev/null; }
check "the 4 servers listen (ports 80 6379 8000 11211)" listening "$(now_ms)"

# 2. baseline: each answers with the right content
page() { guest client curl -sS --max-time 10 "$1"; }
sha_of() { guest client curl -sS --max-time 10 "$1" | sha256sum | cut -d' ' -f1; }
redis() { guest client redis-cli -h cache "$@"; }
memc() { guest client "$py3" "$dir/helpers.py" mc mc 11211 "$@"; }
check_web_page() { is "$(page http://web/)" "nginx, over a circuit"; }
check_web_blob() { is "$(sha_of http://web/blob.bin)" "$blobsum"; }
check_py_file() { is "$(sha_of http://py:8000/known.bin)" "$knownsum"; }
check "nginx serves its page" retry 25 check_web_page
check "nginx: 1 MiB, checksum matches" check_web_blob
check "python http.server: 64 KiB, checksum matches" retry 25 check_py_file
redis_ping() { is "$(redis ping)" PONG; }
check "redis answers PING" retry 25 redis_ping
check "redis SET" is "$(redis set restart:k kept)" OK
check "redis GET" is "$(redis get restart:k)" kept
memc_version() { memc version >/dev/null; }
check "memcached answers version" retry 25 memc_version
check "memcached set" is "$(memc set restart-k kept)" STORED
check "memcached get" is "$(memc get restart-k)" kept
# 9. nobody takes another guest's listener
check "guest client cannot listen on web's 10.68.0.2:80 (errno 99, EADDRNOTAVAIL)" \
	is "$(guest client "$py3" "$dir/helpers.py" bind 10.68.0.2 80)" 99

# 6. before the chaos: the processes, their fds and memory, the operator's totals
for _ in $(seq 30); do [ "$(status_field circuits)" = 0 ] && break; sleep 0.1; done
circuits_before=$(status_field circuits)
guests_before=$(status_field guests)
listeners_before=$(status_field listeners)
declare -A fds_before rss_before
for s in "${servers[@]}"; do
	procs[$s]=$(server_procs "$s")
	fds_before[$s]=$(fds ${procs[$s]})
	rss_before[$s]=$(rss_kib ${procs[$s]})
	echo "     $s: processes ${procs[$s]:-none}; fds ${fds_before[$s]}; RSS ${rss_before[$s]} KiB"
done
echo "     operator: $guests_before guests, $listeners_before listeners, $circuits_before circuits"
check "nginx runs as a master and 2 workers" is "$(wc -w <<<"${procs[web]}")" 3

# 3. the chaos: loads in guest client, the operator killed and restarted under them
echo "chaos: loads for 20 s; the operator killed (SIGKILL) and restarted 4 times, then down 5 s"
rm -f "$stop" "$dir/bench.stop"
# 7. one long-lived connection, established before the first kill
timeout 90 "$circnet" run --run-dir "$dir/run" --guest client -- \
	"$py3" "$dir/helpers.py" ping cache 6379 "$stop" 80 >"$dir/pinger.out" 2>&1 &
pinger=$!
pids+=($!)
for _ in $(seq 100); do grep -q connected "$dir/pinger.out" && break; sleep 0.05; done
timeout 60 "$circnet" run --run-dir "$dir/run" --guest client -- \
	wrk -t1 -c4 -d20s http://web/ >"$dir/wrk.out" 2>&1 &
wrk=$!
pids+=($!)
timeout 120 "$circnet" run --run-dir "$dir/run" --guest client -- \
	bash "$dir/benchloop.sh" "$dir/bench.stop" >"$dir/bench.log" 2>&1 &
bench=$!
pids+=($!)
timeout 90 "$circnet" run --run-dir "$dir/run" --guest client -- \
	bash "$dir/fetchloop.sh" "$stop" 400 http://web/blob.bin "$blobsum" http://py:8000/known.bin "$knownsum" \
	>"$dir/fetch.log" 2>&1 &
fetch=$!
pids+=($!)
sleep 2
for i in 1 2 3 4; do
	kill_operator
	sleep 0.2
	t0=$(now_ms)
	start_operator
	up=$(($(now_ms) - t0))
	back=$(wait_ports "$t0" 3000 80 6379 8000 11211)
	echo "     restart $i: the operator answers after $up ms, all 4 listeners back after $back ms"
	sleep 1
done
touch "$dir/bench.stop"
wait "$bench"
# 4. down for 5 s: the servers wait, they do not spin
kill_operator
declare -A cpu0 cpu_down
for s in "${servers[@]}"; do cpu0[$s]=$(cpu_ms ${procs[$s]}); done
sleep 5
for s in "${servers[@]}"; do cpu_down[$s]=$(($(cpu_ms ${procs[$s]}) - ${cpu0[$s]})); done
echo "     CPU in the 5 s the operator was down: web ${cpu_down[web]} ms, py ${cpu_down[py]} ms," \
	"cache ${cpu_down[cache]} ms, mc ${cpu_down[mc]} ms"
t0=$(now_ms)
start_operator
back=$(wait_ports "$t0" 10000 80 6379 8000 11211)
echo "     time from operator start to all listeners back: $back ms"
check "after the last restart all 4 listeners are back in < 5000 ms" below "${back/never/99999}" 5000
for s in "${servers[@]}"; do
	check "$s used < 250 ms CPU while the operator was down 5 s" below "${cpu_down[$s]}" 250
done
all_alive() { # all_alive PID...
	local p
	for p in "$@"; do alive "$p" || { echo "     process $p is gone"; return 1; }; done
}
same_procs() { # same_procs NAME: the processes it had before the chaos, no more, all alive
	is "$(server_procs "$1")" "${procs[$1]}" && all_alive ${procs[$1]}
}
for s in "${servers[@]}"; do
	check "$s was not restarted: the same processes, all alive" same_procs "$s"
done

# 5. after it: every server accepts new connections, with the right contents
check "after the restarts nginx serves its page" retry 10 check_web_page
check "after the restarts nginx: 1 MiB, checksum matches" check_web_blob
check "after the restarts python http.server: 64 KiB, checksum matches" retry 10 check_py_file
check "after the restarts redis GET of the key set before" is "$(retry 10 redis get restart:k)" kept
check "after the restarts memcached get of the key set before" is "$(retry 10 memc get restart-k)" kept
check "after the restarts guest client still cannot listen on web's 10.68.0.2:80 (errno 99)" \
	is "$(guest client "$py3" "$dir/helpers.py" bind 10.68.0.2 80)" 99

# the loads' verdicts
wait "$wrk"
wrk_rc=$?
touch "$stop"
wait "$pinger"
pinger_rc=$?
wait "$fetch"
echo "     wrk (exit $wrk_rc):"
grep -E 'requests in|Requests/sec|Socket errors|Non-2xx' "$dir/wrk.out" | tr -s ' ' | sed 's/^ */         /'
wrk_ok() {
	is "$wrk_rc" 0 && [ "$(awk '/ requests in /{ print $1 }' "$dir/wrk.out")" -gt 1000 ] 2>/dev/null &&
		! grep -q 'Non-2xx' "$dir/wrk.out"
}
check "wrk ran its 20 s, over 1000 requests, only 200s" wrk_ok
echo "     redis-benchmark: $(wc -l <"$dir/bench.log") runs:" \
	"$(grep -c ' complete' "$dir/bench.log") complete, $(grep -c ' noconnect' "$dir/bench.log") could not connect," \
	"$(grep -c ' ERROR' "$dir/bench.log") failed later, $(grep -c ' HANG' "$dir/bench.log") hung"
grep -E ' (ERROR|HANG)' "$dir/bench.log" | head -5 | sed 's/^/         /'
bench_ok() { grep -q ' complete' "$dir/bench.log" && ! grep -qE ' (ERROR|HANG)' "$dir/bench.log"; }
check "redis-benchmark: a run completed; none hung; none lost a connection once made" bench_ok
echo "     fetches: $(wc -l <"$dir/fetch.log") requests: $(grep -c ' ok ' "$dir/fetch.log") right," \
	"$(grep -c ' err ' "$dir/fetch.log") curl errors ($(awk '$4 == "err" { print $3 }' "$dir/fetch.log" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')), " \
	"$(grep -c ' WRONG ' "$dir/fetch.log") wrong contents, $(grep -c ' HANG ' "$dir/fetch.log") hung"
grep -E ' (WRONG|HANG) ' "$dir/fetch.log" | head -5 | sed 's/^/         /'
fetch_ok() { grep -q ' ok ' "$dir/fetch.log" && ! grep -qE ' (WRONG|HANG) ' "$dir/fetch.log"; }
check "curl loop: no wrong content, no request hung past --max-time 10, some right" fetch_ok
echo "     redis connection held through it all: $(tail -1 "$dir/pinger.out")"
check "the redis connection made before the first kill answered every PING" is "$pinger_rc" 0

# 6. nothing grew: fds and memory of each server process, the operator's totals
sleep 2
for _ in $(seq 50); do [ "$(status_field circuits)" = "$circuits_before" ] && break; sleep 0.1; done
circuits_after=$(status_field circuits)
# what is left, for the report if the count is off
[ "$circuits_after" = "$circuits_before" ] ||
	"$ctl" --run-dir "$dir/run" circuits >"$dir/circuits-left.txt" 2>&1
echo "     operator: $(status_field guests) guests, $(status_field listeners) listeners, $circuits_after circuits"
fds_grow() { # fds_grow BEFORE AFTER: each by at most 2
	local b=($1) a=($2) i
	[ ${#a[@]} = ${#b[@]} ] || return 1
	for i in "${!b[@]}"; do [ "${a[$i]}" -le $((b[i] + 2)) ] || return 1; done
}
for s in "${servers[@]}"; do
	fa=$(fds ${procs[$s]})
	ra=$(rss_kib ${procs[$s]})
	echo "     $s: fds ${fds_before[$s]} -> $fa; RSS ${rss_before[$s]} -> $ra KiB"
	check "$s: no process of it gained more than 2 fds" fds_grow "${fds_before[$s]}" "$fa"
	check "$s: RSS grew by less than 16 MiB" below $((ra - rss_before[$s])) 16384
done
check "the operator's circuits are back to $circuits_before" is "$circuits_after" "$circuits_before"
check "the operator's guests and listeners are as before" \
	is "$(status_field guests) $(status_field listeners)" "$guests_before $listeners_before"

# 8. a config that no longer lets py listen on 8000: as if its port were taken away
kill_operator
start_operator "$dir/circnet-nopy.conf"
sleep 1 # the guests have come back and been answered
t0=$(now_ms)
guest client curl -sS --max-time 5 -o /dev/null http://py:8000/known.bin 2>/dev/null
rc=$?
ms=$(($(now_ms) - t0))
echo "     new config: curl to py:8000 exits $rc after $ms ms; listeners on: $(listener_ports)"
check "config without py's listen line: py:8000 refused (curl exit 7)" is "$rc" 7
check "config without py's listen line: refused promptly (< 3000 ms)" below "$ms" 3000
check "config without py's listen line: the others' listeners are back" \
	is "$(wait_ports "$(now_ms)" 3000 80 6379 11211 >/dev/null; listener_ports)" "80 6379 11211"
c0=$(cpu_ms ${procs[py]})
sleep 2
c1=$(($(cpu_ms ${procs[py]}) - c0))
echo "     python http.server: ${c1} ms CPU over 2 s"
check "config without py's listen line: the python server lives on" all_alive ${procs[py]}
check "config without py's listen line: the python server idles (< 100 ms CPU in 2 s)" below "$c1" 100
kill_operator
t0=$(now_ms)
start_operator
back=never
for _ in $(seq 50); do
	if [ "$(sha_of http://py:8000/known.bin 2>/dev/null)" = "$knownsum" ]; then
		back=$(($(now_ms) - t0))
		break
	fi
	[ $(($(now_ms) - t0)) -gt 5000 ] && break
	sleep 0.1
done
echo "     original config again: py:8000 serves after $back ms"
check "original config again: py:8000 serves within 5 s" below "${back/never/99999}" 5000

if [ "$failed" -ne 0 ]; then
	echo "restart.sh: $failed checks failed:"
	printf '    %s\n' "${failed_names[@]}"
	echo "operator log (warnings and errors):"
	grep -E " (warning|error|crit|alert|emerg):" "$dir/operator.log" | tail -20 | sed 's/^/    /'
	if [ -s "$dir/circuits-left.txt" ]; then
		echo "circuits left after the chaos (circnetctl circuits):"
		head -20 "$dir/circuits-left.txt" | sed 's/^/    /'
	fi
	for f in nginx/error.log nginx/out.log py.log redis.log memcached.log; do
		echo "$f:"
		tail -5 "$dir/$f" 2>/dev/null | sed 's/^/    /'
	done
	exit 1
fi
echo "restart.sh: all checks passed"
