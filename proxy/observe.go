package proxy

import "time"

// Observer learns what the data path did, for metrics and access logs. Its
// methods are called once per event — an upgrade, a tunnel's end, a refusal,
// a failed TLS handshake — never per message or frame, on the goroutine
// that saw the event. They must be fast, must not block, and must be safe
// for concurrent use. The events are the Handler's: an Observer must not
// keep a pointer to one after the call returns.
//
// A Handler without an Observer pays nothing for it: Options.Observer nil
// means a no-op.
type Observer interface {
	// UpgradeDone is called once per WebSocket upgrade request that was
	// routed to a pool, when it ends: relayed 101 or refused.
	UpgradeDone(*UpgradeEvent)
	// TunnelClosed is called once per tunnel, after both of its sockets
	// are closed and its lease is released.
	TunnelClosed(*TunnelEvent)
	// Refused is called for every connection or upgrade a limit refused,
	// and for every TLS handshake that failed (Reason says which).
	Refused(*RefusalEvent)
}

// UpgradeResult says how an upgrade ended; it is the `result` label of
// wsgate_upgrades_total. The set is fixed (label values stay bounded).
type UpgradeResult string

// The upgrade results.
const (
	// UpgradeOK: the backend's 101 reached the client; a tunnel started.
	UpgradeOK UpgradeResult = "ok"
	// UpgradeBadRequest: a malformed upgrade (400) or headers over the
	// limit (431).
	UpgradeBadRequest UpgradeResult = "bad_request"
	// UpgradeForbiddenOrigin: the route's allowed_origins refused the
	// request's Origin (403).
	UpgradeForbiddenOrigin UpgradeResult = "forbidden_origin"
	// UpgradeLimited: a limit refused it (503 or 429); RefusalEvent says
	// which.
	UpgradeLimited UpgradeResult = "limited"
	// UpgradeNoBackend: no available backend was left to try (503).
	UpgradeNoBackend UpgradeResult = "no_backend"
	// UpgradeBackendError: every backend tried failed to connect or to
	// answer (503 to the client), or the tunnel could not be set up.
	UpgradeBackendError UpgradeResult = "backend_error"
	// UpgradeBackendRefused: the backend answered with a status other
	// than 101 and 503 (say 403 or 404), relayed to the client as it was.
	UpgradeBackendRefused UpgradeResult = "backend_refused"
	// UpgradeClientGone: the client went away before the 101 reached it.
	UpgradeClientGone UpgradeResult = "client_gone"
)

// UpgradeEvent describes one upgrade request that was routed to a pool.
type UpgradeEvent struct {
	Pool string
	// Backend is the address of the last backend tried, "" when none was.
	Backend string
	Result  UpgradeResult
	// Status is the HTTP status the client received (101 when Result is
	// UpgradeOK), 0 when it received none.
	Status int
	// Duration runs from the request's arrival to the 101 (or the refusal)
	// written to the client: the handshake's cost, apart from the
	// tunnel's life.
	Duration   time.Duration
	RemoteAddr string
}

// Initiator says who ended a tunnel: the side that sent the first close
// frame, or, when no close frame passed, the side whose connection ended
// first. It is the `initiator` label of wsgate_closes_total and the
// `closed_by` key of the tunnel's log record.
type Initiator string

// The initiators.
const (
	ClosedByClient  Initiator = "client"
	ClosedByBackend Initiator = "backend"
	// ClosedByProxy: wsgate itself (shutdown, a timeout, a limit).
	ClosedByProxy Initiator = "proxy"
)

// TunnelEvent describes one tunnel that ended.
type TunnelEvent struct {
	Pool    string
	Backend string
	// RemoteAddr is the client's address as the accept path established
	// it (a PROXY protocol header's source, say), host:port.
	RemoteAddr string
	// Host and Path are the upgrade request's Host header and URL path
	// (no query: it may carry credentials).
	Host, Path string
	// Duration runs from the 101 to the closing of both sockets.
	Duration time.Duration
	// BytesUp went from the client to the backend, BytesDown back; both
	// count WebSocket framing, not TLS.
	BytesUp, BytesDown int64
	// CloseCode is the code of the first close frame that passed, 1005
	// (RFC 6455's "no status received") for one without a code, and 0
	// when the tunnel ended without any.
	CloseCode int
	ClosedBy  Initiator
	// Reason says why the proxy ended the tunnel when ClosedBy is
	// ClosedByProxy ("shutdown", "write_timeout", "ping_timeout",
	// "idle_timeout", "max_lifetime", "max_message_bytes", "closed"); ""
	// otherwise. Not a metric label.
	Reason string
}

// CloseCodeNone is TunnelEvent.CloseCode for a tunnel that ended without a
// close frame; its label value is "none".
const CloseCodeNone = 0

// RefusalReason says which limit refused a connection or upgrade, or why
// a TLS handshake failed. The set is fixed (label values stay bounded).
type RefusalReason string

// The refusal reasons of limits (the `reason` label of wsgate_limited_total).
const (
	// RefusedMaxConnections: limits.max_connections was reached (503).
	RefusedMaxConnections RefusalReason = "max_connections"
)

// The reasons of failed TLS handshakes (the `reason` label of
// wsgate_tls_handshake_errors_total).
const (
	// HandshakeTimeout: the handshake (with the accept layers before it,
	// such as reading a PROXY protocol header) did not finish within the
	// handshake timeout.
	HandshakeTimeout RefusalReason = "timeout"
	// HandshakeClosed: the client closed or reset the connection (during
	// the handshake or an accept layer before it).
	HandshakeClosed RefusalReason = "closed"
	// HandshakeNotTLS: the first bytes were not a TLS record (plain HTTP
	// on the TLS port, say).
	HandshakeNotTLS RefusalReason = "not_tls"
	// HandshakeClientAlert: the client ended the handshake with an alert
	// (it did not accept the certificate, say).
	HandshakeClientAlert RefusalReason = "client_alert"
	// HandshakeProtocol: anything else (no common version or cipher suite,
	// no certificate for the name asked for, a malformed ClientHello).
	HandshakeProtocol RefusalReason = "protocol"
)

// LimitReasons and HandshakeReasons are every refusal reason the proxy
// reports, for metrics that want their series from the start.
var (
	LimitReasons = []RefusalReason{
		RefusedMaxConnections, RefusedMaxConnectionsPerIP, RefusedHandshakeRate, RefusedMaxMessageBytes,
		RefusedProxyHeader, RefusedProxyUntrusted,
	}
	HandshakeReasons = []RefusalReason{
		HandshakeTimeout, HandshakeClosed, HandshakeNotTLS, HandshakeClientAlert, HandshakeProtocol,
	}
)

// RefusalEvent describes one refusal.
type RefusalEvent struct {
	Reason RefusalReason
	// TLS marks a failed TLS handshake (wsgate_tls_handshake_errors_total)
	// rather than a limit's refusal (wsgate_limited_total).
	TLS        bool
	RemoteAddr string
}

// nopObserver is the Observer of a Handler given none.
type nopObserver struct{}

func (nopObserver) UpgradeDone(*UpgradeEvent) {}
func (nopObserver) TunnelClosed(*TunnelEvent) {}
func (nopObserver) Refused(*RefusalEvent)     {}

var _ Observer = nopObserver{}
