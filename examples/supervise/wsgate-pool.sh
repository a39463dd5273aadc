#!/usr/bin/env bash
# wsgate-pool.sh: run N wsgate processes on one port, for hosts without
# systemd (see ../systemd/wsgate@.service for those with it).
#
#   wsgate-pool.sh N CONFIG [ADMIN]
#
# Every process runs `wsgate run -config CONFIG -admin ADMIN`, with %i in
# ADMIN replaced by its number, 1 to N (default ADMIN: 127.0.0.1:909%i,
# so up to 9 processes). CONFIG must set reuse_port: true. The script
#   - restarts a process that dies, a second later;
#   - passes SIGHUP to every process (each reloads CONFIG);
#   - on SIGTERM or SIGINT passes SIGTERM to every process (each drains,
#     1001 to its clients), waits for all of them and exits 0, or 1 if one
#     of them did not exit 0.
# It prints "wsgate-pool: instance I pid P" for every process it starts.
# WSGATE names the wsgate binary (default: wsgate on PATH). Needs bash 5.1
# or later (wait -n -p).
set -u

if (($# < 2 || $# > 3)); then
	echo "usage: $0 N CONFIG [ADMIN]" >&2
	exit 2
fi
n=$1 config=$2 admin=${3:-127.0.0.1:909%i}
wsgate=${WSGATE:-wsgate}

declare -A instance # pid -> instance number
stopping=0 status=0

start() {
	"$wsgate" run -config "$config" -admin "${admin//%i/$1}" &
	instance[$!]=$1
	echo "wsgate-pool: instance $1 pid $!"
}

signal_all() {
	local pid
	for pid in "${!instance[@]}"; do
		kill "-$1" "$pid" 2>/dev/null
	done
}

trap 'stopping=1; signal_all TERM' TERM INT
trap 'signal_all HUP' HUP

for ((i = 1; i <= n; i++)); do
	start "$i"
done

while ((${#instance[@]} > 0)); do
	# Returns when a process exits, or when a trapped signal arrives (the
	# trap has run by then, and pid is unset).
	wait -n -p pid
	code=$?
	[[ -n ${pid-} && -n ${instance[$pid]-} ]] || continue
	i=${instance[$pid]}
	unset "instance[$pid]"
	if ((stopping)); then
		((code == 0)) || status=1
		continue
	fi
	echo "wsgate-pool: instance $i pid $pid exited ($code); restarting it" >&2
	sleep 1
	((stopping)) || start "$i"
done
exit "$status"
