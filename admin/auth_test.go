package admin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/registry"
)

const token = "s3cr3t-T0ken_with.all~chars+/="

// newGuarded returns an admin server with a token, pprof and a /metrics
// handler.
func newGuarded(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}}}}); err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "wsgate_config_generation 1\n") })
	s := New(Options{
		Store: store, Balancer: balancer.New(store, balancer.Options{}), Metrics: metrics, Token: token, Pprof: true,
		Logger: slog.New(slog.DiscardHandler),
	})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// do sends a request with the Authorization header auth ("" for none).
func do(t *testing.T, method, url, auth, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestTokenEndpoints adds to TestToken: the public endpoints, the
// scheme's case, near misses, /metrics, pprof and paths that are not quite
// the page's.
func TestTokenEndpoints(t *testing.T) {
	_, ts := newGuarded(t)
	drain := `{"pool":"app","address":"127.0.0.1:9001"}`
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"healthz is public", "GET", "/healthz", "", 200},
		{"the dashboard page is public", "GET", "/", "", 200},
		{"HEAD of the page", "HEAD", "/", "", 200},
		{"backends with the token", "GET", "/api/backends", "Bearer " + token, 200},
		{"scheme in any case", "GET", "/api/backends", "bearer " + token, 200},
		{"token prefix", "GET", "/api/backends", "Bearer " + token[:5], 401},
		{"token and more", "GET", "/api/backends", "Bearer " + token + "x", 401},
		{"empty bearer", "GET", "/api/backends", "Bearer ", 401},
		{"basic auth", "GET", "/api/backends", "Basic " + token, 401},
		{"metrics without a token", "GET", "/metrics", "", 401},
		{"metrics with the token", "GET", "/metrics", "Bearer " + token, 200},
		{"drain with the token", "POST", "/api/backends/drain", "Bearer " + token, 200},
		{"pprof without a token", "GET", "/debug/pprof/", "", 401},
		{"pprof with the token", "GET", "/debug/pprof/", "Bearer " + token, 200},
		{"unknown path with the token", "GET", "/nope", "Bearer " + token, 404},
		{"a path that cleans to /", "GET", "/./", "", 401},
		{"POST to the page", "POST", "/", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, tc.method, ts.URL+tc.path, tc.auth, drain)
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s (Authorization %q) = %d, want %d", tc.method, tc.path, tc.auth, resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (tc.want == 401) != strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q with status %d", got, resp.StatusCode)
			}
		})
	}
}

func TestSetToken(t *testing.T) {
	s, ts := newGuarded(t)
	get := func(auth string) int { return do(t, "GET", ts.URL+"/api/backends", auth, "").StatusCode }
	s.SetToken("rotated")
	if got := get("Bearer " + token); got != 401 {
		t.Errorf("old token after SetToken = %d, want 401", got)
	}
	if got := get("Bearer rotated"); got != 200 {
		t.Errorf("new token after SetToken = %d, want 200", got)
	}
	s.SetToken("")
	if got := get(""); got != 200 {
		t.Errorf("no token after SetToken(\"\") = %d, want 200", got)
	}
}

func TestNoMetricsHandler(t *testing.T) {
	_, ts, _ := newAdmin(t)
	if got := do(t, "GET", ts.URL+"/metrics", "", "").StatusCode; got != 404 {
		t.Errorf("GET /metrics without Options.Metrics = %d, want 404", got)
	}
}
