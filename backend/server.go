package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults for the zero values of [Options].
const (
	DefaultMaxMessage   = 1 << 20 // 1 MiB
	DefaultDrainTimeout = 10 * time.Second
)

// ConnectionsHeader is the /healthz answer's header that reports how many
// WebSocket connections the server holds.
const ConnectionsHeader = "X-Backend-Connections"

// HTTP server limits. They guard the plain HTTP part of every connection
// (the upgrade request and /healthz). ReadTimeout and WriteTimeout are left
// unset on purpose: they would set deadlines on connections that are later
// hijacked for WebSocket, where the pumps manage deadlines per message.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
)

// Log attribute keys. The package imports nothing else of wsgate's, so it
// keeps its own, spelled as under "Every key" in the README.
const (
	keyBackendID    = "backend_id"
	keyListenAddr   = "listen_addr"
	keyRemoteAddr   = "remote_addr"
	keyPath         = "path"
	keyRoom         = "room"
	keyCloseCode    = "close_code"
	keyDuration     = "duration"
	keyDrainTimeout = "drain_timeout"
	keyConns        = "connections"
	keyErr          = "err"
)

// Options configures a [Server]. The zero value is usable.
type Options struct {
	// ID is sent as the X-Backend-Id header on every 101 response (and on
	// every other response too). Empty means the header is not sent.
	ID string

	// MaxMessage is the largest message, in bytes, a peer may send. A bigger
	// one is answered with close code 1009 (message too big). Zero means
	// DefaultMaxMessage; negative values are not allowed and make New panic.
	MaxMessage int64

	// DrainTimeout bounds how long Serve waits, once its context is
	// cancelled, for peers to answer the 1001 close frame before it closes
	// their connections. Zero means DefaultDrainTimeout; negative values are
	// not allowed and make New panic.
	DrainTimeout time.Duration

	// AllowedOrigins lists the origins ("https://app.example.com") whose
	// browser pages may open WebSockets here, compared case-insensitively.
	// Requests without an Origin header (non-browser clients) are always
	// allowed.
	//
	// Empty allows every origin. That is acceptable for this reference
	// backend because it holds no cookies, sessions or credentials, so a
	// cross-site page gains nothing by connecting (cross-site WebSocket
	// hijacking needs ambient authority to abuse), and because it is meant to
	// listen on loopback or a private network behind wsgate. A backend that
	// authenticates with cookies must list its origins here.
	AllowedOrigins []string

	// NoLoadReport leaves the X-Backend-Connections header out of /healthz
	// answers. By default every answer carries it: the number of WebSocket
	// connections the server holds (upgrades in flight included), from
	// every proxy, which wsgate balances on.
	NoLoadReport bool

	// Logger receives lifecycle events at Info and one line per WebSocket
	// session at Debug. Nil means slog.Default().
	Logger *slog.Logger
}

// Server is the reference WebSocket backend. Create it with [New]; it serves
// HTTP through [Server.ServeHTTP] and runs a listener with [Server.Serve].
// A Server must not be copied after first use.
type Server struct {
	id           string
	maxMessage   int64
	drainTimeout time.Duration
	origins      []string
	reportLoad   bool
	log          *slog.Logger

	mux       *http.ServeMux
	upgrader  websocket.Upgrader
	writeBufs sync.Pool // gorilla write buffers, borrowed per message

	// drain is closed when Serve's context ends. Every writePump watches it
	// and sends its peer a 1001 close frame; ServeHTTP answers 503 from then on.
	drain   chan struct{}
	started atomic.Bool // Serve has been called

	conns connSet
	hub   hub
}

// New returns a Server configured by opts. It starts no goroutines.
func New(opts Options) *Server {
	if opts.MaxMessage < 0 {
		panic(fmt.Sprintf("backend: negative MaxMessage %d", opts.MaxMessage))
	}
	if opts.DrainTimeout < 0 {
		panic(fmt.Sprintf("backend: negative DrainTimeout %s", opts.DrainTimeout))
	}
	s := &Server{
		id:           opts.ID,
		maxMessage:   opts.MaxMessage,
		drainTimeout: opts.DrainTimeout,
		origins:      append([]string(nil), opts.AllowedOrigins...),
		reportLoad:   !opts.NoLoadReport,
		log:          opts.Logger,
		drain:        make(chan struct{}),
	}
	if s.maxMessage == 0 {
		s.maxMessage = DefaultMaxMessage
	}
	if s.drainTimeout == 0 {
		s.drainTimeout = DefaultDrainTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.id != "" {
		s.log = s.log.With(slog.String(keyBackendID, s.id))
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: writeWait,
		CheckOrigin:      s.checkOrigin,
		// Messages up to 32 KiB go out as one frame (gorilla frames by its
		// write buffer, 4 KiB by default). The buffer comes from a pool
		// while a message is written, so an idle connection holds none.
		WriteBufferSize: 32 << 10,
		WriteBufferPool: &s.writeBufs,
		// No Subprotocols: the echo and chat protocols need none, and a
		// server must not claim one it does not speak.
	}
	s.conns.init()
	s.hub.init()

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /healthz", s.serveHealth)
	s.mux.HandleFunc("GET /ws", s.serveEcho)
	s.mux.HandleFunc("GET /ws/chat", s.serveChat)
	return s
}

// ServeHTTP routes /ws (echo), /ws/chat?room=R (chat) and /healthz; any
// other path gets 404. It may be mounted on any HTTP/1.1 server, but only
// connections it upgrades while [Server.Serve] runs are drained by Serve.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.id != "" {
		w.Header().Set("X-Backend-Id", s.id)
	}
	s.mux.ServeHTTP(w, r)
}

// Serve serves on ln until ctx is cancelled, then drains: /healthz turns 503,
// new upgrades get 503, every open WebSocket is sent a close frame with code
// 1001 (going away), it waits for the peers' close frames up to DrainTimeout,
// closes what remains, and returns nil. Serve returns only after all its
// goroutines ended. ln may be a TCP or a unix socket listener; Serve closes
// it. Serve may be called only once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("backend: Serve called more than once")
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", slog.String(keyListenAddr, ln.Addr().String()))

	select {
	case <-ctx.Done():
	case err := <-errc:
		// The listener failed on its own: close everything without a drain.
		close(s.drain)
		srv.Close()
		s.conns.closeAll()
		s.conns.wait(nil)
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}

	start := time.Now()
	deadline := time.NewTimer(s.drainTimeout)
	defer deadline.Stop()
	srv.SetKeepAlivesEnabled(false)
	close(s.drain)
	s.log.Info("draining", slog.Int(keyConns, s.conns.count()), slog.Duration(keyDrainTimeout, s.drainTimeout))

	drained := s.conns.wait(deadline.C)

	// The listener stayed open so far so that health checks and late
	// upgrades got their 503. Shut it down with whatever is left of the drain
	// time (a fresh context: ctx is already cancelled), then force it.
	sctx, cancel := context.WithDeadline(context.Background(), start.Add(s.drainTimeout))
	err := srv.Shutdown(sctx)
	cancel()
	if err != nil {
		srv.Close()
	}
	<-errc //nolint:errcheck // Serve has returned, with http.ErrServerClosed

	left := s.conns.closeAll()
	s.conns.wait(nil)
	if drained {
		s.log.Info("drained", slog.Duration(keyDuration, time.Since(start)))
	} else {
		s.log.Warn("drain timeout, closed remaining connections", slog.Int(keyConns, left), slog.Duration(keyDuration, time.Since(start)))
	}
	return nil
}

func (s *Server) draining() bool {
	select {
	case <-s.drain:
		return true
	default:
		return false
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.reportLoad {
		w.Header().Set(ConnectionsHeader, strconv.Itoa(s.conns.count()))
	}
	if s.draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "draining")
		return
	}
	fmt.Fprint(w, "OK")
}

func (s *Server) serveEcho(w http.ResponseWriter, r *http.Request) {
	s.serveWebSocket(w, r, nil)
}

// serveChat joins the room named by the room query parameter. A missing
// parameter is the room with the empty name, a room like any other.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request) {
	room := r.URL.Query().Get("room")
	s.serveWebSocket(w, r, &room)
}

// serveWebSocket upgrades the request and starts the connection's pumps.
// room is nil for echo.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, room *string) {
	if s.draining() || !s.conns.reserve() {
		unavailable(w)
		return
	}
	c := newClient(s, r, room)
	// Join before the 101 goes out, so a client that has seen its 101 is
	// sure to receive every message broadcast after that.
	if room != nil {
		s.hub.join(c)
	}
	var h http.Header
	if s.id != "" {
		h = http.Header{"X-Backend-Id": {s.id}}
	}
	conn, err := s.upgrader.Upgrade(w, r, h)
	if err != nil {
		// Upgrade has already answered with an HTTP error.
		s.hub.leave(c)
		s.conns.release(nil)
		s.log.Debug("upgrade rejected", slog.String(keyRemoteAddr, r.RemoteAddr), slog.String(keyPath, r.URL.Path), slog.Any(keyErr, err))
		return
	}
	c.conn = conn
	if !s.conns.add(c) {
		// Serve gave up on draining while this upgrade was in flight.
		conn.Close()
		s.hub.leave(c)
		s.conns.release(nil)
		return
	}
	go c.writePump()
	go c.readPump()
}

// unavailable answers an upgrade refused while draining. The 503 (not 404 or
// 421) tells wsgate, and standard WebSocket clients, to try again elsewhere.
func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "draining", http.StatusServiceUnavailable)
}

func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.origins) == 0 {
		return true
	}
	origin = strings.TrimSuffix(origin, "/")
	for _, o := range s.origins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}
