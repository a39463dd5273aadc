package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 7.6.1) never forwarded.
// Connection and Upgrade are set again explicitly for the upgrade.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// isWebSocketUpgrade reports whether the request asks to upgrade to
// WebSocket. Whether it does so correctly is checked by validateUpgrade.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Upgrade", "websocket")
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// validateUpgrade checks a WebSocket opening handshake (RFC 6455 4.2.1) and
// returns the HTTP status and reason to reject it with, or 0.
func validateUpgrade(r *http.Request, rt *Route) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		return http.StatusBadRequest, "websocket upgrade must use GET"
	case !r.ProtoAtLeast(1, 1):
		return http.StatusBadRequest, "websocket upgrade needs HTTP/1.1"
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return http.StatusBadRequest, "websocket upgrade without Connection: upgrade"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return http.StatusBadRequest, "unsupported Sec-WebSocket-Version; want 13"
	case len(r.Header.Values("Sec-WebSocket-Version")) > 1:
		// RFC 6455 11.3.5: at most one in a request. Which one counts
		// would depend on who reads it.
		return http.StatusBadRequest, "more than one Sec-WebSocket-Version"
	case !validKey(r.Header.Get("Sec-WebSocket-Key")):
		return http.StatusBadRequest, "missing or malformed Sec-WebSocket-Key"
	case len(r.Header["Sec-Websocket-Key"]) > 1:
		return http.StatusBadRequest, "more than one Sec-WebSocket-Key"
	}
	if len(rt.AllowedOrigins) > 0 {
		if len(r.Header.Values("Origin")) > 1 {
			// RFC 6454 7.3: a browser sends one. Checking the first would
			// let a backend that reads another one see an origin no one
			// allowed.
			return http.StatusBadRequest, "more than one Origin"
		}
		origin := r.Header.Get("Origin")
		ok := false
		for _, o := range rt.AllowedOrigins {
			if strings.EqualFold(o, origin) {
				ok = true
				break
			}
		}
		if !ok {
			return http.StatusForbidden, "origin not allowed"
		}
	}
	return 0, ""
}

// validKey reports whether key is the base64 encoding of 16 bytes.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], []byte(key))
	return err == nil && n == 16
}

// errBackendUnavailable marks a 503 answer to the forwarded upgrade, which
// means "try another backend" (a websockets server that is closing says so).
var errBackendUnavailable = errors.New("proxy: backend answered 503")

// putReader returns br to its pool without the connection it read from.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

var (
	readerPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	requestPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 2048)) }}
)

// serveUpgrade proxies one WebSocket upgrade that arrived at start.
func (h *Handler) serveUpgrade(w http.ResponseWriter, r *http.Request, rt *Route, start time.Time) {
	ev := UpgradeEvent{Pool: rt.Pool, RemoteAddr: r.RemoteAddr}
	defer func() {
		ev.Duration = time.Since(start)
		h.obs.UpgradeDone(&ev)
	}()
	if status, reason := validateUpgrade(r, rt); status != 0 {
		ev.Status, ev.Result = status, UpgradeBadRequest
		if status == http.StatusForbidden {
			ev.Result = UpgradeForbiddenOrigin
		}
		h.reject(w, r, status, reason)
		return
	}

	// Counted from here, so that upgrades being set up count against the
	// limits too; the tunnel takes the counts over once it starts.
	lim := h.limits.Load()
	if n := h.inUse.Add(1); lim.MaxConnections > 0 && n > int64(lim.MaxConnections) {
		h.inUse.Add(-1)
		ev.Status, ev.Result = http.StatusServiceUnavailable, UpgradeLimited
		h.refuse(RefusedMaxConnections, r.RemoteAddr, slog.Int(keyMaxConnections, lim.MaxConnections))
		h.rejectQuietly(w, http.StatusServiceUnavailable, "connection limit reached")
		return
	}
	var ip *ipState
	if ipKey, ok := clientKey(r.RemoteAddr); ok {
		var (
			reason RefusalReason
			wait   time.Duration
		)
		if ip, reason, wait = h.perIP.admit(ipKey, lim, start); reason != "" {
			h.inUse.Add(-1)
			ev.Status, ev.Result = http.StatusTooManyRequests, UpgradeLimited
			h.refuse(reason, r.RemoteAddr)
			h.rejectRetry(w, http.StatusTooManyRequests, "too many connections from your address", wait)
			return
		}
	}
	started := false
	defer func() {
		if !started {
			h.inUse.Add(-1)
			h.perIP.release(ip, time.Now())
		}
	}()

	t := &tunnel{h: h, pool: rt.Pool, remoteAddr: r.RemoteAddr, host: r.Host, path: r.URL.Path, ip: ip}
	var (
		tried   []string
		lastErr error
	)
	for attempt := 0; attempt < h.maxAttempts; attempt++ {
		if err := h.bal.Acquire(rt.Pool, tried, &t.lease); err != nil {
			break
		}
		addr := t.lease.Address
		ev.Backend = addr
		backendConn, br, resp, err := h.forwardUpgrade(r.Context(), r, addr)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			started = h.completeUpgrade(w, r, t, backendConn, br, resp)
			ev.Status, ev.Result = http.StatusSwitchingProtocols, UpgradeOK
			if !started {
				ev.Status, ev.Result = 0, UpgradeClientGone
			}
			return
		}
		if err == nil {
			// A real answer other than 101 and 503: the client gets it.
			t.lease.Release()
			ev.Status, ev.Result = resp.StatusCode, UpgradeBackendRefused
			h.relayResponse(w, resp)
			putReader(br)
			_ = backendConn.Close()
			return
		}
		t.lease.Release()
		tried = append(tried, addr)
		lastErr = err
		if h.failures != nil && !errors.Is(err, errBackendUnavailable) {
			h.failures.ReportFailure(rt.Pool, addr, err)
		}
		h.log.Warn("backend attempt failed",
			slog.String(keyPool, rt.Pool),
			slog.String(keyBackend, addr),
			slog.String(keyRemoteAddr, r.RemoteAddr),
			slog.Any(keyErr, err))
		if r.Context().Err() != nil {
			ev.Result = UpgradeClientGone
			return // the client is gone
		}
	}
	reason := "no healthy backend"
	ev.Status, ev.Result = http.StatusServiceUnavailable, UpgradeNoBackend
	if lastErr != nil {
		reason = fmt.Sprintf("no healthy backend after %d attempts", len(tried))
		ev.Result = UpgradeBackendError
	}
	h.log.Warn("no backend for upgrade",
		slog.String(keyPool, rt.Pool),
		slog.Int(keyAttempts, len(tried)),
		slog.String(keyRemoteAddr, r.RemoteAddr))
	h.reject(w, r, http.StatusServiceUnavailable, reason)
}

// forwardUpgrade dials addr, writes the upgrade request and reads the
// response headers. On success the caller owns conn and br; a 503 answer
// is returned as errBackendUnavailable with everything closed.
func (h *Handler) forwardUpgrade(ctx context.Context, r *http.Request, addr string) (net.Conn, *bufio.Reader, *http.Response, error) {
	network, address := dialTarget(addr)
	conn, err := h.dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dial backend %s: %w", addr, err)
	}
	// One deadline for writing the request and reading the answer.
	_ = conn.SetDeadline(time.Now().Add(h.dialTimeout))

	// Raw system calls, as in the tunnel (see sysWrite): the write runs the
	// backend's receive path, long enough for sysmon to take the P. On
	// Linux the request goes out from inside the first read of the answer,
	// which then waits for it without a read that fails first.
	hs := sockio.HandshakeIO(conn)
	req := requestPool.Get().(*bytes.Buffer)
	req.Reset()
	writeUpgradeRequest(req, r)
	defer requestPool.Put(req) // Send's bytes stay in use until the first Read
	if err := hs.Send(req.Bytes()); err != nil {
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("write upgrade to %s: %w", addr, err)
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(hs)
	resp, err := http.ReadResponse(br, r)
	if err != nil {
		putReader(br)
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("upgrade request to %s: %w", addr, err)
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		_ = resp.Body.Close()
		putReader(br)
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("%w (%s)", errBackendUnavailable, addr)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, resp, nil
}

// dialTarget maps a backend address to a network and address for Dial.
func dialTarget(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", addr
}

// writeUpgradeRequest writes the client's upgrade request as the backend
// should see it: hop-by-hop headers removed, Connection and Upgrade set,
// X-Forwarded-* added.
func writeUpgradeRequest(w *bytes.Buffer, r *http.Request) {
	w.WriteString("GET ")
	w.WriteString(r.RequestURI)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(r.Host)
	w.WriteString("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n")

	// Headers named in Connection are hop-by-hop too.
	var connHop []string
	for _, v := range r.Header["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "upgrade") {
				connHop = append(connHop, http.CanonicalHeaderKey(t))
			}
		}
	}
	for k, vs := range r.Header {
		if isHop(k, connHop) {
			continue
		}
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
			continue
		}
		for _, v := range vs {
			writeHeader(w, k, v)
		}
	}
	clientIP := r.RemoteAddr
	if ip, _, err := net.SplitHostPort(clientIP); err == nil {
		clientIP = ip
	}
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		clientIP = strings.Join(prior, ", ") + ", " + clientIP
	}
	writeHeader(w, "X-Forwarded-For", clientIP)
	proto := "https"
	if r.TLS == nil {
		proto = "http"
	}
	writeHeader(w, "X-Forwarded-Proto", proto)
	writeHeader(w, "X-Forwarded-Host", r.Host)
	w.WriteString("\r\n")
}

func writeHeader(w io.StringWriter, k, v string) {
	// w is a bytes.Buffer, whose writes cannot fail, or a bufio.Writer,
	// whose error sticks until the Flush that is checked.
	_, _ = w.WriteString(k)
	_, _ = w.WriteString(": ")
	_, _ = w.WriteString(v)
	_, _ = w.WriteString("\r\n")
}

func isHop(k string, extra []string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	for _, h := range extra {
		if k == h {
			return true
		}
	}
	return false
}

// relayResponse sends a backend's non-101 answer to the client as it came.
func (h *Handler) relayResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if isHop(k, nil) {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// completeUpgrade hijacks the client connection, relays the backend's 101
// and starts the tunnel. It reports whether the tunnel started.
func (h *Handler) completeUpgrade(w http.ResponseWriter, r *http.Request, t *tunnel, backendConn net.Conn, br *bufio.Reader, resp *http.Response) bool {
	clientConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.lease.Release()
		putReader(br)
		_ = backendConn.Close()
		h.log.Error("hijack client connection", slog.Any(keyErr, err))
		http.Error(w, "cannot upgrade", http.StatusInternalServerError)
		return false
	}
	_ = clientConn.SetDeadline(time.Time{})
	t.attach(clientConn, backendConn)
	// Registered before the client sees the 101, so a shutdown that starts
	// from here on reaches this tunnel.
	h.conns.add(t)

	// The 101, then whatever the backend sent right after it.
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n")
	for k, vs := range resp.Header {
		if isHop(k, nil) {
			continue
		}
		for _, v := range vs {
			writeHeader(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	err = flushBuffered(bw, br, t.down)
	putReader(br)
	// Whatever the client sent after its request goes to the backend first.
	if err == nil {
		err = forwardBuffered(t.backend, brw.Reader, t.up)
	}
	if err != nil {
		t.close()
		t.lease.Release()
		h.conns.remove(t, t.up.n.Load(), t.down.n.Load())
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "tunnel setup", slog.Any(keyErr, err), slog.String(keyRemoteAddr, r.RemoteAddr))
		return false
	}
	t.start()
	return true
}

// flushBuffered writes bytes the backend sent after its 101 (read into br
// with the headers) to bw, and flushes.
func flushBuffered(bw *bufio.Writer, br *bufio.Reader, c *copier) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := bw.Write(b); err != nil {
			return err
		}
		c.relayed(b)
	}
	return bw.Flush()
}

// forwardBuffered writes bytes the client sent after its request (read
// into br with the headers) to dst.
// (What crypto/tls decrypted but net/http did not read is relayed by the
// copier's first Relay.)
func forwardBuffered(dst io.Writer, br *bufio.Reader, c *copier) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		c.relayed(b)
	}
	return nil
}
