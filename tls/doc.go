// Package tls terminates TLS for wsgate: it turns certificate options into a
// *crypto/tls.Config and reloads certificates without a restart.
//
// A [Provider] serves static certificates (PEM files and in-memory pairs)
// chosen by SNI. Its consumer-side shape is the one tailscale's derper uses
// for its certProvider: TLSConfig() *tls.Config now, and an
// HTTPHandler(fallback http.Handler) http.Handler for the :80 listener once
// ACME support lands, so an autocert-backed provider can sit behind the same
// interface. Consumers define that interface themselves; this package does
// not export one.
//
// # Imports
//
// This package is named tls, like its directory, and inside it the standard
// library's crypto/tls is imported without an alias, so every tls.Config,
// tls.Certificate and tls.VersionTLS12 in this package means crypto/tls.
// Callers outside that need both packages in one file import this one as
// wstls (enforced by importas):
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
// connections that are already established. No method starts a goroutine.
package tls
