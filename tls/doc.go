// Package tls terminates TLS for wsgate: it turns certificate options into a
// *crypto/tls.Config and reloads certificates without a restart.
//
// A [Provider] serves static certificates (PEM files and in-memory pairs)
// chosen by SNI and, with [Options].ACME, certificates obtained over ACME by
// golang.org/x/crypto/acme/autocert (static certificates win for the names
// they cover). Its consumer-side shape is the one tailscale's derper uses
// for its certProvider: TLSConfig() *tls.Config, and
// HTTPHandler(fallback http.Handler) http.Handler for the :80 listener (ACME
// HTTP-01 challenges, and a 308 redirect to https). Consumers define that
// interface themselves; this package does not export one.
//
// # Imports
//
// This package is named tls, like its directory, and inside it the standard
// library's crypto/tls is imported without an alias, so every tls.Config,
// tls.Certificate and tls.VersionTLS12 in this package means crypto/tls.
// Callers outside import this one as wstls, whether or not the file also
// needs crypto/tls (importas, in .golangci.yml, enforces it):
//
//	import (
//		"crypto/tls"
//
//		wstls "github.com/wsgate/wsgate/tls"
//	)
//
// The API is built so that most callers only need this package: TLSConfig
// returns a ready *tls.Config.
//
// # Concurrency
//
// A Provider is safe for concurrent use. Handshakes read the current
// certificate set through an atomic pointer; Reload builds a new set and
// swaps it in, so it affects only handshakes that start afterwards, never
// connections that are already established. No method of this package
// starts a goroutine of its own, but for the ACME cache's lock below;
// autocert, once a handshake asks it for a certificate, runs renewal
// timers and clean-ups for the process's life.
//
// # Several instances
//
// Processes that share ACMEOptions.CacheDir order one certificate per name
// between them: the cache autocert is given (sharedcache.go) takes a lock
// file per name in the directory from the cache miss that starts an order
// to the Put that ends it, and reads the cache again once it has the lock.
// The lock is flock(2) where the system has it (lockfile_flock.go), else a
// file created with O_EXCL that its holder keeps fresh
// (lockfile_excl.go, also built with -tags wsgate_portable). While a lock
// is held, a context.AfterFunc waits to release it when autocert's order
// ends, and the O_EXCL lock runs a heartbeat goroutine; both end with the
// hold.
package tls
