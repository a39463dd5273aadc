package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/registry"
)

func newAdmin(t *testing.T) (*Server, *httptest.Server, *balancer.Balancer) {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{
		{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 2},
	}}}); err != nil {
		t.Fatal(err)
	}
	bal := balancer.New(store, balancer.Options{})
	s := New(Options{Store: store, Balancer: bal, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts, bal
}

func getBackends(t *testing.T, url string) []BackendStatus {
	t.Helper()
	resp, err := http.Get(url + "/api/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []BackendStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackends(t *testing.T) {
	_, ts, bal := newAdmin(t)
	var l balancer.Lease
	if err := bal.Acquire("app", []string{"127.0.0.1:9002"}, &l); err != nil {
		t.Fatal(err)
	}
	got := getBackends(t, ts.URL)
	want := []BackendStatus{
		{Pool: "app", Address: "127.0.0.1:9001", State: "healthy", Weight: 1, ActiveConnections: 1, TotalConnections: 1},
		{Pool: "app", Address: "127.0.0.1:9002", State: "healthy", Weight: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("GET /api/backends = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("GET /api/backends [%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// reported_connections is the backend's own report, present only while one
// stands; active_connections stays this process's count.
func TestBackendsReportedConnections(t *testing.T) {
	_, ts, bal := newAdmin(t)
	var l balancer.Lease
	if err := bal.Acquire("app", []string{"127.0.0.1:9002"}, &l); err != nil {
		t.Fatal(err)
	}
	bal.ReportLoad(registry.ID{Pool: "app", Address: "127.0.0.1:9001"}, 12)
	resp, err := http.Get(ts.URL + "/api/backends")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `[{"pool":"app","address":"127.0.0.1:9001","state":"healthy","weight":1,"active_connections":1,"total_connections":1,"reported_connections":12},` +
		`{"pool":"app","address":"127.0.0.1:9002","state":"healthy","weight":2,"active_connections":0,"total_connections":0}]`
	var got bytes.Buffer
	if err := json.Compact(&got, body); err != nil {
		t.Fatalf("GET /api/backends: %v", err)
	}
	if got.String() != want {
		t.Errorf("GET /api/backends = %s\nwant %s", got.String(), want)
	}
}

func TestDrainUndrain(t *testing.T) {
	_, ts, _ := newAdmin(t)
	post := func(path, body string) (int, string) {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, path, body string
		wantStatus       int
		wantState        string // of 127.0.0.1:9001 afterwards
	}{
		{"drain", "/api/backends/drain", `{"pool":"app","address":"127.0.0.1:9001"}`, 200, "draining"},
		{"drain again", "/api/backends/drain", `{"pool":"app","address":"127.0.0.1:9001"}`, 200, "draining"},
		{"unknown backend", "/api/backends/drain", `{"pool":"app","address":"127.0.0.1:1"}`, 404, "draining"},
		{"unknown pool", "/api/backends/undrain", `{"pool":"x","address":"127.0.0.1:9001"}`, 404, "draining"},
		{"bad body", "/api/backends/undrain", `{"pool":`, 400, "draining"},
		{"undrain", "/api/backends/undrain", `{"pool":"app","address":"127.0.0.1:9001"}`, 200, "healthy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.path, tc.body)
			if status != tc.wantStatus {
				t.Errorf("POST %s = %d %s, want %d", tc.path, status, body, tc.wantStatus)
			}
			if status >= 400 && !strings.Contains(body, `"error"`) {
				t.Errorf("error body = %s, want a JSON error", body)
			}
			if got := getBackends(t, ts.URL)[0].State; got != tc.wantState {
				t.Errorf("state after %s = %s, want %s", tc.name, got, tc.wantState)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	s, ts, _ := newAdmin(t)
	for _, want := range []int{200, 503} {
		resp, err := http.Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /healthz = %d, want %d", resp.StatusCode, want)
		}
		s.ShuttingDown()
	}
}

func TestDashboard(t *testing.T) {
	_, ts, _ := newAdmin(t)
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "/api/events") {
		t.Errorf("GET / = %d, want the dashboard page", resp.StatusCode)
	}
	// Self-contained: it loads nothing (an air-gapped host has no CDN), and
	// its policy would not let it.
	for _, ref := range []string{`src=`, `href="http`, `@import`, `url(`} {
		if strings.Contains(string(body), ref) {
			t.Errorf("the dashboard page contains %q, want no external asset", ref)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "http") {
		t.Errorf("dashboard Content-Security-Policy = %q, want default-src 'none' and no other origin", csp)
	}
	resp, err = http.Get(ts.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nope = %d, want 404", resp.StatusCode)
	}
}

func TestPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		store, _ := registry.New()
		s := New(Options{Store: store, Balancer: balancer.New(store, balancer.Options{}), Pprof: on, Logger: slog.New(slog.DiscardHandler)})
		ts := httptest.NewServer(s)
		resp, err := http.Get(ts.URL + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ts.Close()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("pprof %v: GET /debug/pprof/heap = %d, want %d", on, resp.StatusCode, want)
		}
	}
}
