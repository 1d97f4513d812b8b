#!/usr/bin/env bash
# scripts/guests-demo.sh [--quick] [--reps N] [--results DIR] BUILD_DIR
#
# Guests talking over circuits, against the same programs over TCP loopback
# and over a veth bridge between network namespaces (what container networks
# do), measured side by side in one run, repetitions interleaved:
#   nginx (2 workers) + wrk: a small page (requests/s) and a 1 MiB file (Gbit/s)
#   redis-server + redis-benchmark: GET, and GET pipelined 16 deep (requests/s)
#   iperf3: one TCP stream (Gbit/s)
#   sockperf: TCP ping-pong, 64 bytes (latency p50 and p99, microseconds)
# Prints a table with the ratios, writes DIR/guests.{json,csv} (JSON schema
# circnet-bench/v1, as every benchmark). Needs root. Cleans up on exit and
# Ctrl-C. Called by scripts/demo.sh; usable alone.
set -uo pipefail
secs=3
reps=3
results=results
while [ $# -gt 1 ]; do
	case "$1" in
	--quick) secs=2; reps=1 ;;
	--reps) reps=$2; shift ;;
	--results) results=$2; shift ;;
	*) echo "usage: $0 [--quick] [--reps N] [--results DIR] BUILD_DIR" >&2; exit 2 ;;
	esac
	shift
done
build=$(cd "${1:?usage: $0 [--quick] [--reps N] [--results DIR] BUILD_DIR}" && pwd)
if [ "$(id -u)" != 0 ]; then
	echo "guests demo: needs root (network namespaces): skipped"
	exit 0
fi
for tool in nginx wrk redis-server redis-benchmark iperf3 sockperf python3 ip; do
	command -v "$tool" >/dev/null || { echo "guests demo: $tool missing (scripts/deps.sh)"; exit 1; }
done
mkdir -p "$results"
results=$(cd "$results" && pwd)
op=$build/operator/circnet-operator
ctl=$build/operator/circnetctl
circnet=$build/guest/circnet
dir=$(mktemp -d /tmp/circnet-demo.XXXXXX)
chmod 755 "$dir"
tag=$(( $$ % 200 + 20 ))
net=10.218.$tag
nss=cnds$$s
nsc=cnds$$c
br=cnds$$b
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$nss" 2>/dev/null
	ip netns del "$nsc" 2>/dev/null
	ip link del "$br" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '%s\n' "$*" >&2; }

# --- the three networks ---------------------------------------------------
# circuits: an operator and three guests
cat >"$dir/circnet.conf" <<CONF
run-dir $dir/run
guest web {
    address 10.219.0.2
    listen tcp 80
}
guest cache {
    address 10.219.0.3
    listen tcp 6379,5201,11111
}
guest client {
    address 10.219.0.10
}
allow tcp from client to web port 80
allow tcp from client to cache port 6379,5201,11111
CONF
"$op" --config "$dir/circnet.conf" 2>"$dir/operator.log" &
pids+=($!)
for _ in $(seq 50); do "$ctl" --run-dir "$dir/run" status >/dev/null 2>&1 && break; sleep 0.1; done
# veth bridge: a server namespace and a client namespace on one Linux bridge
ip link add "$br" type bridge && ip link set "$br" up
for side in s c; do
	ns=cnds$$$side
	ip netns add "$ns"
	ip link add "cnds$$${side}h" type veth peer name "cnds$$${side}n"
	ip link set "cnds$$${side}h" master "$br" up
	ip link set "cnds$$${side}n" netns "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" link set "cnds$$${side}n" up
done
ip -n "$nss" addr add "$net.2/24" dev "cnds$$sn"
ip -n "$nsc" addr add "$net.3/24" dev "cnds$$cn"

# --- the servers, once per network ------------------------------------------
mkdir -p "$dir/www"
echo "hello from a guest" >"$dir/www/index.html"
head -c 1048576 /dev/urandom >"$dir/www/1m.bin"
nginx_conf() { # nginx_conf NAME LISTEN
	mkdir -p "$dir/nginx-$1"
	cat >"$dir/nginx-$1/nginx.conf" <<NGX
worker_processes 2;
pid $dir/nginx-$1/nginx.pid;
error_log $dir/nginx-$1/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $dir/nginx-$1/body;
    proxy_temp_path $dir/nginx-$1/proxy;
    fastcgi_temp_path $dir/nginx-$1/fcgi;
    uwsgi_temp_path $dir/nginx-$1/uwsgi;
    scgi_temp_path $dir/nginx-$1/scgi;
    server { listen $2; root $dir/www; }
}
NGX
}
serve() { # serve TRANSPORT: start nginx, redis, iperf3 for it
	local run=()
	case "$1" in
	circuit) run=() ;;
	loopback) run=() ;;
	veth) run=(ip netns exec "$nss") ;;
	esac
	case "$1" in
	circuit)
		nginx_conf circuit 80
		timeout 900 "$circnet" run --run-dir "$dir/run" --guest web -- \
			nginx -c "$dir/nginx-circuit/nginx.conf" -g 'daemon off;' &
		pids+=($!)
		timeout 900 "$circnet" run --run-dir "$dir/run" --guest cache -- \
			redis-server --port 6379 --save '' --appendonly no --protected-mode no \
			>"$dir/redis-circuit.log" 2>&1 &
		pids+=($!)
		timeout 900 "$circnet" run --run-dir "$dir/run" --guest cache -- \
			iperf3 -s -p 5201 >"$dir/iperf3-circuit.log" 2>&1 &
		pids+=($!)
		timeout 900 "$circnet" run --run-dir "$dir/run" --guest cache -- \
			sockperf server --tcp -i 0.0.0.0 -p 11111 >"$dir/sockperf-circuit.log" 2>&1 &
		pids+=($!)
		;;
	*)
		local addr=127.0.0.1
		[ "$1" = veth ] && addr=$net.2
		nginx_conf "$1" "$addr:8480"
		"${run[@]}" timeout 900 nginx -c "$dir/nginx-$1/nginx.conf" -g 'daemon off;' &
		pids+=($!)
		"${run[@]}" timeout 900 redis-server --bind "$addr" --port 6480 --save '' \
			--appendonly no --protected-mode no >"$dir/redis-$1.log" 2>&1 &
		pids+=($!)
		"${run[@]}" timeout 900 iperf3 -s -B "$addr" -p 5480 >"$dir/iperf3-$1.log" 2>&1 &
		pids+=($!)
		"${run[@]}" timeout 900 sockperf server --tcp -i "$addr" -p 11480 \
			>"$dir/sockperf-$1.log" 2>&1 &
		pids+=($!)
		;;
	esac
}
say "guests demo: starting nginx, redis and iperf3 three times: as guests on circuits, on loopback, in a namespace behind a veth bridge"
serve circuit
serve loopback
serve veth
sleep 2

# --- the clients --------------------------------------------------------------
client() { # client TRANSPORT COMMAND...: run a client where that transport needs it
	case "$1" in
	circuit) timeout 120 "$circnet" run --run-dir "$dir/run" --guest client -- "${@:2}" ;;
	loopback) timeout 120 "${@:2}" ;;
	veth) timeout 120 ip netns exec "$nsc" "${@:2}" ;;
	esac
}
target() { # target TRANSPORT SERVICE: host:port of that service
	case "$1:$2" in
	circuit:web) echo web:80 ;;
	circuit:cache) echo cache:6379 ;;
	circuit:iperf) echo cache:5201 ;;
	circuit:sockperf) echo 10.219.0.3:11111 ;;
	loopback:sockperf) echo 127.0.0.1:11480 ;;
	veth:sockperf) echo "$net.2:11480" ;;
	loopback:web) echo 127.0.0.1:8480 ;;
	loopback:cache) echo 127.0.0.1:6480 ;;
	loopback:iperf) echo 127.0.0.1:5480 ;;
	veth:web) echo "$net.2:8480" ;;
	veth:cache) echo "$net.2:6480" ;;
	veth:iperf) echo "$net.2:5480" ;;
	esac
}
samples=$dir/samples.tsv
: >"$samples"
record() { # record WORKLOAD SIZE UNIT TRANSPORT VALUE
	[ -n "$5" ] && printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$samples"
}
wrk_rate() { # wrk_rate TRANSPORT PATH CONNS -> requests/s
	client "$1" wrk -t1 -c"$3" -d"${secs}s" "http://$(target "$1" web)$2" 2>/dev/null |
		awk '/Requests\/sec/{print $2}'
}
wrk_gbps() { # -> Gbit/s from wrk's Transfer/sec
	client "$1" wrk -t1 -c"$3" -d"${secs}s" "http://$(target "$1" web)$2" 2>/dev/null |
		awk '/Transfer\/sec/{v=$2; u=substr(v, length(v)-1); v=substr(v, 1, length(v)-2);
			m = u=="GB" ? 8 : u=="MB" ? 8/1024 : u=="KB" ? 8/1048576 : 0; print v*m}'
}
redis_rate() { # redis_rate TRANSPORT PIPELINE -> GET requests/s
	local t
	t=$(target "$1" cache)
	client "$1" redis-benchmark -h "${t%:*}" -p "${t#*:}" -t get -n $((secs * 30000)) \
		-c 20 -P "$2" -q 2>/dev/null | tr '\r' '\n' | awk '/GET:/{print $2}' | tail -1
}
sockperf_lat() { # sockperf_lat TRANSPORT -> "p50 p99" in microseconds
	local t
	t=$(target "$1" sockperf)
	client "$1" sockperf ping-pong --tcp -i "${t%:*}" -p "${t#*:}" -t "$secs" -m 64 2>&1 |
		sed 's/\x1b\[[0-9;]*m//g' |
		awk '/percentile 50.000 =/{p50=$NF} /percentile 99.000 =/{p99=$NF} END{if (p50 != "") print p50, p99}'
}
iperf_gbps() {
	local t
	t=$(target "$1" iperf)
	client "$1" iperf3 -c "${t%:*}" -p "${t#*:}" -t "$secs" -J 2>/dev/null |
		python3 -c "import json,sys; print(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9)" 2>/dev/null
}
for r in $(seq "$reps"); do
	for t in circuit loopback veth; do
		say "guests demo: rep $r/$reps, $t: nginx + wrk"
		record nginx-small-page 20 req/s "$t" "$(wrk_rate "$t" /index.html 16)"
		record nginx-1MiB-file 1048576 Gbit/s "$t" "$(wrk_gbps "$t" /1m.bin 4)"
		say "guests demo: rep $r/$reps, $t: redis-benchmark"
		record redis-GET 3 req/s "$t" "$(redis_rate "$t" 1)"
		record redis-GET-pipelined-16 3 req/s "$t" "$(redis_rate "$t" 16)"
		say "guests demo: rep $r/$reps, $t: iperf3"
		record iperf3-tcp 131072 Gbit/s "$t" "$(iperf_gbps "$t")"
		say "guests demo: rep $r/$reps, $t: sockperf"
		lat=$(sockperf_lat "$t")
		record sockperf-latency-p50 64 us "$t" "${lat%% *}"
		record sockperf-latency-p99 64 us "$t" "${lat##* }"
	done
done

# --- the figures ---------------------------------------------------------------
python3 - "$samples" "$results" "$secs" "$reps" <<'PY'
import csv, json, socket, statistics, sys, time
samples, out, secs, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cells = {}
for w, size, unit, t, v in csv.reader(open(samples), delimiter="\t"):
    cells.setdefault((w, int(size), unit), {}).setdefault(t, []).append(float(v))
res = []
for (w, size, unit), by in cells.items():
    for t, s in by.items():
        med = statistics.median(s)
        ratios = {}
        for base in ("loopback", "veth"):
            if base != t and base in by and statistics.median(by[base]) > 0:
                ratios["tcp-loopback" if base == "loopback" else "veth-bridge"] = \
                    round(med / statistics.median(by[base]), 6)
        name = {"circuit": "circuit", "loopback": "tcp-loopback", "veth": "veth-bridge"}[t]
        res.append({"name": "%s/%s/%d" % (w, name, size), "group": w, "transport": name,
                    "size": size, "unit": unit, "value": round(med, 4), "min": min(s),
                    "max": max(s), "repetitions": len(s), "higher_is_better": unit != "us",
                    "samples": s, "ratios": ratios})
doc = {"schema": "circnet-bench/v1", "benchmark": "guests",
       "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(),
       "config": "secs=%s reps=%d nginx-workers=2 wrk-conns=16/4 redis-clients=20" % (secs, reps),
       "results": res}
json.dump(doc, open(out + "/guests.json", "w"), indent=1)
with open(out + "/guests.csv", "w") as f:
    f.write("group,transport,size,unit,value,min,max,repetitions,vs_tcp_loopback,vs_veth_bridge\n")
    for r in res:
        f.write("%s,%s,%d,%s,%g,%g,%g,%d,%s,%s\n" % (r["group"], r["transport"], r["size"],
                r["unit"], r["value"], r["min"], r["max"], r["repetitions"],
                r["ratios"].get("tcp-loopback", ""), r["ratios"].get("veth-bridge", "")))
print("guests demo: %s" % doc["config"])
print("%-24s %-13s %12s %-7s %8s %14s %13s" % ("workload", "transport", "median", "unit",
      "spread", "vs loopback", "vs veth"))
for r in sorted(res, key=lambda r: (r["group"], r["transport"] != "circuit", r["transport"])):
    spread = (r["max"] - r["min"]) / r["value"] * 100 if r["value"] else 0
    fmt = lambda k: ("%.2fx" % r["ratios"][k]) if k in r["ratios"] else "-"
    print("%-24s %-13s %12.2f %-7s %7.0f%% %14s %13s" % (r["group"], r["transport"], r["value"],
          r["unit"], spread, fmt("tcp-loopback"), fmt("veth-bridge")))
PY
echo "guests demo: figures in $results/guests.{json,csv}"
