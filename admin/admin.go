// Package admin serves wsgate's admin listener: /healthz for load
// balancers and supervisors in front of wsgate, the JSON API over the
// backend registry (/api/backends, drain and undrain), /metrics, a stream
// of snapshots for the dashboard (/api/events) and the dashboard page
// itself.
//
// It reads state from the registry and connection counts from the
// balancer; its only writes are an operator's drain and undrain.
//
// # Access token
//
// With a token set (Options.Token, SetToken), every request must carry
// the header "Authorization: Bearer TOKEN", and is answered 401 with
// "WWW-Authenticate: Bearer" otherwise — every endpoint, present and
// future, except two that stay public:
//
//   - GET /healthz, for load balancers and supervisors, which know no
//     token; it tells only whether wsgate is serving.
//   - GET / (that path exactly), the dashboard page: a static document
//     that carries no data, so that a browser can always load it.
//
// The dashboard page gets all its data from the token-guarded endpoints
// with fetch(), sending the Authorization header. When one answers 401,
// the page asks the user for the token, keeps it in sessionStorage (it
// goes when the tab closes and is sent to no other origin) and retries
// with it. The event stream is read with fetch() and the response body's
// reader, since EventSource cannot send headers. The token is never taken
// from a URL query (URLs end up in logs and browser history) nor from a
// cookie (which would make drain and undrain open to cross-site requests).
//
// Tokens are compared in constant time, through their SHA-256 digests so
// that not even their length leaks.
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/registry"
)

// Log attribute keys, as listed under "Every key" in the README.
const (
	keyPool       = "pool"
	keyBackend    = "backend"
	keyRemoteAddr = "remote_addr"
	keyMethod     = "method"
	keyPath       = "path"
	keyErr        = "err"
)

// Options configure a Server.
type Options struct {
	Store    *registry.Store
	Balancer *balancer.Balancer
	// Totals returns the upgrades since start by result ("ok",
	// "no_backend", ...) and the ended tunnels since start by close code
	// ("1000", "1001", "none", ...), both cumulative. The dashboard charts
	// their rates. It is called once a second per open dashboard, so it
	// must be cheap and safe for concurrent use, and the maps it returns
	// must not be written afterwards. Nil means the dashboard has no such
	// charts.
	Totals func() (upgrades map[string]int64, closes map[string]int64)
	// Token, when not empty, is the bearer token every request must carry
	// (Authorization: Bearer TOKEN), except GET /healthz and the dashboard
	// page GET /, which holds no data; others get 401. SetToken replaces
	// it.
	Token string
	// Metrics, if not nil, is served at GET /metrics.
	Metrics http.Handler
	// Pprof mounts net/http/pprof's handlers under /debug/pprof/.
	Pprof bool
	// Logger nil means slog.Default().
	Logger *slog.Logger
}

// Server is the admin http.Handler. It is safe for concurrent use.
type Server struct {
	store  *registry.Store
	bal    *balancer.Balancer
	totals func() (map[string]int64, map[string]int64)
	// token is the SHA-256 digest of the bearer token; nil for none.
	token atomic.Pointer[[sha256.Size]byte]
	log   *slog.Logger
	mux   *http.ServeMux

	shuttingDown atomic.Bool
	stopping     chan struct{} // closed by ShuttingDown
	stopOnce     sync.Once

	// Event streams (see events.go). Tests change the first two.
	maxStreams  int
	countsEvery time.Duration
	streams     atomic.Int64  // being served
	closed      chan struct{} // closed by Close: streams end
	closeOnce   sync.Once
}

// New returns an admin Server.
func New(opts Options) *Server {
	s := &Server{
		store:       opts.Store,
		bal:         opts.Balancer,
		totals:      opts.Totals,
		log:         opts.Logger,
		mux:         http.NewServeMux(),
		stopping:    make(chan struct{}),
		maxStreams:  maxStreams,
		countsEvery: countsEvery,
		closed:      make(chan struct{}),
	}
	s.SetToken(opts.Token)
	if s.log == nil {
		s.log = slog.Default()
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", opts.Metrics)
	}
	s.mux.HandleFunc("GET /api/backends", s.backends)
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("POST /api/backends/drain", func(w http.ResponseWriter, r *http.Request) { s.setDraining(w, r, true) })
	s.mux.HandleFunc("POST /api/backends/undrain", func(w http.ResponseWriter, r *http.Request) { s.setDraining(w, r, false) })
	s.mux.HandleFunc("GET /{$}", s.dashboard)
	if opts.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s
}

// ServeHTTP serves the admin API, to requests with the token when one is
// set.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !public(r) && !s.authorized(r) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "admin request refused: no valid bearer token",
			slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path), slog.String(keyRemoteAddr, r.RemoteAddr))
		w.Header().Set("WWW-Authenticate", `Bearer realm="wsgate admin"`)
		writeError(w, http.StatusUnauthorized, "this admin listener requires a token: Authorization: Bearer TOKEN")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// SetToken sets the bearer token requests need from now on; "" lets every
// request through. Requests already admitted (an event stream, say) are
// not affected.
func (s *Server) SetToken(token string) {
	if token == "" {
		s.token.Store(nil)
		return
	}
	sum := sha256.Sum256([]byte(token))
	s.token.Store(&sum)
}

// public reports whether r may be served without the token: the health
// check, and the dashboard page, which is static and asks for the token
// itself.
func public(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/healthz" || r.URL.Path == "/"
}

// authorized reports whether r carries the token, or none is needed. The
// scheme is case-insensitive (RFC 9110); the digests compared have the
// same length whatever the token sent.
func (s *Server) authorized(r *http.Request) bool {
	want := s.token.Load()
	if want == nil {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// ShuttingDown makes /healthz answer 503 from now on, and tells the
// dashboards watching.
func (s *Server) ShuttingDown() {
	s.shuttingDown.Store(true)
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Close ends the event streams being served and refuses new ones, so that
// http.Server.Shutdown, which waits for requests in flight, is not held up
// by a dashboard left open. The server from HTTPServer calls it on
// Shutdown; a caller that serves s on another server calls it before
// shutting that down. The other endpoints are served as before.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// HTTPServer returns an *http.Server for the admin handler with sane
// timeouts. Its Shutdown ends the event streams (see Close).
func (s *Server) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Long enough for a 30 s CPU profile. The event stream moves its
		// own write deadline along.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(s.Close)
	return srv
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.shuttingDown.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "shutting down\n")
		return
	}
	_, _ = io.WriteString(w, "OK\n")
}

// BackendStatus is one element of GET /api/backends.
type BackendStatus struct {
	Pool              string `json:"pool"`
	Address           string `json:"address"`
	State             string `json:"state"`
	Weight            int    `json:"weight"`
	HealthReason      string `json:"health_reason,omitempty"`
	ActiveConnections int64  `json:"active_connections"`
	TotalConnections  int64  `json:"total_connections"`
	// InheritedConnections are the connections older processes of a
	// binary upgrade still hold to the backend (least connections counts
	// them too); absent when none.
	InheritedConnections int64 `json:"inherited_connections,omitempty"`
	// ReportedConnections is the backend's own count of its connections,
	// from every proxy, as its last health check reported it
	// (X-Backend-Connections); absent while no report stands. The
	// balancer adds this process's opens and closes since to it.
	ReportedConnections *int64 `json:"reported_connections,omitempty"`
}

func (s *Server) backends(w http.ResponseWriter, _ *http.Request) {
	all, _ := s.store.Backends()
	out := make([]BackendStatus, 0, len(all))
	for _, b := range all {
		out = append(out, s.status(b))
	}
	writeJSON(w, http.StatusOK, out)
}

// status is b as the API shows it, with the balancer's counts.
func (s *Server) status(b registry.Backend) BackendStatus {
	active, total := s.bal.Counts(b.ID())
	st := BackendStatus{
		Pool:                 b.Pool,
		Address:              b.Address,
		State:                string(b.State()),
		Weight:               b.Weight,
		HealthReason:         b.HealthReason,
		ActiveConnections:    active,
		TotalConnections:     total,
		InheritedConnections: s.bal.Inherited(b.ID()),
	}
	if n, ok := s.bal.Reported(b.ID()); ok {
		st.ReportedConnections = &n
	}
	return st
}

type backendRef struct {
	Pool    string `json:"pool"`
	Address string `json:"address"`
}

func (s *Server) setDraining(w http.ResponseWriter, r *http.Request, draining bool) {
	var ref backendRef
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ref); err != nil || ref.Pool == "" || ref.Address == "" {
		writeError(w, http.StatusBadRequest, `body must be JSON {"pool": "...", "address": "..."}`)
		return
	}
	id := registry.ID{Pool: ref.Pool, Address: ref.Address}
	changed, err := s.store.SetDraining(id, draining)
	if errors.Is(err, registry.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no backend "+ref.Address+" in pool "+ref.Pool)
		return
	}
	if err != nil {
		s.log.Error("set draining", slog.String(keyPool, ref.Pool), slog.String(keyBackend, ref.Address), slog.Any(keyErr, err))
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if changed {
		attrs := []any{slog.String(keyPool, ref.Pool), slog.String(keyBackend, ref.Address), slog.String(keyRemoteAddr, r.RemoteAddr)}
		if draining {
			s.log.Info("backend draining", attrs...)
		} else {
			s.log.Info("backend undrained", attrs...)
		}
	}
	b, err := s.store.Backend(id)
	if err != nil {
		writeError(w, http.StatusNotFound, "no backend "+ref.Address+" in pool "+ref.Pool)
		return
	}
	writeJSON(w, http.StatusOK, s.status(b))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
