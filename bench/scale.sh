#!/usr/bin/env bash
# bench/scale.sh: several wsgate processes sharing one TLS port
# (reuse_port: true) hold as many idle wss connections as their file
# descriptors allow, on this machine, over loopback; one process alone is
# measured the same way for comparison.
#
# Usage, from the repository root:
#
#   bench/scale.sh [-procs 4] [-conns 9600] [-single-conns 9900]
#                  [-backends 4] [-gen-max 10000] [-hold 60s]
#                  [-echo-duration 10s] [-echo-conns 32] [-out bench/results/scale-DATE]
#
# Quick smoke test (under a minute once built; bench/scale_test.go runs
# one):
#
#   bench/scale.sh -procs 2 -conns 100 -single-conns 100 -hold 2s -echo-duration 1s
#
# Two phases, each with fresh wsgate processes on a fresh port: first one
# process holding -single-conns connections (0 skips this phase), then
# -procs processes on one port, each with its own -admin, holding -procs ×
# -conns in all (the kernel spreads them by a hash of their addresses, so
# not exactly -conns each: the default leaves the busiest process about
# four standard deviations below wsgate's max_connections; the script
# prints the margin). In each phase several wsgate-bench idle
# generators (at most -gen-max connections each, each from its own 254
# source addresses 127.0.G.1-254) open the connections through the shared
# port to -backends wsgate-backend processes; once all are open the
# connections are held for -hold (the idle CPU window), then
# wsgate-bench rtt runs -echo-conns more connections for -echo-duration (64-byte
# round trips, CPU per message summed over the processes), then every
# generator closes its connections with close handshakes, one generator
# at a time.
#
# Nothing is pinned: the processes share both CPUs, as they would on a
# host. Results: $OUT/results.md (also printed), $OUT/results.tsv (one
# row per wsgate process and phase), and per phase in $OUT/<phase>/ the
# generators' JSON lines and logs, each process's log and final /metrics.
# The README's "Scaling guide" explains the figures.
set -euo pipefail

usage() {
	awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
}

procs=4
conns=9600
single_conns=9900
backends=4
gen_max=10000
hold=60s
echo_duration=10s
echo_conns=32
out=""

prog=scale
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_flags "procs conns single-conns backends gen-max hold echo-duration echo-conns out" "$@"

for v in procs conns backends gen-max echo-conns; do
	val=${v//-/_}
	[[ ${!val} =~ ^[1-9][0-9]*$ ]] || die "-$v ${!val}: want a positive integer"
done
[[ $single_conns =~ ^[0-9]+$ ]] || die "-single-conns $single_conns: want 0 (skip) or a positive integer"
hold_s=$(secs "$hold")
echo_s=$(secs "$echo_duration")
((hold_s > 0)) || die "-hold $hold: want at least 1s"
((procs <= 9)) || die "-procs $procs: at most 9"
command -v go >/dev/null || die "go is not on PATH"
[[ -r /proc/self/status ]] || die "needs Linux (/proc)"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
out=${out:-bench/results/scale-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"/{bin,certs}
out=$(cd "$out" && pwd)
bin=$out/bin
script_start=$SECONDS

raise_fd_limit
fds=$(ulimit -n)
# What wsgate derives as limits.max_connections from its descriptor limit
# (cmd/wsgate/limits.go): two descriptors per connection, 128 kept back.
max_conns=$(((fds - 128) / 2))
total=$((procs * conns))
if ((single_conns + echo_conns > max_conns)); then
	die "-single-conns $single_conns + -echo-conns $echo_conns exceeds one process's max_connections ($max_conns at $fds descriptors)"
fi
if ((conns + (echo_conns + procs - 1) / procs > max_conns)); then
	die "-conns $conns exceeds one process's max_connections ($max_conns at $fds descriptors)"
fi
# Each backend holds one descriptor per connection, the generators too.
if (((total + backends - 1) / backends + 64 > fds)); then
	die "$total connections over $backends backends is more than one backend's $fds descriptors; add -backends"
fi
((gen_max + 64 <= fds)) || die "-gen-max $gen_max: more than a generator's $fds descriptors"
# SO_REUSEPORT hashes: per process the count is about binomial(total,
# 1/procs). How far the mean (with the echo run's share) sits below
# max_connections, in standard deviations; below ~3, some runs will see
# one process refuse upgrades with 503.
margin=$(awk -v n="$total" -v p="$procs" -v c="$conns" -v e="$echo_conns" -v m="$max_conns" \
	'BEGIN { sd = sqrt(n / p * (1 - 1 / p)); printf "%.1f", (sd > 0 ? (m - c - e / p) / sd : 99) }')

log "$procs × $conns: the mean per process sits $margin standard deviations below max_connections ($max_conns)"
build_bins "$bin" "$out/certs"
clk_tck=$(getconf CLK_TCK)

{
	echo "## Machine and versions"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "- command: \`bench/scale.sh -procs $procs -conns $conns -single-conns $single_conns -backends $backends -gen-max $gen_max -hold $hold -echo-duration $echo_duration -echo-conns $echo_conns\`"
	echo "- CPU: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); nothing pinned, GOMAXPROCS left to Go"
	echo "- memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	echo "- kernel: $(uname -srm)"
	echo "- Go: $(go version | cut -d' ' -f3-)"
	echo "- wsgate: $("$bin/wsgate" version 2>&1 | head -n1)"
	echo "- fd limit: $fds per process, so wsgate's derived limits.max_connections is $max_conns"
	echo "- $procs × $conns: the mean per process sits $margin standard deviations of the reuse_port hash below max_connections"
	echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
} >"$out/context.md"

# ------------------------------------------------------------ measurements

# http_get HOST:PORT PATH: the body of a plain HTTP GET, without curl.
http_get() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 10 bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0##*:}" &&
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" "$0" >&3 && cat <&3' "$1" "$2" |
		sed '1,/^\r$/d'
}

# metric_sum NAME [EXCLUDE] < metrics: the sum of every series of NAME,
# leaving out those whose labels match the regular expression EXCLUDE.
metric_sum() {
	awk -v n="$1" -v ex="${2:-}" '
		index($1, n) == 1 && (substr($1, length(n) + 1, 1) == "{" || length($1) == length(n)) &&
		(ex == "" || $1 !~ ex) { s += $NF }
		END { printf "%d\n", s }'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: utime + stime in clock ticks (fields 14 and 15 of stat,
# counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# steal BEFORE AFTER: "cpu0 1.2%, cpu1 0.4%" from two copies of /proc/stat;
# steal_max prints the largest percentage alone.
# shellcheck disable=SC2016 # an awk program
steal_awk='
	FNR == NR && /^cpu[0-9]/ { for (i = 2; i <= 9; i++) t0[$1] += $i; s0[$1] = $9; next }
	FNR != NR && /^cpu[0-9]/ {
		t = 0; for (i = 2; i <= 9; i++) t += $i
		p = (t > t0[$1]) ? 100 * ($9 - s0[$1]) / (t - t0[$1]) : 0
		line = line sep sprintf("%s %.1f%%", $1, p); sep = ", "
		if (p > mx) mx = p
	}'
steal() { awk "$steal_awk END { print line }" "$1" "$2"; }
steal_max() { awk "$steal_awk END { printf \"%.1f\\n\", mx }" "$1" "$2"; }

# ours_ticks: the CPU ticks of every process this script started that is
# still running, plus those of the children it has waited for (its own
# cutime and cstime), so the sum only grows.
ours_ticks() {
	local t p
	t=$(sed 's/.*) //' "/proc/$$/stat" | awk '{print $14 + $15}')
	for p in "${started[@]}"; do
		t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# mark FILE: what others_pct compares: the time, this machine's busy CPU
# ticks (user, nice and system of /proc/stat) and ours_ticks.
mark() {
	echo "$EPOCHREALTIME $(awk '/^cpu / {print $2 + $3 + $4}' /proc/stat) $(ours_ticks)" >"$1"
}

# others_pct MARK0 MARK1: the CPU that processes this script did not start
# used between two marks, in % of one core: other users of a shared
# machine, which disturb every figure as steal time does.
others_pct() {
	read -r t0 busy0 ours0 <"$1"
	read -r t1 busy1 ours1 <"$2"
	calc "100 * (($busy1 - $busy0) - ($ours1 - $ours0)) / $clk_tck / ($t1 - $t0)"
}

# disturbed OTHERS STEAL: ", disturbed" when other processes used more
# than 20% of a core or the host stole more than 5% of a CPU.
disturbed() {
	awk -v o="$1" -v s="$2" 'BEGIN { if (o > 20 || s > 5) print ", disturbed"; else print "" }'
}

# json_num FILE KEY: the first number under "KEY" in a wsgate-bench -json
# line (its field names are a stable interface, see cmd/wsgate-bench/result.go).
json_num() {
	local v
	v=$(grep -o "\"$2\":-\?[0-9.]*" "$1" 2>/dev/null | head -n1 | cut -d: -f2)
	echo "${v:-0}"
}

# calc EXPR: floating-point arithmetic.
calc() { awk "BEGIN { print ($1) }"; }

# ------------------------------------------------------------------ backends

backend_addrs=()
for ((i = 1; i <= backends; i++)); do
	blog=$out/backend-b$i.log
	"$bin/wsgate-backend" -listen 127.0.0.1:0 -id "b$i" -drain-timeout 2s >"$blog" 2>&1 &
	started+=("$!")
	line=$(wait_line "$blog" "listening on " 10 "$!") || die "backend b$i did not start"
	backend_addrs+=("${line##*listening on }")
done
log "backends: ${backend_addrs[*]}"

# -------------------------------------------------------------------- phase

# The figures each phase leaves for the comparison at the end, by
# "PHASE,KEY".
declare -A fig
tsv=$out/results.tsv
printf 'phase\tprocess\tpid\tconnections\tmax_connections\trss_before_kb\trss_open_kb\trss_hold_end_kb\tidle_cpu_s\thold_s\trefused\tupgrades_not_ok\n' >"$tsv"
phases_md=$out/phases.md
: >"$phases_md"

# start_gateways DIR N: N wsgate processes on one fresh port, each with its
# own admin port; sets url, gw_pids and admins; returns once each has all
# backends healthy and one echo went through.
start_gateways() {
	local dir=$1 n=$2 port i pid ap healthy
	port=$(free_port)
	url=wss://127.0.0.1:$port/ws
	{
		echo "# written by bench/scale.sh"
		echo "listen: \"127.0.0.1:$port\""
		echo "reuse_port: true"
		echo "tls:"
		echo "  certificates:"
		echo "    - cert_file: $out/certs/cert.pem"
		echo "      key_file: $out/certs/key.pem"
		echo "pools:"
		echo "  - name: bench"
		echo "    backends:"
		for a in "${backend_addrs[@]}"; do
			echo "      - address: \"$a\""
		done
		# The backends share two cores with the generators: a probe may
		# wait its turn. 1 s and three failures in a row, not the default
		# 500 ms and two, so that a busy moment is not a backend down.
		echo "    health_check:"
		echo "      path: /healthz"
		echo "      interval: 1s"
		echo "      timeout: 1s"
		echo "      unhealthy_threshold: 3"
		echo "routes:"
		echo "  - pool: bench"
	} >"$dir/wsgate.yaml"
	gw_pids=()
	admins=()
	for ((i = 1; i <= n; i++)); do
		ap=$(free_port)
		[[ $ap != "$port" ]] || ap=$(free_port)
		"$bin/wsgate" run -config "$dir/wsgate.yaml" -admin "127.0.0.1:$ap" >"$dir/wsgate-$i.log" 2>&1 &
		pid=$!
		started+=("$pid")
		gw_pids+=("$pid")
		admins+=("127.0.0.1:$ap")
		wait_line "$dir/wsgate-$i.log" "admin listening on" 20 "$pid" >/dev/null || die "wsgate $i did not start"
	done
	for ((i = 0; i < n; i++)); do
		for ((k = 0; k < 300; k++)); do
			healthy=$(http_get "${admins[i]}" /metrics | metric_sum wsgate_backend_healthy || true)
			((healthy == backends)) && break
			sleep 0.1
		done
		((healthy == backends)) || die "wsgate $((i + 1)) (${admins[i]}) sees $healthy of $backends backends healthy after 30s"
	done
	for ((k = 0; k < 20; k++)); do
		if timeout 20 "$bin/wsgate-bench" -mode connrate -url "$url" -insecure -c 1 -n 1 -size 16 \
			-duration 5s -warmup 0s -quiet >"$dir/ready.log" 2>&1; then
			return 0
		fi
		sleep 0.5
	done
	die "no WebSocket echo through $url after 20 attempts; see $dir/ready.log"
}

# counts: one line, each process's WebSocket connections (the sum of its
# wsgate_backend_active_connections).
counts() {
	local a
	for a in "${admins[@]}"; do
		http_get "$a" /metrics | metric_sum wsgate_backend_active_connections
	done | paste -sd' '
}

# phase NAME N TARGET: N processes, TARGET connections; see the top.
phase() {
	local name=$1 n=$2 target=$3
	local dir=$out/$name t0=$SECONDS i k pid
	mkdir -p "$dir"
	log "phase $name: $n wsgate process(es), $target connections"
	start_gateways "$dir" "$n"

	local rss0=() rss1=() rss2=() c0=() c1=() held=() held2=()
	for pid in "${gw_pids[@]}"; do rss0+=("$(rss_kb "$pid")"); done
	local load_start
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	cp /proc/stat "$dir/stat-start"
	mark "$dir/mark-start"

	# Generators: at most gen_max connections each, the target split evenly.
	local ngen=$(((target + gen_max - 1) / gen_max)) gen_pids=() share limit
	local open_budget=$((120 + target / 100))
	((ngen <= 200)) || die "$target connections need $ngen generators; raise -gen-max"
	for ((g = 0; g < ngen; g++)); do
		share=$((target / ngen + (g < target % ngen ? 1 : 0)))
		"$bin/wsgate-bench" -mode idle -url "$url" -insecure -c "$share" \
			-duration "$((open_budget + hold_s + echo_s + 180))s" \
			-source-ips "127.0.$((10 + g)).1-127.0.$((10 + g)).254" -json -label "$name-gen$((g + 1))" \
			>"$dir/gen-$((g + 1)).json" 2>"$dir/gen-$((g + 1)).log" &
		gen_pids+=("$!")
		started+=("$!")
	done
	# wsgate-bench idle prints "holding N connections" once a second once
	# all are open (the progress line); -duration only bounds the hold,
	# which SIGTERM ends (below) with close handshakes, as at its end.
	local open_start=$EPOCHREALTIME
	for ((g = 0; g < ngen; g++)); do
		wait_line "$dir/gen-$((g + 1)).log" "holding" "$open_budget" "${gen_pids[g]}" >/dev/null ||
			die "generator $((g + 1)) did not finish opening within ${open_budget}s"
	done
	local open_s
	open_s=$(calc "$EPOCHREALTIME - $open_start")
	sleep 2 # as wsgate-bench idle does before it reads RSS
	read -r -a held <<<"$(counts)"
	for pid in "${gw_pids[@]}"; do rss1+=("$(rss_kb "$pid")"); done
	log "phase $name: all open after $(printf '%.1f' "$open_s")s: ${held[*]}; holding ${hold}"

	# The idle window.
	cp /proc/stat "$dir/stat-hold0"
	mark "$dir/mark-hold0"
	for pid in "${gw_pids[@]}"; do c0+=("$(cpu_ticks "$pid")"); done
	local h0=$EPOCHREALTIME
	sleep "$hold_s"
	for pid in "${gw_pids[@]}"; do c1+=("$(cpu_ticks "$pid")"); done
	local hold_real
	hold_real=$(calc "$EPOCHREALTIME - $h0")
	cp /proc/stat "$dir/stat-hold1"
	mark "$dir/mark-hold1"
	for pid in "${gw_pids[@]}"; do rss2+=("$(rss_kb "$pid")"); done
	read -r -a held2 <<<"$(counts)"

	# The echo phase, through the same port, beside the held connections.
	local echo_json=$dir/echo.json
	if ((echo_s > 0)); then
		log "phase $name: $echo_conns connections of 64-byte round trips for $echo_duration"
		mark "$dir/mark-echo0"
		timeout $((echo_s + 60)) "$bin/wsgate-bench" -mode rtt -url "$url" -insecure -c "$echo_conns" -size 64 \
			-duration "$echo_duration" -warmup 1s -pid "$(
				IFS=,
				echo "${gw_pids[*]}"
			)" -json -quiet -label "$name" >"$echo_json" 2>"$dir/echo.log" ||
			log "phase $name: the echo run exited $?; see $dir/echo.log"
		mark "$dir/mark-echo1"
	fi

	# Close, one generator at a time so that each close handshake has the
	# machine to itself (wsgate-bench gives answers 2s once all are sent).
	local gen_alive=0
	for ((g = 0; g < ngen; g++)); do
		pid=${gen_pids[g]}
		if ! kill -0 "$pid" 2>/dev/null; then
			log "generator $((g + 1)) ended its hold before the script did; see $dir/gen-$((g + 1)).log"
			continue
		fi
		gen_alive=$((gen_alive + 1))
		kill -TERM "$pid"
		limit=$((60 + target / ngen / 200))
		for ((k = 0; k < limit * 10; k++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && log "generator $((g + 1)) still closing after ${limit}s; stopping it"
		stop_pid "$pid"
		forget_pid "$pid"
	done
	cp /proc/stat "$dir/stat-end"
	mark "$dir/mark-end"
	local load_end
	load_end=$(cut -d' ' -f1-3 /proc/loadavg)

	# wsgate's own counts, then the processes go.
	local refused=() not_ok=() m
	for ((i = 0; i < n; i++)); do
		m=$dir/metrics-$((i + 1)).txt
		http_get "${admins[i]}" /metrics >"$m" || true
		refused+=("$(metric_sum wsgate_limited_total <"$m")")
		not_ok+=("$(metric_sum wsgate_upgrades_total 'result="ok"' <"$m")")
	done
	# Every tunnel here ends with the client's 1000 close; any other end
	# (a backend's keep-alive giving up, a drop) is listed from the logs'
	# "tunnel closed" lines, which say who ended it and the bytes each way.
	local odd_closes
	odd_closes=$(cat "$dir"/metrics-*.txt | metric_sum wsgate_closes_total 'code="1000",initiator="client"')
	grep -h 'msg="tunnel closed"' "$dir"/wsgate-*.log | grep -v 'close_code=1000 closed_by=client' >"$dir/odd-closes.log" || true
	local odd_detail=""
	if ((odd_closes > 0)); then
		odd_detail=" (odd-closes.log: $(sed -E 's/.* (close_code=[^ ]*) (closed_by=[^ ]*).*/\1 \2/' "$dir/odd-closes.log" |
			sort | uniq -c | awk '{printf "%s%d× %s %s", s, $1, $2, $3; s = ", "}'))"
	fi
	for pid in "${gw_pids[@]}"; do
		stop_pid "$pid"
		forget_pid "$pid"
	done

	# ---- figures
	local opened=0 failed=0 errors=0 f
	for ((g = 1; g <= ngen; g++)); do
		f=$dir/gen-$g.json
		opened=$((opened + $(json_num "$f" opened)))
		failed=$((failed + $(json_num "$f" failed)))
		errors=$((errors + $(json_num "$f" errors)))
	done
	local sum_held=0 sum_held2=0 sum_drss1=0 sum_drss2=0 sum_rss1=0 sum_cpu=0 sum_refused=0 sum_not_ok=0
	local cmin=999999999 cmax=0 cpu_s
	for ((i = 0; i < n; i++)); do
		sum_held=$((sum_held + held[i]))
		sum_held2=$((sum_held2 + held2[i]))
		sum_rss1=$((sum_rss1 + rss1[i]))
		sum_drss1=$((sum_drss1 + rss1[i] - rss0[i]))
		sum_drss2=$((sum_drss2 + rss2[i] - rss0[i]))
		sum_cpu=$((sum_cpu + c1[i] - c0[i]))
		sum_refused=$((sum_refused + refused[i]))
		sum_not_ok=$((sum_not_ok + not_ok[i]))
		((held[i] < cmin)) && cmin=${held[i]}
		((held[i] > cmax)) && cmax=${held[i]}
		cpu_s=$(calc "$((c1[i] - c0[i])) / $clk_tck")
		printf '%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f\t%d\t%d\n' "$name" $((i + 1)) "${gw_pids[i]}" "${held[i]}" "$max_conns" \
			"${rss0[i]}" "${rss1[i]}" "${rss2[i]}" "$cpu_s" "$hold_real" "${refused[i]}" "${not_ok[i]}" >>"$tsv"
	done
	local echo_errors=0 msgs=0 us_per_msg=0 echo_steal=""
	if ((echo_s > 0)); then
		echo_errors=$(json_num "$echo_json" errors)
		msgs=$(json_num "$echo_json" msgs_per_s)
		us_per_msg=$(json_num "$echo_json" cpu_us_per_msg)
		echo_steal=$(grep -o '"steal_pct":{[^}]*}' "$echo_json" | sed 's/"steal_pct"://; s/[{}"]//g; s/:/ /g; s/,/%, /g; s/$/%/' || true)
	fi
	local failures=$((errors + echo_errors + sum_refused + sum_not_ok))
	local cpu_total_s rss_per rss_per2 idle_pct_core per_k elapsed=$((SECONDS - t0))
	cpu_total_s=$(calc "$sum_cpu / $clk_tck")
	rss_per=$(calc "$sum_held > 0 ? $sum_drss1 * 1024 / $sum_held : 0")
	rss_per2=$(calc "$sum_held > 0 ? $sum_drss2 * 1024 / $sum_held : 0")
	idle_pct_core=$(calc "100 * $cpu_total_s / $hold_real")
	per_k=$(calc "$sum_held > 0 ? $idle_pct_core * 1000 / $sum_held : 0")
	local hold_steal hold_steal_max hold_others phase_others echo_others=""
	hold_steal=$(steal "$dir/stat-hold0" "$dir/stat-hold1")
	hold_steal_max=$(steal_max "$dir/stat-hold0" "$dir/stat-hold1")
	hold_others=$(others_pct "$dir/mark-hold0" "$dir/mark-hold1")
	phase_others=$(others_pct "$dir/mark-start" "$dir/mark-end")
	((echo_s > 0)) && echo_others=$(others_pct "$dir/mark-echo0" "$dir/mark-echo1")

	fig[$name,n]=$n
	fig[$name,target]=$target
	fig[$name,held]=$sum_held
	fig[$name,failures]=$failures
	fig[$name,rss_total_mib]=$(calc "$sum_rss1 / 1024")
	fig[$name,rss_per]=$rss_per
	fig[$name,rss_per2]=$rss_per2
	fig[$name,idle_pct]=$idle_pct_core
	fig[$name,per_k]=$per_k
	fig[$name,msgs]=$msgs
	fig[$name,us_per_msg]=$us_per_msg
	fig[$name,open_s]=$open_s
	fig[$name,spread]="$cmin–$cmax"
	fig[$name,elapsed]=$elapsed
	fig[$name,others]=$phase_others
	fig[$name,steal]=$(steal_max "$dir/stat-start" "$dir/stat-end")

	{
		echo "### $name: $n process(es), $target connections asked for"
		echo
		echo "- connections held: **$sum_held** by wsgate's count (sum of \`wsgate_backend_active_connections\`), $opened opened by the $ngen generator(s); still $sum_held2 at the end of the hold"
		echo "- failures: **$failures** — generators: $failed failed to open, $errors errors in all (opening, dropped while held, closing); echo run: $echo_errors errors; wsgate: $sum_refused refused by a limit, $sum_not_ok upgrades not ok; $odd_closes tunnel(s) ended otherwise than by the client's close 1000$odd_detail"
		printf -- '- opening took %.1fs (%.0f connections/s); the phase %ds\n' "$open_s" "$(calc "$open_s > 0 ? $opened / $open_s : 0")" "$elapsed"
		echo "- wsgate RSS: $((sum_rss1 / 1024)) MiB in all once open; per connection $(printf '%.0f' "$rss_per") bytes once open (baseline before connecting subtracted), $(printf '%.0f' "$rss_per2") bytes at the end of the hold"
		echo "- wsgate CPU while idle: $(printf '%.2f' "$cpu_total_s") s over $(printf '%.1f' "$hold_real") s, $(printf '%.2f' "$idle_pct_core")% of one core in all, $(printf '%.3f' "$per_k")% of a core per 1,000 idle tunnels"
		if ((echo_s > 0)); then
			echo "- echo run ($echo_conns connections, 64-byte round trips, $echo_duration): $(printf '%.0f' "$msgs") round trips/s, $(printf '%.2f' "$us_per_msg") µs of wsgate CPU per round trip (all processes), so $(calc "$us_per_msg > 0 ? 1000000 / $us_per_msg : 0" | cut -d. -f1) round trips per second per core of wsgate CPU; host steal $echo_steal; other processes $(printf '%.0f' "$echo_others")% of a core$(disturbed "$echo_others" 0)"
		fi
		echo "- host: processes this script did not start used $(printf '%.0f' "$hold_others")% of a core during the hold$(disturbed "$hold_others" "$hold_steal_max"), $(printf '%.0f' "$phase_others")% over the whole phase; steal during the hold $hold_steal; over the whole phase $(steal "$dir/stat-start" "$dir/stat-end"); load average $load_start at the start, $load_end at the end (our own processes count in it)"
		echo
		echo "| process | pid | connections | of max_connections | RSS before kB | RSS open kB | RSS end of hold kB | idle CPU s | refused |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for ((i = 0; i < n; i++)); do
			echo "| $((i + 1)) | ${gw_pids[i]} | ${held[i]} | $(calc "100 * ${held[i]} / $max_conns" | xargs printf '%.1f')% | ${rss0[i]} | ${rss1[i]} | ${rss2[i]} | $(calc "$((c1[i] - c0[i])) / $clk_tck") | ${refused[i]} |"
		done
		if ((n > 1)); then
			echo
			echo "Spread: $cmin to $cmax per process (mean $((sum_held / n)); a uniform hash would give a standard deviation of $(calc "sqrt($sum_held * (1 / $n) * (1 - 1 / $n))" | cut -d. -f1))."
		fi
		echo
	} >>"$phases_md"
	((gen_alive == ngen)) || die "phase $name: $((ngen - gen_alive)) generator(s) ended their hold early; see $dir"
	log "phase $name: done in ${elapsed}s, $sum_held held, $failures failures"
}

phase_names=()
if ((single_conns > 0)); then
	phase 1proc 1 "$single_conns"
	phase_names+=(1proc)
fi
phase "${procs}proc" "$procs" "$total"
phase_names+=("${procs}proc")

cleanup

# ------------------------------------------------------------------ report

{
	echo "# wsgate scale-out on one machine"
	echo
	cat "$out/context.md"
	echo "- whole script: $((SECONDS - script_start))s, building included"
	echo
	echo "## Summary"
	echo
	echo "| | processes | connections held | failures | wsgate RSS (MiB) | RSS/conn once open (B) | RSS/conn end of hold (B) | idle CPU, % of a core | per 1,000 tunnels | echo round trips/s | wsgate µs/round trip | opening (s) | per-process spread | others, % of a core | max steal % |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
	for p in "${phase_names[@]}"; do
		printf '| %s | %d | %d | %d | %.0f | %.0f | %.0f | %.2f | %.3f | %.0f | %.2f | %.1f | %s | %.0f | %.1f |\n' "$p" "${fig[$p,n]}" "${fig[$p,held]}" \
			"${fig[$p,failures]}" "${fig[$p,rss_total_mib]}" "${fig[$p,rss_per]}" "${fig[$p,rss_per2]}" "${fig[$p,idle_pct]}" \
			"${fig[$p,per_k]}" "${fig[$p,msgs]}" "${fig[$p,us_per_msg]}" "${fig[$p,open_s]}" "${fig[$p,spread]}" "${fig[$p,others]}" "${fig[$p,steal]}"
	done
	echo
	echo "## Phases"
	echo
	cat "$phases_md"
} >"$out/results.md"
cat "$out/results.md"
total_failures=0
for p in "${phase_names[@]}"; do
	total_failures=$((total_failures + ${fig[$p,failures]}))
done
log "results: $out/results.md, per process: $out/results.tsv"
((total_failures == 0)) || die "$total_failures failures"
