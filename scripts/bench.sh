#!/usr/bin/env bash
# Measures what crewgate's proxy costs, each figure against a baseline measured
# in the same run (the machine may be noisy), and prints a table:
#   1. go benchmarks in internal/proxy: added latency of a 1 KiB response on a
#      reused intercepted connection, of a new CONNECT with interception, and
#      of one streamed SSE event;
#   2. throughput of 1 KiB responses over 16 keep-alive connections: direct,
#      through 'crewgate run' (the load generator is the crew) and through
#      mitmproxy (mitmdump), all on the same upstream;
#   3. 'crewgate run -- true' with a keyring secret against 'true' (hyperfine);
#   4. the RSS of an idle 'crewgate run -- sleep 2' session;
#   5. go benchmarks in internal/mask: masking throughput with the default
#      detector set and an injected value, as a byte stream and as SSE.
# Everything runs on 127.0.0.1 only. The fake secret lives in a private
# gnome-keyring and a private HOME that are removed afterwards. Not part of
# CI's test run; it takes about two minutes.
#
# Usage: scripts/bench.sh   (BENCH_DURATION=3s: each throughput run;
#                            BENCH_ROUNDS=2: throughput rounds, best counts)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [ "${1-}" != --in-keyring ]; then
	ensure_packages
	need=()
	command -v mitmdump >/dev/null || need+=(mitmproxy)
	command -v hyperfine >/dev/null || need+=(hyperfine)
	if [ ${#need[@]} -gt 0 ]; then
		echo "== installing ${need[*]}"
		sudo=""
		[ "$(id -u)" -eq 0 ] || sudo="sudo"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	echo "== building crewgate and the load generator"
	go build -o "$work/crewgate" ./cmd/crewgate
	go build -o "$work/loadgen" ./scripts/loadgen
	echo "== go test -run '^\$' -bench . -benchtime 2s -timeout 5m ./internal/proxy/"
	go test -run '^$' -bench . -benchtime 2s -timeout 5m ./internal/proxy/ | tee "$work/gobench.txt"
	echo "== go test -run '^\$' -bench 'Mask\$|SSEEvent' ./internal/mask/"
	go test -run '^$' -bench 'Mask$|SSEEvent' -timeout 5m ./internal/mask/ | tee -a "$work/gobench.txt"
	with_test_keyring "$0" --in-keyring "$work"
	exit
fi

# From here on: inside the private keyring, with a private HOME.
work="$2"
dur="${BENCH_DURATION:-3s}"
rounds="${BENCH_ROUNDS:-2}"
cg="$work/crewgate"
lg="$work/loadgen"
export HOME="$work/home"
export XDG_CONFIG_HOME="$HOME/.config" XDG_STATE_HOME="$HOME/.local/state" XDG_CACHE_HOME="$HOME/.cache"
export CREWGATE_PROFILE=bench
unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy
mkdir -p "$XDG_CONFIG_HOME/crewgate" "$XDG_STATE_HOME" "$XDG_CACHE_HOME"

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "bench.sh: a step failed; the logs end with:" >&2; tail -n 5 "$work"/*.log >&2' ERR

# wait_port waits until something listens on 127.0.0.1:$1.
wait_port() {
	local i
	for i in $(seq 150); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.2
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	return 1
}

# kv KEY LINE prints the value of KEY=value in LINE.
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# gobench BENCHMARK UNIT prints a metric of the go benchmarks.
gobench() {
	awk -v b="^Benchmark$1-" -v u="$2" '$1 ~ b { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "$work/gobench.txt"
}

# calc EXPR evaluates a floating-point expression.
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
# maxof A B prints the larger number.
maxof() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
# verdict EXPR prints pass or MISS.
verdict() { awk "BEGIN { print ($1) ? \"pass\" : \"MISS\" }" 2>/dev/null || echo "?"; }

echo "== upstream: 1 KiB HTTPS answers on 127.0.0.1 with a certificate for localhost"
"$lg" serve -cert "$work/upstream.pem" >"$work/upstream.addr" 2>"$work/upstream.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/upstream.addr" ] && break; sleep 0.1; done
up_port="$(cut -d: -f2 "$work/upstream.addr")"
wait_port "$up_port"
url="https://localhost:$up_port/v1/chat/completions"

cat >"$XDG_CONFIG_HOME/crewgate/config.yaml" <<EOF
upstreams:
  - name: bench
    hosts: ["localhost:$up_port"]
    address: 127.0.0.1:$up_port
    ca_file: $work/upstream.pem
    credential: {source: secret, secret: bench}
    env: [BENCH_API_KEY]
EOF
printf 'sk-bench-fake-%s\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" | "$cg" secret set bench >/dev/null

echo "== mitmdump on 127.0.0.1, verifying the upstream with its certificate"
mitm_port="$("$lg" port)"
mitmdump -q --listen-host 127.0.0.1 --listen-port "$mitm_port" \
	--set confdir="$work/mitmproxy" \
	--set ssl_verify_upstream_trusted_ca="$work/upstream.pem" >"$work/mitmdump.log" 2>&1 &
mitm_pid=$!
pids+=("$mitm_pid")
wait_port "$mitm_port"

# Each round loads direct, through crewgate run (the load generator is the
# crew) and through mitmdump, one after the other; the best of each over the
# rounds counts, as outside noise only ever slows a run down.
d_rps=0 c_rps=0 m_rps=0 peak_kb=0
for round in $(seq "$rounds"); do
	echo "== throughput round $round/$rounds: $dur each, 16 connections, 1 KiB answers"
	direct="$("$lg" load -url "$url" -cacert "$work/upstream.pem" -c 16 -d "$dur")"
	echo "direct:    $direct"
	crew="$("$cg" run -- "$lg" load -url "$url" -proxy env -pid -1 -c 16 -d "$dur" 2>>"$work/crewgate.log")"
	echo "crewgate:  $crew"
	mitm="$("$lg" load -url "$url" -proxy "http://127.0.0.1:$mitm_port" -cacert "$work/mitmproxy/mitmproxy-ca-cert.pem" -pid "$mitm_pid" -c 16 -d "$dur")"
	echo "mitmproxy: $mitm"
	d_rps="$(maxof "$d_rps" "$(kv rps "$direct")")"
	c_rps="$(maxof "$c_rps" "$(kv rps "$crew")")"
	m_rps="$(maxof "$m_rps" "$(kv rps "$mitm")")"
	peak_kb="$(maxof "$peak_kb" "$(kv proxy_peak_rss_kb "$crew")")"
	c_cpu="$(kv proxy_cpu_us_per_req "$crew")"
	m_cpu="$(kv proxy_cpu_us_per_req "$mitm")"
done
kill "$mitm_pid"

echo "== crewgate run -- true against true (hyperfine)"
hyperfine -N --style basic --warmup 3 --runs 40 --export-csv "$work/startup.csv" true "$cg run -- true"
true_ms="$(awk -F, 'NR == 2 { printf "%.2f", $4 * 1000 }' "$work/startup.csv")"
run_ms="$(awk -F, 'NR == 3 { printf "%.2f", $4 * 1000 }' "$work/startup.csv")"

echo "== idle RSS of crewgate run -- sleep 2"
"$cg" run -- sleep 2 2>/dev/null &
run_pid=$!
sleep 1
idle_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$run_pid/status")"
wait "$run_pid"

r_add50="$(gobench Request1KiB added-p50-us)"
r_add99="$(gobench Request1KiB added-p99-us)"
n_p50="$(gobench NewConnect1KiB p50-us)"
s_add50="$(gobench SSEEvent added-p50-us)"
s_add99="$(gobench SSEEvent added-p99-us)"
add_ms="$(calc "$run_ms - $true_ms")"

echo
echo "== crewgate proxy, $(date -u +%Y-%m-%d), $(nproc) cores"
f='%-44s %-36s %-16s %s\n'
# shellcheck disable=SC2059
{
	printf "$f" "measurement" "crewgate (baseline in the same run)" "goal" "result"
	printf "$f" "1 KiB, reused intercepted conn, added p50" "+${r_add50} us (direct $(gobench Request1KiB direct-p50-us) us)" "<= 500 us" "$(verdict "$r_add50 <= 500")"
	printf "$f" "1 KiB, reused intercepted conn, added p99" "+${r_add99} us" "<= 2000 us" "$(verdict "$r_add99 <= 2000")"
	printf "$f" "1 KiB, new CONNECT + interception, p50" "${n_p50} us (new TLS direct $(gobench NewConnect1KiB direct-p50-us) us)" "<= 5000 us" "$(verdict "$n_p50 <= 5000")"
	printf "$f" "SSE event, added p50 / p99" "+${s_add50} / +${s_add99} us" "<= 1000 / 3000 us" "$(verdict "$s_add50 <= 1000 && $s_add99 <= 3000")"
	printf "$f" "throughput in one process, proxied/direct" "$(calc "$(gobench Throughput1KiB/proxied req/s) / $(gobench Throughput1KiB/direct req/s)")x ($(gobench Throughput1KiB/proxied req/s) / $(gobench Throughput1KiB/direct req/s) req/s)" "report" "-"
	printf "$f" "throughput 1 KiB, 16 conns, crewgate/direct" "$(calc "$c_rps / $d_rps")x ($c_rps / $d_rps req/s)" "report" "-"
	printf "$f" "throughput 1 KiB, 16 conns, crewgate/mitm" "$(calc "$c_rps / $m_rps")x ($c_rps / $m_rps req/s)" ">= 10x" "$(verdict "$c_rps >= 10 * $m_rps")"
	printf "$f" "proxy CPU per request, mitm/crewgate" "$(calc "$m_cpu / $c_cpu")x ($c_cpu / $m_cpu us, last round)" "report" "-"
	printf "$f" "crewgate run -- true, added (median)" "+${add_ms} ms (true ${true_ms} ms)" "<= 50 ms" "$(verdict "$add_ms <= 50")"
	printf "$f" "idle RSS of a session" "$(calc "$idle_kb / 1024") MiB" "< 30 MiB" "$(verdict "$idle_kb < 30 * 1024")"
	printf "$f" "peak RSS under the 16-conn load" "$(calc "$peak_kb / 1024") MiB" "report" "-"
	printf "$f" "masking, default set, byte stream" "$(gobench Mask/text MB/s) MB/s ($(gobench Mask/text x-naive)x naive regexps)" ">= 200 MB/s" "$(verdict "$(gobench Mask/text MB/s) >= 200")"
	printf "$f" "masking, default set, JSON document" "$(gobench Mask/json MB/s) MB/s" "report" "-"
	printf "$f" "masking, one SSE chat event" "$(gobench SSEEvent/masked µs/event) us" "report" "-"
}
