#!/usr/bin/env bash
# bench/conncost.sh: what one new connection costs each proxy, counted:
# system calls by name, context switches and CPU per connection over a
# fixed number of connrate connections (TCP connect, full TLS 1.3
# handshake, upgrade, one 64-byte echo, close), alternating the targets
# run after run on the same three backends.
#
# Usage, from the repository root, as root (perf needs it):
#
#   bench/conncost.sh [-n 2000] [-runs 3] [-targets wsgate,nginx,haproxy]
#                     [-base REV] [-out bench/results/conncost-DATE]
#
# -base REV adds a target wsgate@REV: wsgate built from commit REV (with
# git archive, into the output directory), for an A/B against the tree.
#
# Each run starts each target fresh with its bench/configs template,
# GOMAXPROCS=1 / one worker, pinned to CPU 0 (backends and the load
# generator on CPU 1, as in compare.sh), makes 200 connections to warm it
# up, then measures its CPU over -n connections (wsgate-bench -mode
# connrate -n N -pid), then counts over -n more with perf stat
# (syscalls:sys_enter_*, reads and accepts that failed with EAGAIN,
# context switches).
# The runs happen in a network namespace of their own (unshare -n), whose
# loopback's packet counter gives the packets per connection.
# System call counts do not depend on how busy the machine is; CPU
# figures do (see docs/benchmarks.md). Results: $OUT/summary.md (medians
# per target), $OUT/perf-*.csv, $OUT/bench.jsonl.
set -euo pipefail

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

args=("$@")
n=2000
runs=3
targets=wsgate,nginx,haproxy
base=""
out=""

prog=conncost
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_flags "n runs targets base out" "$@"

[[ $n =~ ^[1-9][0-9]*$ ]] || die "-n $n: want a positive integer"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "-runs $runs: want a positive integer"
IFS=, read -r -a target_list <<<"$targets"
for t in "${target_list[@]}"; do
	case $t in
	wsgate | nginx | haproxy) ;;
	*) die "-targets: unknown target $t; valid: wsgate, nginx, haproxy" ;;
	esac
done
command -v perf >/dev/null || die "perf is missing (Debian: apt-get install linux-perf)"
for t in "${target_list[@]}"; do
	[[ $t == wsgate ]] || command -v "$t" >/dev/null || die "$t is missing (apt-get install $t)"
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=${out:-bench/results/conncost-$(date +%Y%m%d-%H%M%S)}
out=${CONNCOST_NETNS_OUT:-$out}
mkdir -p "$out"/{bin,certs,logs,run}
out=$(cd "$out" && pwd)
bin=$out/bin

raise_fd_limit

# The runs go in a network namespace of their own when this process may
# make one (unshare -n, as root): its loopback carries nothing but this
# benchmark, so its packet counter says exactly how many packets one
# connection costs, client, proxy and backends together. The builds come
# first, outside (they may need the module proxy).
netns=""
if [[ -n ${CONNCOST_NETNS_OUT:-} ]]; then
	ip link set lo up || die "cannot bring up the loopback of the network namespace"
	netns=yes
else
	build_bins "$bin" "$out/certs"
	if [[ -n $base ]]; then
		src=$out/src-$base
		mkdir -p "$src"
		git archive "$base" | tar -x -C "$src"
		(cd "$src" && go build -o "$bin/wsgate@$base" ./cmd/wsgate)
	fi
	{
		echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "- command: \`bench/conncost.sh ${args[*]}\`"
		echo "- CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "- kernel: $(uname -srm); $(go version | cut -d' ' -f3-); wsgate $(git describe --always --dirty)"
	} >"$out/context.md"
	if command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
		log "running in a network namespace of its own"
		CONNCOST_NETNS_OUT=$out exec unshare -n bash "$0" "${args[@]}"
	fi
	log "no network namespace (unshare -n failed): packets are not counted"
fi
[[ -z $base ]] || target_list+=("wsgate@$base")

# lo_tx: packets sent on this namespace's loopback so far.
lo_tx() { awk '$1 == "lo:" { print $11 }' /proc/net/dev; }

backend_addrs=()
for i in 1 2 3; do
	blog=$out/logs/backend-b$i.log
	taskset -c 1 "$bin/wsgate-backend" -listen 127.0.0.1:0 -id "b$i" -drain-timeout 2s >"$blog" 2>&1 &
	started+=("$!")
	line=$(wait_line "$blog" "listening on " 10 "$!") || die "backend b$i did not start"
	backend_addrs+=("${line##*listening on }")
done

# start_target NAME: start it on CPU 0; sets proxy_pid, measure_pids, url.
start_target() {
	local name=$1 rundir=$out/run/$1 plog=$out/logs/$1.log tmpl cfg port i
	port=$(free_port)
	rm -rf "$rundir"
	mkdir -p "$rundir"
	case $name in
	wsgate*) tmpl=wsgate.yaml.tmpl cfg=$rundir/wsgate.yaml ;;
	nginx) tmpl=nginx.conf.tmpl cfg=$rundir/nginx.conf ;;
	haproxy) tmpl=haproxy.cfg.tmpl cfg=$rundir/haproxy.cfg ;;
	esac
	sed -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@HOST@|127.0.0.1|g" -e "s|@PORT@|$port|g" \
		-e "s|@ADMIN@|127.0.0.1:0|g" -e "s|@CERT@|$out/certs/cert.pem|g" -e "s|@KEY@|$out/certs/key.pem|g" \
		-e "s|@COMBINED@|$out/certs/combined.pem|g" -e "s|@RUNDIR@|$rundir|g" \
		-e "s|@B1@|${backend_addrs[0]}|g" -e "s|@B2@|${backend_addrs[1]}|g" -e "s|@B3@|${backend_addrs[2]}|g" \
		"bench/configs/$tmpl" >"$cfg"
	case $name in
	wsgate) GOMAXPROCS=1 taskset -c 0 "$bin/wsgate" run -config "$cfg" -log-level warn >>"$plog" 2>&1 & ;;
	wsgate@*) GOMAXPROCS=1 taskset -c 0 "$bin/$name" run -config "$cfg" -log-level warn >>"$plog" 2>&1 & ;;
	nginx) taskset -c 0 nginx -p "$rundir/" -c "$cfg" -e "$rundir/nginx-error.log" >>"$plog" 2>&1 & ;;
	haproxy) taskset -c 0 haproxy -db -f "$cfg" >>"$plog" 2>&1 & ;;
	esac
	proxy_pid=$!
	started+=("$proxy_pid")
	url=wss://127.0.0.1:$port/ws
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		kill -0 "$proxy_pid" 2>/dev/null || die "$name exited at start; see $plog"
		sleep 0.1
	done
	measure_pids=$proxy_pid
	if [[ $name == nginx ]]; then
		measure_pids=$(pgrep -P "$proxy_pid" | paste -sd,)
		measure_pids=$proxy_pid,$measure_pids
	fi
	# Warm up (and wait for the backends' health checks to pass).
	for ((i = 0; i < 20; i++)); do
		timeout 60 taskset -c 1 "$bin/wsgate-bench" -mode connrate -url "$url" -insecure -c 8 -size 64 -n 200 \
			-duration 30s -warmup 0s -quiet >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	die "no connection through $name; see $plog"
}

events=(-e 'syscalls:sys_enter_*' -e context-switches
	-e syscalls:sys_exit_read --filter 'ret == -11'
	-e syscalls:sys_exit_recvmsg --filter 'ret == -11'
	-e syscalls:sys_exit_recvfrom --filter 'ret == -11'
	-e syscalls:sys_exit_accept4 --filter 'ret == -11')

# bench_n OUT [FLAGS...]: -n connections through $url, the summary to OUT.
bench_n() {
	local to=$1
	shift
	timeout 300 taskset -c 1 "$bin/wsgate-bench" -mode connrate -url "$url" -insecure -c 8 -size 64 -n "$n" \
		-duration 240s -warmup 0s -quiet "$@" >>"$to" 2>>"$out/logs/bench-$name.log" ||
		log "wsgate-bench failed for $name; see $out/logs/bench-$name.log"
}

jsonl=$out/bench.jsonl
: >"$jsonl"
nt=${#target_list[@]}
for ((run = 1; run <= runs; run++)); do
	for ((k = 0; k < nt; k++)); do
		name=${target_list[(k + run - 1) % nt]}
		log "run $run/$runs: $name"
		start_target "$name"
		# CPU first, with nothing attached to the proxy: perf's hundreds of
		# counters make each of its context switches dearer, and proxies do
		# not switch equally often.
		bench_n "$jsonl" -pid "$measure_pids" -json -label "$name"
		csv=$out/perf-$name-$run.csv
		perf stat -x, "${events[@]}" -p "$measure_pids" -o "$csv" &
		perf_pid=$!
		started+=("$perf_pid")
		sleep 0.5
		tx0=$(lo_tx)
		bench_n /dev/null
		tx1=$(lo_tx)
		[[ -z $netns ]] || echo "$name $(((tx1 - tx0) * 100 / n))" >>"$out/packets.txt"
		kill -INT "$perf_pid"
		wait "$perf_pid" 2>/dev/null || true
		forget_pid "$perf_pid"
		stop_pid "$proxy_pid"
		forget_pid "$proxy_pid"
	done
done
cleanup

# median: the median of the numbers on stdin.
median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; if (NR) printf "%.1f\n", m }'
}

# counts FILE: "name<TAB>count" for each event of a perf stat -x, file:
# a system call's name ("read"), "read EAGAIN" for the failed ones, or
# "context-switches".
counts() {
	awk -F, '$1 ~ /^[0-9]+$/ {
		name = $3; sub(/^syscalls:/, "", name)
		if (sub(/^sys_exit_/, "", name)) name = name " EAGAIN"
		sub(/^sys_enter_/, "", name)
		printf "%s\t%s\n", name, $1
	}' "$1"
}

# per TARGET NAME: the median over the runs of TARGET of NAME's count per
# connection ("calls" sums the system calls).
per() {
	local f
	for f in "$out"/perf-"$1"-*.csv; do
		counts "$f" | awk -F'\t' -v n="$n" -v want="$2" '
			want == "calls" && $1 != "context-switches" && $1 !~ / EAGAIN$/ { s += $2; next }
			$1 == want { s += $2 }
			END { printf "%.2f\n", s / n }'
	done | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.2f\n", a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

{
	echo "# Cost of a new connection"
	echo
	cat "$out/context.md"
	echo
	echo "Medians over $runs runs, per connection. Each run makes $n connections with nothing attached to the proxy,"
	echo "for its CPU (/proc/PID/stat; moves with the load on the machine), then $n more under perf stat for its system"
	echo "calls and context switches, and counts the packets that crossed the benchmark's own loopback meanwhile (client,"
	echo "proxy, backends; in a network namespace of its own, so nothing else; the backends' health checks are in it, a"
	echo "few packets a second)."
	echo
	printf '| target | CPU µs | of which kernel µs | system calls | context switches | packets |\n|---|---:|---:|---:|---:|---:|\n'
	for t in "${target_list[@]}"; do
		cpu=$(grep -F "\"label\":\"$t\"" "$jsonl" | grep -o '"cpu_us_per_handshake":[0-9.]*' | cut -d: -f2 | median)
		sys=$(grep -F "\"label\":\"$t\"" "$jsonl" | sed -n 's/.*"handshakes":\([0-9]*\).*"cpu_sys_s":\([0-9.]*\).*/\2 \1/p' |
			awk '{ printf "%.1f\n", $1 * 1e6 / $2 }' | median)
		pk=-
		[[ -z $netns ]] || pk=$(awk -v t="$t" '$1 == t { print $2 / 100 }' "$out/packets.txt" | median)
		printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$cpu" "$sys" "$(per "$t" calls)" "$(per "$t" context-switches)" "$pk"
	done
	echo
	echo "By system call (EAGAIN: those of them that failed with it):"
	echo
	printf '| system call |'
	for t in "${target_list[@]}"; do printf ' %s |' "$t"; done
	printf '\n|---|'
	for _ in "${target_list[@]}"; do printf -- '---:|'; done
	echo
	for f in "$out"/perf-*.csv; do counts "$f"; done | awk -F'\t' '$2 > 0 && $1 != "context-switches" { print $1 }' | sort -u |
		while IFS= read -r name; do
			printf '| %s |' "$name"
			for t in "${target_list[@]}"; do printf ' %s |' "$(per "$t" "$name")"; done
			echo
		done
	echo
	echo "Per run (in the order run; host steal: the share of each CPU the hypervisor gave other guests):"
	echo
	printf '| target | CPU µs | of which kernel µs | host steal %% (cpu0, cpu1) |\n|---|---:|---:|---|\n'
	sed -n 's/.*"label":"\([^"]*\)".*"handshakes":\([0-9]*\).*"cpu_s":\([0-9.]*\),"cpu_sys_s":\([0-9.]*\).*"steal_pct":{"cpu0":\([0-9.]*\),"cpu1":\([0-9.]*\)}.*/\1 \2 \3 \4 \5 \6/p' "$jsonl" |
		awk '{ printf "| %s | %.0f | %.0f | %s, %s |\n", $1, $3 * 1e6 / $2, $4 * 1e6 / $2, $5, $6 }'
} >"$out/summary.md"
cat "$out/summary.md"
log "results: $out/summary.md"
