package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventStream is an open GET /api/events.
type eventStream struct {
	t    *testing.T
	resp *http.Response
	rd   *bufio.Reader
}

// openEvents opens the event stream of the admin server at url; it is
// closed when the test ends.
func openEvents(t *testing.T, url string, header http.Header) *eventStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		resp.Body.Close()
		cancel()
	})
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /api/events = %d %s, want 200", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("GET /api/events Content-Type = %q, want text/event-stream", ct)
	}
	return &eventStream{t: t, resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next event's name and data, or the read error.
func (es *eventStream) next() (name string, data []byte, err error) {
	for {
		line, err := es.rd.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != nil:
			return name, data, nil
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: ")...)
		}
	}
}

// snapshot returns the next snapshot event.
func (es *eventStream) snapshot() Snapshot {
	es.t.Helper()
	name, data, err := es.next()
	if err != nil {
		es.t.Fatalf("reading the event stream: %v", err)
	}
	if name != "snapshot" {
		es.t.Fatalf("event %q, want snapshot", name)
	}
	var snap Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		es.t.Fatalf("snapshot %s: %v", data, err)
	}
	return snap
}

// until reads snapshots until cond holds for one, and returns it.
func (es *eventStream) until(what string, cond func(Snapshot) bool) Snapshot {
	es.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if snap := es.snapshot(); cond(snap) {
			return snap
		}
	}
	es.t.Fatalf("no snapshot with %s within 10s", what)
	return Snapshot{}
}

func backendIn(snap Snapshot, pool, addr string) (BackendStatus, bool) {
	for _, p := range snap.Pools {
		for _, b := range p.Backends {
			if p.Name == pool && b.Address == addr {
				return b, true
			}
		}
	}
	return BackendStatus{}, false
}

func TestEventsSnapshot(t *testing.T) {
	s, ts, bal := newAdmin(t)
	var ups, closes sync.Map // written by the test, read by Totals
	s.totals = func() (map[string]int64, map[string]int64) {
		read := func(m *sync.Map) map[string]int64 {
			out := map[string]int64{}
			m.Range(func(k, v any) bool { out[k.(string)] = v.(int64); return true })
			return out
		}
		return read(&ups), read(&closes)
	}
	s.countsEvery = 50 * time.Millisecond
	es := openEvents(t, ts.URL, nil)

	snap := es.snapshot()
	if time.Since(time.UnixMilli(snap.Time)).Abs() > 5*time.Second {
		t.Errorf("snapshot time = %v, want about now", time.UnixMilli(snap.Time))
	}
	if snap.Generation != 1 || snap.ShuttingDown || len(snap.Pools) != 1 || snap.Pools[0].Name != "app" {
		t.Fatalf("first snapshot = %+v, want generation 1 with pool app", snap)
	}
	want := []BackendStatus{
		{Pool: "app", Address: "127.0.0.1:9001", State: "healthy", Weight: 1},
		{Pool: "app", Address: "127.0.0.1:9002", State: "healthy", Weight: 2},
	}
	if got := snap.Pools[0].Backends; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("first snapshot backends = %+v, want %+v", got, want)
	}
	if snap.Totals == nil || len(snap.Totals.Upgrades) != 0 || len(snap.Totals.Closes) != 0 {
		t.Errorf("first snapshot totals = %+v, want empty maps", snap.Totals)
	}

	// Counts and totals change outside the registry: the next tick brings
	// them.
	var l balancer.Lease
	if err := bal.Acquire("app", []string{"127.0.0.1:9001"}, &l); err != nil {
		t.Fatal(err)
	}
	ups.Store("ok", int64(1))
	ups.Store("no_backend", int64(2))
	closes.Store("1000", int64(1))
	es.until("the lease and totals", func(snap Snapshot) bool {
		b, _ := backendIn(snap, "app", "127.0.0.1:9002")
		return b.ActiveConnections == 1 && b.TotalConnections == 1 &&
			snap.Totals.Upgrades["ok"] == 1 && snap.Totals.Upgrades["no_backend"] == 2 && snap.Totals.Closes["1000"] == 1
	})
	l.Release()
	es.until("the lease released", func(snap Snapshot) bool {
		b, _ := backendIn(snap, "app", "127.0.0.1:9002")
		return b.ActiveConnections == 0 && b.TotalConnections == 1
	})

	// A reload that adds a pool shows it, with its backends.
	if _, err := s.store.Apply([]registry.PoolSpec{
		{Name: "app", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 2}}},
		{Name: "chat", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9003", Weight: 1}}},
		{Name: "empty"},
	}); err != nil {
		t.Fatal(err)
	}
	snap = es.until("the new pools", func(snap Snapshot) bool { return len(snap.Pools) == 3 })
	if snap.Generation != 2 || snap.Pools[1].Name != "chat" || len(snap.Pools[1].Backends) != 1 ||
		snap.Pools[2].Name != "empty" || snap.Pools[2].Backends == nil {
		t.Errorf("snapshot after reload = %+v, want generation 2, pools app, chat (1 backend), empty (none)", snap)
	}

	s.ShuttingDown()
	es.until("shutting_down", func(snap Snapshot) bool { return snap.ShuttingDown })
}

func TestEventsWithoutTotals(t *testing.T) {
	_, ts, _ := newAdmin(t)
	_, data, err := openEvents(t, ts.URL, nil).next()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"pools"`) || strings.Contains(string(data), `"totals"`) {
		t.Errorf("snapshot without Options.Totals = %s, want pools and no totals", data)
	}
}

// TestEventsOnRegistryChange: a change in the registry is pushed at once,
// not at the next tick.
func TestEventsOnRegistryChange(t *testing.T) {
	s, ts, _ := newAdmin(t)
	s.countsEvery = time.Hour
	es := openEvents(t, ts.URL, nil)
	es.snapshot()
	if _, err := s.store.SetDraining(registry.ID{Pool: "app", Address: "127.0.0.1:9001"}, true); err != nil {
		t.Fatal(err)
	}
	snap := es.snapshot()
	if b, _ := backendIn(snap, "app", "127.0.0.1:9001"); b.State != "draining" {
		t.Errorf("snapshot after drain: %+v, want 127.0.0.1:9001 draining", snap)
	}
	if _, err := s.store.SetHealth(registry.ID{Pool: "app", Address: "127.0.0.1:9002"}, registry.HealthDown, "status 503"); err != nil {
		t.Fatal(err)
	}
	snap = es.snapshot()
	if b, _ := backendIn(snap, "app", "127.0.0.1:9002"); b.State != "unhealthy" || b.HealthReason != "status 503" {
		t.Errorf("snapshot after a failed health check: %+v, want 127.0.0.1:9002 unhealthy (status 503)", snap)
	}
}

// serveAdmin serves s on a real listener through HTTPServer, as wsgate
// does, and returns its URL and server.
func serveAdmin(t *testing.T, s *Server) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v, want ErrServerClosed", err)
		}
	})
	return "http://" + ln.Addr().String(), srv
}

// TestEventsEndAtShutdown: an open dashboard does not hold up the admin
// server's Shutdown, and the stream ends cleanly for the client.
func TestEventsEndAtShutdown(t *testing.T) {
	s, _, _ := newAdmin(t)
	url, srv := serveAdmin(t, s)
	es := openEvents(t, url, nil)
	es.snapshot()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v after %v, want nil (the stream should end)", err, time.Since(start))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown() took %v with a dashboard open, want well under 2s", d)
	}
	for {
		_, _, err := es.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream after Shutdown: %v, want EOF", err)
		}
	}

	// Closed: a new stream is refused.
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/api/events", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /api/events after Close = %d, want 503", rec.Code)
	}
}

// TestEventsOutliveServerTimeouts: the admin server's read and write
// timeouts are for requests; a stream runs past them.
func TestEventsOutliveServerTimeouts(t *testing.T) {
	s, _, _ := newAdmin(t)
	s.countsEvery = 50 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	srv.ReadTimeout, srv.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v, want http.ErrServerClosed", err)
		}
	}()
	es := openEvents(t, "http://"+ln.Addr().String(), nil)
	start := time.Now()
	for time.Since(start) < time.Second {
		es.snapshot()
	}
}

// TestEventsClientGone: a client that goes ends its stream on the server.
func TestEventsClientGone(t *testing.T) {
	s, ts, _ := newAdmin(t)
	s.countsEvery = time.Hour
	es := openEvents(t, ts.URL, nil)
	es.snapshot()
	if n := s.streams.Load(); n != 1 {
		t.Errorf("streams = %d with one client, want 1", n)
	}
	es.resp.Body.Close()
	proctest.WaitFor(t, "the stream to end", func() bool { return s.streams.Load() == 0 })
}

func TestEventsLimit(t *testing.T) {
	s, ts, _ := newAdmin(t)
	s.maxStreams = 2
	for range 2 {
		openEvents(t, ts.URL, nil).snapshot()
	}
	resp, err := http.Get(ts.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET /api/events beyond the limit = %d (Retry-After %q), want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestToken(t *testing.T) {
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001"}}}}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: store, Balancer: balancer.New(store, balancer.Options{}), Token: "s3cret",
		Logger: slog.New(slog.DiscardHandler)})
	s.countsEvery = time.Hour
	drain := `{"pool":"app","address":"127.0.0.1:9001"}`
	for _, tc := range []struct {
		name, method, path, body, auth string
		want                           int
	}{
		{"healthz is public", "GET", "/healthz", "", "", 200},
		{"the page is public", "GET", "/", "", "", 200},
		{"HEAD of the page", "HEAD", "/", "", "", 200},
		{"backends without token", "GET", "/api/backends", "", "", 401},
		{"backends with a wrong token", "GET", "/api/backends", "", "Bearer nope", 401},
		{"backends with the token but not as bearer", "GET", "/api/backends", "", "s3cret", 401},
		{"backends with the token", "GET", "/api/backends", "", "Bearer s3cret", 200},
		{"events without token", "GET", "/api/events", "", "", 401},
		{"drain without token", "POST", "/api/backends/drain", drain, "", 401},
		{"drain with the token", "POST", "/api/backends/drain", drain, "Bearer s3cret", 200},
		{"undrain without token", "POST", "/api/backends/undrain", drain, "Bearer s3cre", 401},
		{"not found still needs the token", "GET", "/nope", "", "", 401},
		{"a POST to the page path", "POST", "/", "", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("%s %s (Authorization %q) = %d %s, want %d", tc.method, tc.path, tc.auth, rec.Code, rec.Body, tc.want)
			}
			if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 WWW-Authenticate = %q, want Bearer", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}

	// The stream with the token.
	ts := httptest.NewServer(s)
	defer ts.Close()
	es := openEvents(t, ts.URL, http.Header{"Authorization": {"Bearer s3cret"}})
	if b, _ := backendIn(es.snapshot(), "app", "127.0.0.1:9001"); b.State != "draining" {
		t.Errorf("snapshot with the token: 127.0.0.1:9001 %+v, want draining", b)
	}
	es.resp.Body.Close()
}
