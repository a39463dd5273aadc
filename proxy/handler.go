package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// Defaults for zero Options fields.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultMaxAttempts    = 3
	DefaultMaxHeaderBytes = 16 << 10
	DefaultHeaderTimeout  = 10 * time.Second
	// DefaultDrainTimeout bounds Shutdown when its context has no deadline.
	DefaultDrainTimeout = 10 * time.Second
	// DefaultWriteTimeout: see Limits.WriteTimeout.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultPathPrefix is the PathPrefix of a Route that has none.
	DefaultPathPrefix = "/"
	// retryAfter is the Retry-After value sent with 503 when nothing says
	// better, in seconds.
	retryAfter = "1"
	// backendKeepAlive is the silence before the first TCP keep-alive
	// probe on a backend connection.
	backendKeepAlive = 30 * time.Second
)

// Log attribute keys.
const (
	keyPool       = "pool"
	keyBackend    = "backend"
	keyRemoteAddr = "remote_addr"
	keyErr        = "err"
	keyStatus     = "status"
	keyHost       = "host"
	keyPath       = "path"
	keyReason     = "reason"
	keyDuration   = "duration"
	keyBytesUp    = "bytes_up"
	keyBytesDown  = "bytes_down"
	keyAttempts   = "attempts"
	keyCloseCode  = "close_code"
	keyClosedBy   = "closed_by"
	// Debug and refusal details.
	keyGoingAway       = "going_away"
	keyUpErr           = "up_err"
	keyDownErr         = "down_err"
	keyPeer            = "peer"
	keyWriteTimeout    = "write_timeout"
	keyMaxMessageBytes = "max_message_bytes"
	keyMaxConnections  = "max_connections"
	keyRetryIn         = "retry_in"
	keySuppressed      = "suppressed"
)

// Route sends requests whose host and path match to a pool.
type Route struct {
	// Host matches the request's Host without any :port, case-insensitively.
	// Empty matches any host.
	Host string
	// PathPrefix matches the start of the request path. Empty means
	// DefaultPathPrefix.
	PathPrefix string
	// Pool is the balancer pool connections go to.
	Pool string
	// AllowedOrigins, when not empty, lists the Origin values accepted on
	// WebSocket upgrades; others get 403. Empty means Origin is not checked
	// here (the backend may check it).
	AllowedOrigins []string
}

// Picker chooses the backend of a pool each new connection goes to.
// *balancer.Balancer is the one wsgate uses. Implementations must be safe
// for concurrent use and fast: Acquire runs for every upgrade and request.
type Picker interface {
	// Acquire fills in l with a backend of pool whose address is not in
	// tried, counted until l.Release, or returns balancer.ErrNoBackend.
	Acquire(pool string, tried []string, l *balancer.Lease) error
}

// FailureReporter learns of backends that failed a connection attempt
// (refused, timed out, reset), so that passive failures can mark them down
// at once. Implementations must be safe for concurrent use and fast.
type FailureReporter interface {
	ReportFailure(pool, address string, err error)
}

// Options configure a Handler. Zero values are usable except Balancer.
type Options struct {
	// Routes are matched by host (exact hosts first, then the any-host
	// routes) and then by the longest path prefix.
	Routes []Route
	// Balancer picks backends. Required.
	Balancer Picker
	// Failures, if not nil, is told of every failed attempt to reach a
	// backend.
	Failures FailureReporter
	// DialTimeout bounds connecting to a backend and reading its answer to
	// the forwarded upgrade. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxAttempts is how many backends an upgrade is tried on before the
	// client gets 503. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// MaxHeaderBytes bounds a request's line and headers; more gets 431.
	// Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// HeaderTimeout bounds reading a request's headers (see Server); the
	// TLS handshake before them is the Listener's (HandshakeTimeout). Zero
	// means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// Limits bound what clients and tunnels may do; see SetLimits.
	Limits Limits
	// Observer learns of upgrades, tunnel ends and refusals, for metrics.
	// Nil means nobody listens.
	Observer Observer
	// Logger receives error and access events. Nil means slog.Default().
	Logger *slog.Logger
}

// Handler is the proxy's http.Handler. It is safe for concurrent use.
type Handler struct {
	bal            Picker
	failures       FailureReporter
	dialTimeout    time.Duration
	maxAttempts    int
	maxHeaderBytes int
	headerTimeout  time.Duration
	limits         atomic.Pointer[Limits] // SetLimits'; never nil
	perIP          perIP
	refusals       refusalLogs
	log            *slog.Logger
	obs            Observer
	// halfCloseLinger: see defaultHalfCloseLinger; tests shorten it.
	halfCloseLinger time.Duration
	// parkAfter, sweepEvery: see defaultParkAfter; tests shorten them.
	parkAfter  time.Duration
	sweepEvery time.Duration
	epoch      atomic.Int64                  // incremented by each sweep
	start      time.Time                     // New's time, with its monotonic reading (see since)
	parker     atomic.Pointer[sockio.Parker] // set while Run runs

	routes atomic.Pointer[[]Route] // sorted by match priority
	inUse  atomic.Int64            // WebSocket connections held or being set up

	dialer net.Dialer
	plain  *httputil.ReverseProxy
	conns  conns
}

// New returns a Handler. It starts no goroutine.
func New(opts Options) *Handler {
	h := &Handler{
		bal:            opts.Balancer,
		failures:       opts.Failures,
		dialTimeout:    cmp.Or(opts.DialTimeout, DefaultDialTimeout),
		maxAttempts:    cmp.Or(opts.MaxAttempts, DefaultMaxAttempts),
		maxHeaderBytes: cmp.Or(opts.MaxHeaderBytes, DefaultMaxHeaderBytes),
		headerTimeout:  cmp.Or(opts.HeaderTimeout, DefaultHeaderTimeout),
		log:            opts.Logger,
		obs:            opts.Observer,

		start:           time.Now(),
		halfCloseLinger: defaultHalfCloseLinger,
		parkAfter:       defaultParkAfter,
		sweepEvery:      parkSweep,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.obs == nil {
		h.obs = nopObserver{}
	}
	h.dialer = sockio.Dialer(h.dialTimeout, backendKeepAlive)
	h.plain = h.newPlainProxy()
	h.SetLimits(opts.Limits)
	h.SetRoutes(opts.Routes)
	return h
}

// since is the monotonic time since New, in nanoseconds: a tunnel keeps
// its start as this (8 bytes) rather than as a time.Time (24).
func (h *Handler) since() int64 { return int64(time.Since(h.start)) }

// SetRoutes replaces the routing table for new requests; established
// connections are not affected.
func (h *Handler) SetRoutes(routes []Route) {
	rs := make([]Route, len(routes))
	for i, r := range routes {
		r.Host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
		r.PathPrefix = cmp.Or(r.PathPrefix, DefaultPathPrefix)
		rs[i] = r
	}
	// Exact hosts before any-host; within each, the longest prefix first.
	// Stable, so equal routes keep their configured order.
	slices.SortStableFunc(rs, func(a, b Route) int {
		if (a.Host == "") != (b.Host == "") {
			if a.Host == "" {
				return 1
			}
			return -1
		}
		return len(b.PathPrefix) - len(a.PathPrefix)
	})
	h.routes.Store(&rs)
}

// match returns the route for host (without port, lower case) and path.
func (h *Handler) match(host, path string) (*Route, bool) {
	rs := *h.routes.Load()
	for i := range rs {
		r := &rs[i]
		if (r.Host == "" || r.Host == host) && strings.HasPrefix(path, r.PathPrefix) {
			return r, true
		}
	}
	return nil, false
}

// ServeHTTP routes the request and proxies it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, routed := h.match(requestHost(r), r.URL.Path)
	upgrade := isWebSocketUpgrade(r)
	if n := headerSize(r); n > h.maxHeaderBytes {
		if routed && upgrade {
			h.obs.UpgradeDone(&UpgradeEvent{Pool: rt.Pool, Result: UpgradeBadRequest,
				Status: http.StatusRequestHeaderFieldsTooLarge, Duration: time.Since(start), RemoteAddr: r.RemoteAddr})
		}
		h.reject(w, r, http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		return
	}
	if !routed {
		h.reject(w, r, http.StatusNotFound, "no route")
		return
	}
	if upgrade {
		h.serveUpgrade(w, r, rt, start)
		return
	}
	h.servePlain(w, r, rt)
}

// reject answers with status and a short text body, and logs why.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.log.Info("request rejected",
		slog.Int(keyStatus, status),
		slog.String(keyReason, reason),
		slog.String(keyRemoteAddr, r.RemoteAddr),
		slog.String(keyHost, r.Host),
		slog.String(keyPath, r.URL.Path))
	if status == http.StatusBadRequest && r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
	}
	h.rejectQuietly(w, status, reason)
}

// rejectQuietly answers like reject without a log line of its own.
func (h *Handler) rejectQuietly(w http.ResponseWriter, status int, reason string) {
	h.rejectRetry(w, status, reason, 0)
}

// rejectRetry answers with status and a short text body; 503 and 429 say
// when to retry: after wait rounded up to whole seconds, at least one.
func (h *Handler) rejectRetry(w http.ResponseWriter, status int, reason string, wait time.Duration) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		secs := max(1, int64(math.Ceil(wait.Seconds())))
		hdr.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(http.StatusText(status) + ": " + reason + "\n"))
}

// requestHost returns the request's Host without port, in lower case.
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// headerSize approximates the bytes of the request line and headers as
// sent.
func headerSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// Shutdown ends every established tunnel gracefully: at the next frame
// boundary in each direction it sends a close frame with code 1001 (going
// away) to the client and to the backend, then waits for both close
// frames in answer. With Limits.CloseSpread the tunnels start this at
// moments spread evenly over that window instead of all at once. Tunnels
// established during the shutdown get the same at once. When ctx is done
// first (its deadline is the drain deadline), the tunnels
// left are closed at once. Shutdown returns when every tunnel has ended;
// the error is ctx's if it had to close any.
//
// Shutdown does not stop new upgrades from arriving: close the listener
// first (http.Server.Shutdown).
func (h *Handler) Shutdown(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultDrainTimeout)
	}
	h.conns.goAway(deadline, h.limits.Load().CloseSpread)
	err := h.conns.wait(ctx)
	h.conns.stopSpread()
	if err != nil {
		h.conns.closeAll()
	}
	return err
}

// Close ends every established tunnel at once, without close frames, and
// waits for them.
func (h *Handler) Close() {
	h.conns.closeAll()
}

// RelayedBytes returns the bytes relayed so far through each pool's
// tunnels, open and ended: a figure that only grows, read at the moment of
// the call (the data path counts with one atomic add per write and keeps
// no other tally).
func (h *Handler) RelayedBytes() []PoolBytes {
	return h.conns.relayed()
}

// logTunnel writes a tunnel's access record: one per tunnel, at info,
// when it has ended.
func (h *Handler) logTunnel(ev *TunnelEvent, t *tunnel) {
	code := "none"
	if ev.CloseCode != CloseCodeNone {
		code = strconv.Itoa(ev.CloseCode)
	}
	// LogAttrs checks the level before anything is boxed.
	h.log.LogAttrs(context.Background(), slog.LevelInfo, "tunnel closed",
		slog.String(keyRemoteAddr, ev.RemoteAddr),
		slog.String(keyHost, ev.Host),
		slog.String(keyPath, ev.Path),
		slog.String(keyPool, ev.Pool),
		slog.String(keyBackend, ev.Backend),
		slog.Duration(keyDuration, ev.Duration),
		slog.Int64(keyBytesUp, ev.BytesUp),
		slog.Int64(keyBytesDown, ev.BytesDown),
		slog.String(keyCloseCode, code),
		slog.String(keyClosedBy, string(ev.ClosedBy)),
		reasonAttr(ev.Reason))
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.LogAttrs(context.Background(), slog.LevelDebug, "tunnel errors",
			slog.String(keyRemoteAddr, ev.RemoteAddr),
			slog.Bool(keyGoingAway, t.stopping.Load()),
			slog.Any(keyUpErr, quiet(t.up.err)),
			slog.Any(keyDownErr, quiet(t.down.err)))
	}
}

// reasonAttr is the reason key of a tunnel the proxy ended, and an empty
// attribute (which handlers leave out) otherwise.
func reasonAttr(r string) slog.Attr {
	if r == "" {
		return slog.Attr{}
	}
	return slog.String(keyReason, r)
}

// Idle returns a channel that is closed once no tunnel is open (at once
// when none is); a tunnel that opens afterwards does not reopen it.
func (h *Handler) Idle() <-chan struct{} { return h.conns.emptied() }

// ActiveTunnels returns the number of established WebSocket tunnels.
func (h *Handler) ActiveTunnels() int {
	return h.conns.len()
}

// Server returns an *http.Server for h with the proxy's header limits and
// timeouts. Serve it on a Listener (the accept path, which terminates TLS):
// ALPN there must offer only http/1.1, because WebSocket upgrades need
// HTTP/1.1 and hijacking.
func (h *Handler) Server() *http.Server {
	return &http.Server{
		Handler: h,
		// The TLS handshake is done (and bounded) by the Listener before
		// net/http sees the connection.
		ReadHeaderTimeout: h.headerTimeout,
		IdleTimeout:       2 * time.Minute,
		// net/http itself rejects with 431 past this plus 4 KiB of slack;
		// ServeHTTP enforces the exact limit (and logs it).
		MaxHeaderBytes: h.maxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		// No HTTP/2: upgrades need HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}
