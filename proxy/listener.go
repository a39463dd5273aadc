package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// The accept path.
//
// Every client connection goes through the same steps before net/http
// sees it, on a goroutine of its own: it is wrapped in a ClientConn (on
// Linux the record-aware conn that lets its tunnel wait without a buffer),
// the accept layers run in order (a PROXY protocol header is read here; a
// per-address limit refuses here), and then the TLS handshake, all within
// one handshake deadline. Only a connection that made it through is handed
// to the http.Server. Layers never unwrap or replace the connection, so
// none of them can turn the fast path off; the client address a layer
// establishes (SetRemoteAddr) is the one net/http reports as
// Request.RemoteAddr, and so the one X-Forwarded-For, logs and limits use.

// DefaultHandshakeTimeout bounds the accept layers and the TLS handshake
// of a connection when ListenerOptions.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// ClientConn is a client's connection before its TLS handshake, as accept
// layers see it: they may Peek at and Discard its first bytes and set the
// client's address.
type ClientConn = sockio.ClientConn

// AcceptLayer looks at a new connection before its TLS handshake, on the
// connection's own goroutine and within its handshake deadline. It may
// read the connection's first bytes (Peek, Discard), establish the client's
// address (SetRemoteAddr), or refuse the connection by returning an error:
// a *Refusal to count it under its reason; an error of reading the
// connection (the deadline passed, the client closed or reset it) to count
// it as a failed handshake (HandshakeTimeout or HandshakeClosed), as TLS
// would have; any other error to drop it as a broken connection. The
// connection is then closed.
type AcceptLayer func(c ClientConn) error

// Refusal is an AcceptLayer's refusal of a connection by a limit.
type Refusal struct {
	Reason RefusalReason
	Err    error // what happened, for the log; may be nil
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return "refused (" + string(r.Reason) + "): " + r.Err.Error()
	}
	return "refused (" + string(r.Reason) + ")"
}

func (r *Refusal) Unwrap() error { return r.Err }

// ListenerOptions configure a Listener.
type ListenerOptions struct {
	// TLS is the TLS configuration of the handshake. Nil serves the
	// connections without TLS (tests of plain WebSocket).
	TLS *tls.Config
	// HandshakeTimeout bounds the accept layers plus the TLS handshake.
	// Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Layers run in order on every connection before its handshake.
	// SetLayers replaces them.
	Layers []AcceptLayer
	// Observer is told of refusals and failed TLS handshakes. Nil means
	// nobody listens.
	Observer Observer
	// Logger nil means slog.Default().
	Logger *slog.Logger
}

// Listener is the proxy's accept path: a net.Listener for the Handler's
// http.Server whose Accept returns connections that have passed the
// accept layers and completed their TLS handshake. Run does the
// accepting; Close (which http.Server.Shutdown calls) stops it and closes
// the connections still on their way.
type Listener struct {
	ln      net.Listener
	tls     *tls.Config
	timeout atomic.Int64 // time.Duration; SetHandshakeTimeout's
	layers  atomic.Pointer[[]AcceptLayer]
	obs     Observer
	log     *slog.Logger

	ready     chan net.Conn
	done      chan struct{}
	accepting chan struct{} // closed when Run's accept loop has stopped
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	inFlight map[net.Conn]struct{} // guarded by mu; nil once closed
	wg       sync.WaitGroup        // the handshake goroutines

	failLog  rateLog     // failed handshakes, once a second
	refusals refusalLogs // layers' refusals, once a second per reason
}

// NewListener returns the accept path over ln. It starts no goroutine:
// call Run.
func NewListener(ln net.Listener, opts ListenerOptions) *Listener {
	l := &Listener{
		ln:        ln,
		tls:       opts.TLS,
		obs:       opts.Observer,
		log:       opts.Logger,
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		accepting: make(chan struct{}),
		inFlight:  make(map[net.Conn]struct{}),
	}
	l.SetHandshakeTimeout(opts.HandshakeTimeout)
	l.SetLayers(opts.Layers)
	if l.obs == nil {
		l.obs = nopObserver{}
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l
}

// SetHandshakeTimeout changes the handshake timeout for connections
// accepted from now on; zero means DefaultHandshakeTimeout.
func (l *Listener) SetHandshakeTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultHandshakeTimeout
	}
	l.timeout.Store(int64(d))
}

// Accept returns the next connection that completed its handshake.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// SetLayers replaces the accept layers for the connections accepted from
// now on; those already past their start keep the layers they started
// with. It may be called at any time, from any goroutine (on a
// configuration reload, say).
func (l *Listener) SetLayers(layers []AcceptLayer) {
	layers = slices.Clone(layers)
	l.layers.Store(&layers)
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Drain stops accepting, lets the connections in their handshake finish
// it and go to Accept, and returns once none is left or ctx is done (the
// handshake timeout bounds each). A binary upgrade drains the old process's
// listener this way, so that no connection it accepted is lost; Close
// afterwards. Established connections are not affected.
func (l *Listener) Drain(ctx context.Context) {
	_ = l.ln.Close()
	// A connection Accept returned before the close is tracked by Run's
	// loop, which has stopped once this is closed.
	select {
	case <-l.accepting:
	case <-ctx.Done():
		return
	}
	for {
		l.mu.Lock()
		n := len(l.inFlight)
		l.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Close stops accepting and closes the connections still in their
// handshake. Established connections are not affected.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.ln.Close()
		l.mu.Lock()
		for c := range l.inFlight {
			_ = c.Close()
		}
		l.inFlight = nil
		l.mu.Unlock()
	})
	return l.closeErr
}

// Run accepts connections until ctx is done or the Listener is closed,
// then waits for the handshakes in progress (which Close ends). It returns
// nil then, or the error that stopped accepting.
func (l *Listener) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	defer l.wg.Wait()
	defer close(l.accepting)
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil // Drain closed the socket; Close comes later
			}
			if !temporary(err) {
				_ = l.Close()
				return err
			}
			// Out of descriptors or the like: wait a little, as net/http
			// does, instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.failLog.log(l.log, slog.LevelError, "accept failed; retrying", slog.Any(keyErr, err), slog.Duration(keyRetryIn, backoff))
			select {
			case <-time.After(backoff):
			case <-l.done:
				return nil
			}
			continue
		}
		backoff = 0
		if !l.track(c) {
			_ = c.Close()
			return nil
		}
		l.wg.Go(func() { l.handshake(c) })
	}
}

// temporary reports whether an Accept error is worth retrying.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}

// track adds c to the connections in their handshake; false once closed.
func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight == nil {
		return false
	}
	l.inFlight[c] = struct{}{}
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inFlight, c)
}

// handshake takes a new connection through the accept layers and the TLS
// handshake, within the handshake deadline, and hands it to Accept.
func (l *Listener) handshake(raw net.Conn) {
	defer l.untrack(raw)
	cc := sockio.Accepted(raw)
	_ = cc.SetDeadline(time.Now().Add(time.Duration(l.timeout.Load())))
	for _, layer := range *l.layers.Load() {
		if err := layer(cc); err != nil {
			l.layerFailed(cc, err)
			_ = cc.Close()
			return
		}
	}
	var c net.Conn = cc
	if l.tls != nil {
		// The first flight goes out from inside the read that waits for
		// the client's answer: no read that fails first.
		sockio.ExpectHandshake(cc)
		tc := tls.Server(cc, l.tls)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			reason := handshakeReason(err)
			answerPlainHTTP(err)
			l.obs.Refused(&RefusalEvent{Reason: reason, TLS: true, RemoteAddr: cc.RemoteAddr().String()})
			// Scanners make these all day: counted in the metrics, logged
			// at debug (as NGINX logs them at info, below its default).
			l.failLog.log(l.log, slog.LevelDebug, "tls handshake failed",
				slog.String(keyRemoteAddr, cc.RemoteAddr().String()),
				slog.String(keyReason, string(reason)),
				slog.Any(keyErr, err))
			_ = tc.Close()
			return
		}
		c = tc
	}
	// Clear the handshake deadline; net/http sets its own.
	_ = c.SetDeadline(time.Time{})
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// layerFailed counts and logs a connection that an accept layer ended
// with err (see AcceptLayer).
func (l *Listener) layerFailed(cc ClientConn, err error) {
	remote := cc.RemoteAddr().String()
	var r *Refusal
	if errors.As(err, &r) {
		l.obs.Refused(&RefusalEvent{Reason: r.Reason, RemoteAddr: remote})
		l.refusals.log(l.log, r.Reason, slog.String(keyRemoteAddr, remote), slog.Any(keyErr, err))
		return
	}
	if reason := handshakeReason(err); reason == HandshakeTimeout || reason == HandshakeClosed {
		l.obs.Refused(&RefusalEvent{Reason: reason, TLS: true, RemoteAddr: remote})
		l.failLog.log(l.log, slog.LevelDebug, "tls handshake failed",
			slog.String(keyRemoteAddr, remote), slog.String(keyReason, string(reason)), slog.Any(keyErr, err))
		return
	}
	l.log.LogAttrs(context.Background(), slog.LevelDebug, "connection dropped before tls",
		slog.String(keyRemoteAddr, remote), slog.Any(keyErr, err))
}

// rateLog writes a log line at most once a second, with the number of
// events since the last line.
type rateLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int
}

func (r *rateLog) log(l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		r.missed++
		r.mu.Unlock()
		return
	}
	missed := r.missed
	r.last, r.missed = now, 0
	r.mu.Unlock()
	if missed > 0 {
		attrs = append(attrs, slog.Int(keySuppressed, missed))
	}
	l.LogAttrs(context.Background(), level, msg, attrs...) //nolint:sloglint // msg is a constant at every call of rateLog.log
}

// answerPlainHTTP tells a client that sent plain HTTP to the TLS port
// what it did wrong, as net/http's TLS server does, instead of closing
// without a word. The write is bounded by the handshake deadline, which
// is still set.
func answerPlainHTTP(err error) {
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) || rh.Conn == nil || !looksLikeHTTP(rh.RecordHeader) {
		return
	}
	_, _ = io.WriteString(rh.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
}

// looksLikeHTTP reports whether the five bytes crypto/tls took for a
// record header are the start of an HTTP/1 request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "CONNE", "PATCH", "TRACE":
		return true
	}
	return false
}

// handshakeReason classifies a failed TLS handshake for
// wsgate_tls_handshake_errors_total; the set is fixed.
func handshakeReason(err error) RefusalReason {
	var (
		rh tls.RecordHeaderError
		oe *net.OpError
	)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return HandshakeTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return HandshakeClosed
	case errors.As(err, &rh):
		return HandshakeNotTLS
	case errors.As(err, &oe) && oe.Op == "remote error":
		// crypto/tls reports an alert the client sent this way.
		return HandshakeClientAlert
	}
	return HandshakeProtocol
}
