package main

import (
	"log/slog"

	"github.com/wsgate/wsgate/internal/fdlimit"
)

// fdReserve is the file descriptors kept back from tunnels for listeners,
// health probes, plain HTTP requests, log files and the like.
const fdReserve = 128

// connectionLimit returns the proxy's limits.max_connections: the
// configured one, or one derived from the file-descriptor limit (each
// proxied connection holds two descriptors) after raising the soft limit
// to the hard one.
func connectionLimit(configured int, log *slog.Logger) int {
	limit, err := fdlimit.Raise()
	switch {
	case err != nil && limit == 0:
		log.Warn("cannot read the file-descriptor limit", slog.Any(keyErr, err))
		return configured
	case err != nil:
		log.Warn("cannot raise the file-descriptor limit", slog.Any(keyErr, err))
	}
	fds := int(min(limit, 1<<30))
	if configured > 0 {
		if 2*configured+fdReserve > fds {
			log.Warn("limits.max_connections exceeds what the file-descriptor limit allows",
				slog.Int(keyMaxConnections, configured), slog.Int(keyFDLimit, fds))
		}
		log.Info("connection limit", slog.Int(keyMaxConnections, configured), slog.Int(keyFDLimit, fds))
		return configured
	}
	derived := max(1, (fds-fdReserve)/2)
	log.Info("connection limit", slog.Int(keyMaxConnections, derived), slog.Int(keyFDLimit, fds), slog.String(keySource, "file-descriptor limit"))
	return derived
}
