#!/usr/bin/env bash
# bench/compare.sh: wsgate side by side with HAProxy, NGINX and Caddy (and a
# direct, proxy-less baseline) on this machine, over loopback.
#
# Usage, from the repository root:
#
#   bench/compare.sh [-runs 3] [-duration 10s] [-warmup 1s]
#                    [-scenarios rtt64,rtt16k,throughput16k,connrate,connresume,idle]
#                    [-proxies wsgate,haproxy,nginx,caddy,direct]
#                    [-ping-interval 5s] [-base-bin PATH]
#                    [-idle-conns 9900] [-idle-hold 5s] [-out bench/results/DATE]
#
# wsgate-pings is wsgate with tunnels.ping_interval set to -ping-interval
# (not in the default list): "-proxies wsgate,wsgate-pings -scenarios idle
# -idle-hold 20s" shows what the proxy's pings cost an idle connection.
# wsgate-base is another wsgate build, -base-bin, run with the same
# config: "-proxies wsgate,wsgate-base -base-bin /tmp/old/wsgate" is an A/B
# of two commits, alternating on the same backends. wsgate-ops is wsgate
# as an operator runs it: pings every -ping-interval, the per-address
# limits at their defaults (as in plain wsgate), and /metrics scraped once
# a second for as long as the proxy runs; beside wsgate it shows what the
# operator's features cost.
#
# connresume is connrate with TLS session resumption (the load generator's
# workers share a client session cache): the cost of a returning client.
# Its table shows which share of the handshakes did resume.
#
# Quick smoke test (a few minutes):
#
#   bench/compare.sh -runs 1 -duration 2s -idle-conns 200
#
# Every proxy terminates TLS with the same ECDSA P-256 certificate, balances
# by least connections over the same three wsgate-backend processes and runs
# one worker thread pinned to CPU 0; backends and the load generator share
# CPU 1. Each measurement starts the proxy fresh and stops it afterwards.
# Results: $OUT/results.jsonl (one JSON line per measurement), results.md,
# results.svg, and per-process logs in $OUT/logs. docs/benchmarks.md explains
# the choices.
set -euo pipefail

usage() {
	sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'
}

runs=3
duration=10s
warmup=1s
scenarios=rtt64,rtt16k,throughput16k,connrate,connresume,idle
proxies=wsgate,haproxy,nginx,caddy,direct
idle_conns=9900
idle_hold=5s
ping_interval=5s
base_bin=""
out=""

prog=compare
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_flags "runs duration warmup scenarios proxies idle-conns idle-hold ping-interval base-bin out" "$@"

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-runs $runs: want a positive integer"
[[ $idle_conns =~ ^[1-9][0-9]*$ ]] || die "-idle-conns $idle_conns: want a positive integer"
IFS=, read -r -a scenario_list <<<"$scenarios"
IFS=, read -r -a proxy_list <<<"$proxies"
for s in "${scenario_list[@]}"; do
	case $s in
	rtt64 | rtt16k | throughput16k | connrate | connresume | idle) ;;
	*) die "-scenarios: unknown scenario $s; valid: rtt64, rtt16k, throughput16k, connrate, connresume, idle" ;;
	esac
done
for p in "${proxy_list[@]}"; do
	case $p in
	wsgate | wsgate-pings | wsgate-ops | haproxy | nginx | caddy | direct) ;;
	wsgate-base)
		[[ -n $base_bin ]] || die "-proxies wsgate-base needs -base-bin PATH, the other wsgate build"
		[[ -x $base_bin ]] || die "-base-bin $base_bin: not an executable file"
		base_bin=$(cd "$(dirname "$base_bin")" && pwd)/$(basename "$base_bin")
		;;
	*) die "-proxies: unknown proxy $p; valid: wsgate, wsgate-pings, wsgate-ops, wsgate-base, haproxy, nginx, caddy, direct" ;;
	esac
done

duration_s=$(secs "$duration")
warmup_s=$(secs "$warmup")
idle_hold_s=$(secs "$idle_hold")

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=${out:-bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"/{bin,certs,logs,run}
out=$(cd "$out" && pwd)
bin=$out/bin
results=$out/results.jsonl
: >"$results"

# ------------------------------------------------------------------- set up

raise_fd_limit

missing=()
for p in "${proxy_list[@]}"; do
	case $p in
	haproxy | nginx | caddy) command -v "$p" >/dev/null || missing+=("$p") ;;
	esac
done
if ((${#missing[@]} > 0)); then
	log "installing ${missing[*]} with apt-get"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$out/logs/apt.log" 2>&1; then
		apt-get update -qq >>"$out/logs/apt.log" 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$out/logs/apt.log" 2>&1 ||
			die "apt-get install ${missing[*]} failed; see $out/logs/apt.log"
	fi
	# The Debian packages start their service; we run our own instances.
	for p in "${missing[@]}"; do
		if command -v systemctl >/dev/null && systemctl is-active --quiet "$p" 2>/dev/null; then
			systemctl stop "$p" || true
		fi
	done
fi

build_bins "$bin" "$out/certs"
cert=$out/certs/cert.pem
key=$out/certs/key.pem
combined=$out/certs/combined.pem

# Machine context, put above the tables by the report.
{
	echo "## Machine and versions"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "- command: \`bench/compare.sh -runs $runs -duration $duration -warmup $warmup -scenarios $scenarios -proxies $proxies -idle-conns $idle_conns -idle-hold $idle_hold -ping-interval $ping_interval${base_bin:+ -base-bin $base_bin}\`"
	echo "- CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); proxies pinned to CPU 0, backends and load generator to CPU 1"
	echo "- kernel: $(uname -srm)"
	echo "- Go: $(go version | cut -d' ' -f3-)"
	echo "- wsgate: $("$bin/wsgate" version 2>&1 | head -n1)"
	[[ -n $base_bin ]] && echo "- wsgate-base ($base_bin): $("$base_bin" version 2>&1 | head -n1)"
	for p in "${proxy_list[@]}"; do
		case $p in
		haproxy) echo "- HAProxy: $(haproxy -v 2>&1 | head -n1)" ;;
		nginx) echo "- NGINX: $(nginx -v 2>&1 | head -n1)" ;;
		caddy) echo "- Caddy: $(caddy version 2>&1 | head -n1)" ;;
		esac
	done
	echo "- fd limit: $(ulimit -n) per process"
	echo
} >"$out/context.md"

# Three reference backends on CPU 1.
backend_addrs=()
for i in 1 2 3; do
	blog=$out/logs/backend-b$i.log
	taskset -c 1 "$bin/wsgate-backend" -listen 127.0.0.1:0 -id "b$i" -drain-timeout 2s >"$blog" 2>&1 &
	started+=("$!")
	line=$(wait_line "$blog" "listening on " 10 "$!") || die "backend b$i did not start"
	backend_addrs+=("${line##*listening on }")
done
log "backends: ${backend_addrs[*]}"

# ------------------------------------------------------------------ proxies

# render TEMPLATE OUTPUT: fill in the @NAME@ placeholders.
render() {
	sed -e "s|@LISTEN@|127.0.0.1:$port|g" \
		-e "s|@HOST@|127.0.0.1|g" \
		-e "s|@PORT@|$port|g" \
		-e "s|@ADMIN@|127.0.0.1:$admin_port|g" \
		-e "s|@CERT@|$cert|g" \
		-e "s|@KEY@|$key|g" \
		-e "s|@COMBINED@|$combined|g" \
		-e "s|@RUNDIR@|$rundir|g" \
		-e "s|@B1@|${backend_addrs[0]}|g" \
		-e "s|@B2@|${backend_addrs[1]}|g" \
		-e "s|@B3@|${backend_addrs[2]}|g" \
		"bench/configs/$1" >"$2"
	if grep -q '@[A-Z0-9]*@' "$2"; then
		die "$2: placeholder left unfilled: $(grep -o '@[A-Z0-9]*@' "$2" | head -n1)"
	fi
}

# start_proxy NAME: start it on CPU 0 and set proxy_pid (the process we
# started), measure_pids (what -pid measures) and url.
start_proxy() {
	local name=$1 plog
	port=$(free_port)
	admin_port=$(free_port)
	rundir=$out/run/$name
	rm -rf "$rundir"
	mkdir -p "$rundir"
	plog=$out/logs/$name.log
	: >"$plog"
	url=wss://127.0.0.1:$port/ws
	proxy_pid=""
	measure_pids=()
	case $name in
	direct)
		# No proxy and no TLS: the load generator talks ws:// to backend b1.
		url=ws://${backend_addrs[0]}/ws
		return 0
		;;
	wsgate)
		render wsgate.yaml.tmpl "$rundir/wsgate.yaml"
		GOMAXPROCS=1 taskset -c 0 "$bin/wsgate" run -config "$rundir/wsgate.yaml" -log-level warn >>"$plog" 2>&1 &
		;;
	wsgate-base)
		render wsgate.yaml.tmpl "$rundir/wsgate.yaml"
		GOMAXPROCS=1 taskset -c 0 "$base_bin" run -config "$rundir/wsgate.yaml" -log-level warn >>"$plog" 2>&1 &
		;;
	wsgate-pings | wsgate-ops)
		render wsgate.yaml.tmpl "$rundir/wsgate.yaml"
		printf 'tunnels:\n  ping_interval: %s\n' "$ping_interval" >>"$rundir/wsgate.yaml"
		GOMAXPROCS=1 taskset -c 0 "$bin/wsgate" run -config "$rundir/wsgate.yaml" -log-level warn >>"$plog" 2>&1 &
		;;
	haproxy)
		render haproxy.cfg.tmpl "$rundir/haproxy.cfg"
		haproxy -c -q -f "$rundir/haproxy.cfg" >>"$plog" 2>&1 || die "haproxy rejects $rundir/haproxy.cfg; see $plog"
		taskset -c 0 haproxy -db -f "$rundir/haproxy.cfg" >>"$plog" 2>&1 &
		;;
	nginx)
		render nginx.conf.tmpl "$rundir/nginx.conf"
		nginx -t -q -p "$rundir/" -c "$rundir/nginx.conf" -e "$rundir/nginx-error.log" >>"$plog" 2>&1 ||
			die "nginx rejects $rundir/nginx.conf; see $plog"
		taskset -c 0 nginx -p "$rundir/" -c "$rundir/nginx.conf" -e "$rundir/nginx-error.log" >>"$plog" 2>&1 &
		;;
	caddy)
		render Caddyfile.tmpl "$rundir/Caddyfile"
		GOMAXPROCS=1 XDG_DATA_HOME=$rundir XDG_CONFIG_HOME=$rundir HOME=$rundir \
			taskset -c 0 caddy run --config "$rundir/Caddyfile" --adapter caddyfile >>"$plog" 2>&1 &
		;;
	esac
	proxy_pid=$!
	started+=("$proxy_pid")
	measure_pids=("$proxy_pid")
	wait_ready "$name" "$plog"
	if [[ $name == wsgate-ops ]]; then
		start_scraper "$out/logs/scrape-$name.log"
	fi
	if [[ $name == nginx ]]; then
		# The master and its worker(s): -pid sums them.
		local w
		for w in $(pgrep -P "$proxy_pid"); do
			measure_pids+=("$w")
		done
		((${#measure_pids[@]} > 1)) || die "nginx master $proxy_pid has no worker"
	fi
}

# wait_ready NAME LOG: the port accepts, then one WebSocket echo works.
wait_ready() {
	local name=$1 plog=$2 i
	for ((i = 0; i < 200; i++)); do
		kill -0 "$proxy_pid" 2>/dev/null || {
			tail -n 20 "$plog" >&2
			die "$name exited during start-up; see $plog"
		}
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	((i < 200)) || die "$name does not accept on 127.0.0.1:$port after 20s; see $plog"
	for ((i = 0; i < 20; i++)); do
		# One full connection: TLS handshake, upgrade, one echo, close.
		if timeout 10 taskset -c 1 "$bin/wsgate-bench" -mode connrate -url "$url" -insecure -c 1 -size 16 -n 1 \
			-duration 5s -warmup 0s -quiet >"$out/logs/ready.log" 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	tail -n 5 "$out/logs/ready.log" >&2
	die "no WebSocket echo through $name ($url) after 20 attempts; see $plog and $out/logs/ready.log"
}

scrape_pid=""

# start_scraper LOG: GET /metrics from the admin listener once a second
# (on CPU 1, with bash's /dev/tcp: nothing to install), as Prometheus
# would, until stop_proxy; the status line of every scrape goes to LOG.
start_scraper() {
	local slog=$1
	taskset -c 1 bash -c '
		while sleep 1; do
			exec 3<>"/dev/tcp/127.0.0.1/$1" || continue
			printf "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" >&3
			{ head -n 1; cat >/dev/null; } <&3
			exec 3<&-
		done' scraper "$admin_port" >>"$slog" 2>&1 &
	scrape_pid=$!
	started+=("$scrape_pid")
}

stop_proxy() {
	if [[ -n $scrape_pid ]]; then
		stop_pid "$scrape_pid"
		forget_pid "$scrape_pid"
		scrape_pid=""
	fi
	[[ -n $proxy_pid ]] || return 0
	stop_pid "$proxy_pid"
	forget_pid "$proxy_pid"
	proxy_pid=""
}

# ---------------------------------------------------------------- the runs

# scenario_args NAME: the load generator flags of a scenario.
scenario_args() {
	case $1 in
	rtt64) echo "-mode rtt -size 64 -c 50 -duration $duration -warmup $warmup" ;;
	rtt16k) echo "-mode rtt -size 16384 -c 50 -duration $duration -warmup $warmup" ;;
	throughput16k) echo "-mode throughput -size 16384 -c 20 -window 16 -duration $duration -warmup $warmup" ;;
	connrate) echo "-mode connrate -size 64 -c 8 -duration $duration -warmup $warmup -source-ips 127.0.0.2-127.0.0.254" ;;
	connresume) echo "-mode connrate -resume -size 64 -c 8 -duration $duration -warmup $warmup -source-ips 127.0.0.2-127.0.0.254" ;;
	idle) echo "-mode idle -size 64 -c $idle_conns -duration $idle_hold -source-ips 127.0.0.2-127.0.0.254" ;;
	esac
}

# A generous bound on one measurement: opening the idle connections may
# take a while on one CPU (a TLS handshake each).
limit=$((duration_s + warmup_s + idle_hold_s + 120 + idle_conns / 50))

n=${#proxy_list[@]}
total=$((runs * ${#scenario_list[@]} * n))
done_count=0
for ((run = 1; run <= runs; run++)); do
	for scenario in "${scenario_list[@]}"; do
		read -r -a args <<<"$(scenario_args "$scenario")"
		for ((k = 0; k < n; k++)); do
			# Rotate the proxy order every run so slow drift on a shared
			# machine does not always hit the same proxy.
			name=${proxy_list[(k + run - 1) % n]}
			done_count=$((done_count + 1))
			log "[$done_count/$total] run $run $scenario $name"
			start_proxy "$name"
			pid_args=()
			for p in "${measure_pids[@]}"; do
				pid_args+=(-pid "$p")
			done
			tls_args=()
			[[ $url == wss://* ]] && tls_args=(-insecure)
			rc=0
			timeout "$limit" taskset -c 1 "$bin/wsgate-bench" "${args[@]}" -url "$url" "${tls_args[@]}" \
				"${pid_args[@]}" -json -label "$name" -quiet \
				>>"$results" 2>>"$out/logs/bench-$name.log" || rc=$?
			if ((rc != 0)); then
				log "wsgate-bench exited $rc for $scenario $name; see $out/logs/bench-$name.log"
			fi
			stop_proxy
		done
	done
done

cleanup

"$bin/wsgate-bench" report -in "$results" -header "$out/context.md" -md "$out/results.md" -svg "$out/results.svg"
cat "$out/results.md"
log "results: $out/results.md, $out/results.svg, raw: $results"
