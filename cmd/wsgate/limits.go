package main

import (
	"log/slog"
	"syscall"
)

// fdReserve is the file descriptors kept back from tunnels for listeners,
// health probes, plain HTTP requests, log files and the like.
const fdReserve = 128

// connectionLimit returns the proxy's limits.max_connections: the
// configured one, or one derived from the file-descriptor limit (each
// proxied connection holds two descriptors) after raising the soft limit
// to the hard one.
func connectionLimit(configured int, log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file-descriptor limit", slog.Any("err", err))
		return configured
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	fds := int(min(rl.Cur, 1<<30))
	if configured > 0 {
		if 2*configured+fdReserve > fds {
			log.Warn("limits.max_connections exceeds what the file-descriptor limit allows",
				slog.Int("max_connections", configured), slog.Int("fd_limit", fds))
		}
		log.Info("connection limit", slog.Int("max_connections", configured), slog.Int("fd_limit", fds))
		return configured
	}
	derived := max(1, (fds-fdReserve)/2)
	log.Info("connection limit", slog.Int("max_connections", derived), slog.Int("fd_limit", fds), slog.String("source", "file-descriptor limit"))
	return derived
}
