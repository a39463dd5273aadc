// Package proxy is wsgate's data path: the accept path that takes a client
// connection through its accept layers and TLS handshake (Listener), and
// an http.Handler that routes each request by host and path prefix to a
// pool, validates WebSocket upgrades, dials a backend chosen by a Picker
// (retrying others when one refuses), relays the backend's 101 response
// and then tunnels bytes both ways without re-framing. Plain HTTP requests
// on a route are reverse-proxied to the same pool.
//
// A connection's life:
//
//	client ──TCP──▶ Listener.Run: ClientConn → AcceptLayers → TLS handshake
//	    ──▶ http.Server ──▶ Handler.ServeHTTP
//	    route → validate upgrade → Picker.Acquire → dial → forward upgrade
//	    → backend 101 → hijack → tunnel: two copiers over sockio.Conns;
//	    ServeHTTP returns → the copier that ends second closes both sides,
//	    Release, Observer.TunnelClosed, the access record
//
// How bytes move — waiting without a buffer, raw system calls, the
// record-aware TLS conn, parking idle tunnels, write timeouts and closing
// without waiting for a peer — is proxy/internal/sockio's, behind one small
// interface per socket (sockio.Conn). This package is the WebSocket-aware
// part: the frame tracker, close frames at frame boundaries, who closed a
// tunnel and with which code.
//
// Seams: Picker (the balancer), FailureReporter (passive health), Observer
// (metrics: one call per upgrade, tunnel end or refusal, never per
// message) and AcceptLayer (PROXY protocol, limits before TLS).
//
// The package knows nothing of YAML, ACME, probing or go-memdb.
package proxy
