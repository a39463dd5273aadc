package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

// Plain HTTP requests on a route go through an httputil.ReverseProxy whose
// transport picks the backend: balancing and the retry of refused
// connections happen per round trip, exactly as for upgrades.

type routeKey struct{}

// Log keys of a plain request's record.
const (
	keyMethod  = "method"
	keyAborted = "aborted"
)

// servePlain proxies an ordinary HTTP request to rt's pool, and writes its
// access record: one per request, at info, when it ends (also when the
// response is cut short).
func (h *Handler) servePlain(w http.ResponseWriter, r *http.Request, rt *Route) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		attrs := [...]slog.Attr{
			slog.String(keyMethod, r.Method),
			slog.String(keyHost, r.Host),
			slog.String(keyPath, r.URL.Path),
			slog.Int(keyStatus, cmp.Or(sw.status, http.StatusOK)), // net/http sends 200 for an empty handler
			slog.Duration(keyDuration, time.Since(start)),
			slog.String(keyPool, rt.Pool),
			slog.String(keyRemoteAddr, r.RemoteAddr),
			slog.Bool(keyAborted, true),
		}
		// The reverse proxy aborts a response it cannot finish (the backend
		// cut its body short) with a panic, which net/http turns into a
		// closed connection; the record says so, and the panic goes on.
		if v := recover(); v != nil {
			defer panic(v)
			h.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs[:]...)
			return
		}
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs[:len(attrs)-1]...)
	}()
	ctx := context.WithValue(r.Context(), routeKey{}, rt)
	h.plain.ServeHTTP(sw, r.WithContext(ctx))
}

// statusWriter notes the status of the response written through it. It
// unwraps, so http.ResponseController (flushes, the hijack of a protocol
// switch) reaches the connection's own writer.
type statusWriter struct {
	http.ResponseWriter
	status int // the final status, 0 until written
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *Handler) newPlainProxy() *httputil.ReverseProxy {
	bt := &balancingTransport{h: h}
	bt.base = &http.Transport{
		DialContext:           bt.dial,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // a backend may stream; the client bounds it
		ForceAttemptHTTP2:     false,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.Host = pr.In.Host // backends see the client's Host
			pr.SetXForwarded()
		},
		Transport: bt,
		ErrorLog:  slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, balancer.ErrNoBackend) {
				status = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", retryAfter)
			}
			h.log.Warn("plain request failed",
				slog.Int(keyStatus, status),
				slog.String(keyRemoteAddr, r.RemoteAddr),
				slog.String(keyPath, r.URL.Path),
				slog.Any(keyErr, err))
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, http.StatusText(status)+"\n")
		},
	}
}

// balancingTransport picks a backend for each round trip, retries requests
// whose connection was refused on another backend, and releases the lease
// when the response body is closed.
type balancingTransport struct {
	h    *Handler
	base *http.Transport

	// unix backends are dialled through synthetic host names, so that the
	// base transport pools their connections per socket.
	unixHosts sync.Map // host → socket path
}

func (bt *balancingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, _ := req.Context().Value(routeKey{}).(*Route)
	if rt == nil {
		return nil, errors.New("proxy: request without route")
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	var tried []string
	var lastErr error
	for attempt := 0; attempt < bt.h.maxAttempts; attempt++ {
		l := new(balancer.Lease)
		if err := bt.h.bal.Acquire(rt.Pool, tried, l); err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, err
		}
		out := req
		if attempt > 0 {
			out = req.Clone(req.Context())
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					l.Release()
					return nil, err
				}
				out.Body = body
			}
		}
		out.URL.Host = bt.hostFor(l.Address)
		resp, err := bt.base.RoundTrip(out)
		if err == nil {
			resp.Body = &releasingBody{ReadCloser: resp.Body, lease: l}
			return resp, nil
		}
		l.Release()
		lastErr = fmt.Errorf("backend %s: %w", l.Address, err)
		if !isDialError(err) || !replayable {
			return nil, lastErr
		}
		tried = append(tried, l.Address)
		if bt.h.failures != nil {
			bt.h.failures.ReportFailure(rt.Pool, l.Address, err)
		}
	}
	return nil, lastErr
}

// hostFor returns the URL host under which the base transport reaches addr.
func (bt *balancingTransport) hostFor(addr string) string {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return addr
	}
	sum := sha256.Sum256([]byte(path))
	host := "unix-" + hex.EncodeToString(sum[:8]) + ".invalid"
	bt.unixHosts.LoadOrStore(host, path)
	return host
}

func (bt *balancingTransport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err == nil {
		if path, ok := bt.unixHosts.Load(host); ok {
			return bt.h.dialer.DialContext(ctx, "unix", path.(string))
		}
	}
	return bt.h.dialer.DialContext(ctx, network, addr)
}

// isDialError reports whether err happened before anything was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

type releasingBody struct {
	io.ReadCloser
	lease *balancer.Lease
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.lease.Release()
	return err
}
