// Package proxy is wsgate's data path: an http.Handler that routes each
// request by host and path prefix to a pool, validates WebSocket upgrades,
// dials a backend chosen by the balancer (retrying others when one refuses),
// relays the backend's 101 response and then tunnels bytes both ways without
// re-framing. Plain HTTP requests on a route are reverse-proxied to the same
// pool.
//
// A connection's life:
//
//	client ──TLS──▶ http.Server ──▶ Handler.ServeHTTP
//	    route → validate upgrade → balancer.Acquire → dial → forward upgrade
//	    → backend 101 → hijack → tunnel: two copier goroutines; ServeHTTP
//	    returns → the copier that ends second closes both sides, Release
//
// The tunnel holds no copy buffer while a connection is idle: each copier
// waits for its source to become readable (epoll, through the socket's
// RawConn), then borrows a pooled buffer for as long as data flows.
//
// The package knows nothing of YAML, ACME, probing or go-memdb.
package proxy
