#!/usr/bin/env bash
# bench/compare.sh: wsgate side by side with HAProxy, NGINX and Caddy (and a
# direct, proxy-less baseline) on this machine, over loopback.
#
# Usage, from the repository root:
#
#   bench/compare.sh [-runs 3] [-duration 10s] [-warmup 1s]
#                    [-scenarios rtt64,rtt16k,throughput16k,connrate,idle]
#                    [-proxies wsgate,haproxy,nginx,caddy,direct]
#                    [-idle-conns 9900] [-idle-hold 5s] [-out bench/results/DATE]
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
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

runs=3
duration=10s
warmup=1s
scenarios=rtt64,rtt16k,throughput16k,connrate,idle
proxies=wsgate,haproxy,nginx,caddy,direct
idle_conns=9900
idle_hold=5s
out=""

while (($# > 0)); do
	opt=${1#-}
	opt=${opt#-}
	case $opt in
	h | help)
		usage
		exit 0
		;;
	runs | duration | warmup | scenarios | proxies | idle-conns | idle-hold | out)
		if (($# < 2)); then
			echo "compare.sh: $1 needs a value" >&2
			exit 2
		fi
		case $opt in
		runs) runs=$2 ;;
		duration) duration=$2 ;;
		warmup) warmup=$2 ;;
		scenarios) scenarios=$2 ;;
		proxies) proxies=$2 ;;
		idle-conns) idle_conns=$2 ;;
		idle-hold) idle_hold=$2 ;;
		out) out=$2 ;;
		esac
		shift 2
		;;
	*)
		echo "compare.sh: unknown argument $1" >&2
		usage >&2
		exit 2
		;;
	esac
done

log() { printf 'compare: %s\n' "$*" >&2; }
die() {
	printf 'compare: %s\n' "$*" >&2
	exit 1
}

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-runs $runs: want a positive integer"
[[ $idle_conns =~ ^[1-9][0-9]*$ ]] || die "-idle-conns $idle_conns: want a positive integer"
IFS=, read -r -a scenario_list <<<"$scenarios"
IFS=, read -r -a proxy_list <<<"$proxies"
for s in "${scenario_list[@]}"; do
	case $s in
	rtt64 | rtt16k | throughput16k | connrate | idle) ;;
	*) die "-scenarios: unknown scenario $s; valid: rtt64, rtt16k, throughput16k, connrate, idle" ;;
	esac
done
for p in "${proxy_list[@]}"; do
	case $p in
	wsgate | haproxy | nginx | caddy | direct) ;;
	*) die "-proxies: unknown proxy $p; valid: wsgate, haproxy, nginx, caddy, direct" ;;
	esac
done

# secs DURATION: a Go duration (90s, 2m, 1m30s, 500ms) in whole seconds,
# rounded up; used only to bound how long we wait.
secs() {
	local d=$1 total=0 n unit
	while [[ $d =~ ^([0-9]+)(ms|s|m|h)(.*)$ ]]; do
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
		case $unit in
		ms) total=$((total + (n + 999) / 1000)) ;;
		s) total=$((total + n)) ;;
		m) total=$((total + n * 60)) ;;
		h) total=$((total + n * 3600)) ;;
		esac
	done
	[[ -z $d ]] || die "bad duration $1; use Go syntax such as 10s, 2m or 1m30s"
	echo "$total"
}
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

# ---------------------------------------------------------------- processes

# Every process we start is recorded here and stopped on exit, by PID.
started=()

# stop_pid PID: SIGTERM, wait up to 10s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local i
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		stop_pid "${started[i]}"
	done
	started=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
	local pid=$1 keep=() p
	for p in "${started[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	started=("${keep[@]}")
}

# wait_line FILE TEXT SECONDS PID: wait until FILE has a line containing
# TEXT, then print that line; fail if PID exits first or time runs out.
wait_line() {
	local file=$1 text=$2 limit=$3 pid=$4 i line
	for ((i = 0; i < limit * 10; i++)); do
		if line=$(grep -m1 -F -- "$text" "$file" 2>/dev/null); then
			echo "$line"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	log "no \"$text\" from pid $pid within ${limit}s; its log ($file):"
	tail -n 20 "$file" >&2 || true
	return 1
}

# free_port: a loopback TCP port nobody listens on right now.
free_port() {
	local p
	for ((p = 20000 + RANDOM % 10000; ; p++)); do # below the ephemeral ports (32768-)
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# ------------------------------------------------------------------- set up

# One file descriptor limit for everything: 20000 (or the hard limit).
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard >= 20000)); then
	ulimit -n 20000
else
	log "hard fd limit is $hard, below 20000: idle runs may fail above $(((hard - 100) / 2)) connections"
	ulimit -n "$hard"
fi

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

log "building into $bin"
# -buildvcs=auto overrides a GOFLAGS=-buildvcs=false: "wsgate version" in
# the results then names the commit measured.
for cmd in wsgate wsgate-backend wsgate-bench; do
	go build -buildvcs=auto -o "$bin/$cmd" "./cmd/$cmd"
done
go build -o "$bin/gencert" ./bench/gencert
"$bin/gencert" -dir "$out/certs" -hosts 127.0.0.1,localhost >/dev/null
cert=$out/certs/cert.pem
key=$out/certs/key.pem
combined=$out/certs/combined.pem

# Machine context, put above the tables by the report.
{
	echo "## Machine and versions"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "- command: \`bench/compare.sh -runs $runs -duration $duration -warmup $warmup -scenarios $scenarios -proxies $proxies -idle-conns $idle_conns -idle-hold $idle_hold\`"
	echo "- CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); proxies pinned to CPU 0, backends and load generator to CPU 1"
	echo "- kernel: $(uname -srm)"
	echo "- Go: $(go version | cut -d' ' -f3-)"
	echo "- wsgate: $("$bin/wsgate" version 2>&1 | head -n1)"
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

stop_proxy() {
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
