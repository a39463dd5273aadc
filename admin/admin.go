// Package admin serves wsgate's admin listener: /healthz for load
// balancers and supervisors in front of wsgate, the JSON API over the
// backend registry (/api/backends, drain and undrain), and the dashboard.
//
// It reads state from the registry and connection counts from the
// balancer; its only writes are an operator's drain and undrain.
package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/registry"
)

// Options configure a Server.
type Options struct {
	Store    *registry.Store
	Balancer *balancer.Balancer
	// Pprof mounts net/http/pprof's handlers under /debug/pprof/.
	Pprof bool
	// Logger nil means slog.Default().
	Logger *slog.Logger
}

// Server is the admin http.Handler. It is safe for concurrent use.
type Server struct {
	store *registry.Store
	bal   *balancer.Balancer
	log   *slog.Logger
	mux   *http.ServeMux

	shuttingDown atomic.Bool
}

// New returns an admin Server.
func New(opts Options) *Server {
	s := &Server{store: opts.Store, bal: opts.Balancer, log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /api/backends", s.backends)
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

// ServeHTTP serves the admin API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// ShuttingDown makes /healthz answer 503 from now on.
func (s *Server) ShuttingDown() { s.shuttingDown.Store(true) }

// HTTPServer returns an *http.Server for the admin handler with sane
// timeouts.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Long enough for a 30 s CPU profile.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
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
}

func (s *Server) backends(w http.ResponseWriter, _ *http.Request) {
	all, _ := s.store.Backends()
	out := make([]BackendStatus, 0, len(all))
	for _, b := range all {
		active, total := s.bal.Counts(b.ID())
		out = append(out, BackendStatus{
			Pool:              b.Pool,
			Address:           b.Address,
			State:             string(b.State()),
			Weight:            b.Weight,
			HealthReason:      b.HealthReason,
			ActiveConnections: active,
			TotalConnections:  total,
		})
	}
	writeJSON(w, http.StatusOK, out)
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
		s.log.Error("set draining", slog.String("pool", ref.Pool), slog.String("backend", ref.Address), slog.Any("err", err))
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if changed {
		msg := "backend undrained"
		if draining {
			msg = "backend draining"
		}
		s.log.Info(msg, slog.String("pool", ref.Pool), slog.String("backend", ref.Address), slog.String("remote_addr", r.RemoteAddr))
	}
	b, err := s.store.Backend(id)
	if err != nil {
		writeError(w, http.StatusNotFound, "no backend "+ref.Address+" in pool "+ref.Pool)
		return
	}
	active, total := s.bal.Counts(id)
	writeJSON(w, http.StatusOK, BackendStatus{
		Pool: b.Pool, Address: b.Address, State: string(b.State()), Weight: b.Weight,
		HealthReason: b.HealthReason, ActiveConnections: active, TotalConnections: total,
	})
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
