# bench/lib.sh: what bench/compare.sh, bench/scale.sh and bench/conncost.sh
# share. Source it after setting prog (the name messages start with,
# without ".sh"); it installs an EXIT trap that stops, by PID, every
# process recorded in started.
# shellcheck shell=bash

: "${prog:?set prog before sourcing bench/lib.sh}"

# parse_flags NAMES ARGS...: sets, for every "-name VALUE" (or "--name
# VALUE") in ARGS, the variable name (dashes become underscores), where
# NAMES lists the names allowed, separated by spaces. -h prints usage (a
# function of the caller) and exits 0; anything else exits 2.
parse_flags() {
	local names=" $1 " opt
	shift
	while (($# > 0)); do
		opt=${1#-}
		opt=${opt#-}
		case $opt in
		h | help)
			usage
			exit 0
			;;
		esac
		if [[ $names != *" $opt "* ]]; then
			echo "$prog.sh: unknown argument $1" >&2
			usage >&2
			exit 2
		fi
		if (($# < 2)); then
			echo "$prog.sh: $1 needs a value" >&2
			exit 2
		fi
		printf -v "${opt//-/_}" '%s' "$2"
		shift 2
	done
}

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

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

# free_port: a loopback TCP port nobody listens on right now, below the
# ephemeral range (where an outgoing connection's local port, which a
# connect cannot see, would make the bind fail).
free_port() {
	local p low=32768 span
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	span=$((low > 12000 ? low - 12000 : 1000))
	for ((p = 10000 + RANDOM % span; ; p++)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# ------------------------------------------------------------------- set up

# raise_fd_limit: one file descriptor limit for everything, 20000 (or the
# hard limit when it is lower).
raise_fd_limit() {
	local hard
	hard=$(ulimit -Hn)
	if [[ $hard == unlimited ]] || ((hard >= 20000)); then
		ulimit -n 20000
	else
		log "hard fd limit is $hard, below 20000: idle runs may fail above $(((hard - 100) / 2)) connections"
		ulimit -n "$hard"
	fi
}

# build_bins DIR CERTDIR: wsgate, wsgate-backend and wsgate-bench into DIR,
# and a certificate for 127.0.0.1 and localhost into CERTDIR.
build_bins() {
	local dir=$1 certs=$2 cmd
	log "building into $dir"
	# -buildvcs=auto overrides a GOFLAGS=-buildvcs=false: "wsgate version"
	# in the results then names the commit measured.
	for cmd in wsgate wsgate-backend wsgate-bench; do
		go build -buildvcs=auto -o "$dir/$cmd" "./cmd/$cmd"
	done
	go build -o "$dir/gencert" ./bench/gencert
	"$dir/gencert" -dir "$certs" -hosts 127.0.0.1,localhost >/dev/null
}
