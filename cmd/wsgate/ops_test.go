package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wsgate/wsgate/admin"
)

// adminGet GETs path from the admin listener, with the bearer token unless
// it is "", and returns the status and body.
func adminGet(t *testing.T, adminURL, path, token string) (int, []byte) {
	t.Helper()
	return adminDo(t, http.MethodGet, adminURL+path, token, "")
}

// adminDo sends a request with body to url, with the bearer token unless
// it is "", and returns the status and body of the answer.
func adminDo(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, answer
}

// apiBackends is GET /api/backends with the token.
func apiBackends(t *testing.T, adminURL, token string) []backendStatus {
	t.Helper()
	status, body := adminGet(t, adminURL, "/api/backends", token)
	var out []backendStatus
	if err := json.Unmarshal(body, &out); status != http.StatusOK || err != nil {
		t.Fatalf("GET /api/backends = %d %s (%v)", status, body, err)
	}
	return out
}

// scrape is GET /metrics with the token, parsed.
func scrape(t *testing.T, adminURL, token string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := adminGet(t, adminURL, "/metrics", token)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET /metrics: not the Prometheus text format: %v", err)
	}
	return mfs
}

// values returns the series of a metric family keyed by the values of the
// given labels joined with ","; a histogram's value is its sample count.
func values(mfs map[string]*dto.MetricFamily, name string, labels ...string) map[string]float64 {
	out := make(map[string]float64)
	mf := mfs[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var key []string
		for _, l := range labels {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == l {
					key = append(key, lp.GetValue())
				}
			}
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v = m.GetUntyped().GetValue()
		}
		out[strings.Join(key, ",")] = v
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// writeToken writes a token file and returns its path.
func writeToken(t *testing.T, dir, token string) string {
	t.Helper()
	path := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialErr is gate.dial for goroutines other than the test's: it returns
// the error instead of failing the test.
func (g *gate) dialErr(path string) (*websocket.Conn, error) {
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: g.roots, ServerName: "localhost"},
		HandshakeTimeout: 5 * time.Second,
	}
	c, _, err := d.Dial("wss://"+g.proxyAddr+path, nil)
	return c, err
}

// closeNormally sends a close frame with code 1000 and waits for the
// answer, so that the tunnel has ended once it returns.
func closeNormally(c *websocket.Conn) error {
	defer c.Close()
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				return nil
			}
			return err
		}
	}
}

// TestMetricsAgreeWithAPI checks, on a real wsgate with real backends and
// clients, that the gauges and counters of /metrics that mirror state are
// those of /api/backends at every step while tunnels open and close, and
// stay consistent with it while connections churn.
func TestMetricsAgreeWithAPI(t *testing.T) {
	const token = "metrics-test-token"
	_, one := startBackend(t, "one")
	_, two := startBackend(t, "two")
	g := startGateWith(t, gateConfig{
		backends:  []string{one, two},
		health:    fastHealth,
		adminKeys: "  token_file: " + writeToken(t, t.TempDir(), token) + "\n",
	})
	waitFor(t, "first health verdicts", func() bool {
		for _, b := range apiBackends(t, g.adminURL, token) {
			if b.HealthReason == "" {
				return false
			}
		}
		return true
	})

	// agree compares one scrape with the /api/backends read just before;
	// want, if not nil, gives each backend's expected active count.
	agree := func(step string, want map[string]int64) {
		t.Helper()
		api := apiBackends(t, g.adminURL, token)
		mfs := scrape(t, g.adminURL, token)
		active := values(mfs, "wsgate_backend_active_connections", "pool", "backend")
		total := values(mfs, "wsgate_backend_connections_total", "pool", "backend")
		healthy := values(mfs, "wsgate_backend_healthy", "pool", "backend")
		draining := values(mfs, "wsgate_backend_draining", "pool", "backend")
		for _, m := range []map[string]float64{active, total, healthy, draining} {
			if len(m) != len(api) {
				t.Errorf("%s: metric series %v, want one per backend of %+v", step, m, api)
			}
		}
		for _, b := range api {
			k := b.Pool + "," + b.Address
			if active[k] != float64(b.ActiveConnections) || total[k] != float64(b.TotalConnections) {
				t.Errorf("%s: %s active %v total %v in /metrics, %d and %d in /api/backends", step, k, active[k], total[k], b.ActiveConnections, b.TotalConnections)
			}
			if w, ok := want[b.Address]; ok && b.ActiveConnections != w {
				t.Errorf("%s: %s has %d active, want %d", step, k, b.ActiveConnections, w)
			}
			// The API folds health and draining into one state, where
			// draining wins: a drained backend's health is not shown.
			var wantHealthy, wantDraining float64
			switch b.State {
			case "healthy":
				wantHealthy = 1
			case "draining":
				wantHealthy, wantDraining = healthy[k], 1
			}
			if healthy[k] != wantHealthy || draining[k] != wantDraining {
				t.Errorf("%s: %s healthy %v draining %v in /metrics, state %s in /api/backends", step, k, healthy[k], draining[k], b.State)
			}
		}
	}

	agree("before any connection", map[string]int64{one: 0, two: 0})

	byID := map[string][]*websocket.Conn{}
	for range 6 {
		c, id := g.dial(t, "/ws")
		echo(t, c, "hello")
		byID[id] = append(byID[id], c)
	}
	agree("6 open", map[string]int64{one: 3, two: 3})

	for _, c := range byID["one"][:2] {
		if err := closeNormally(c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the closed tunnels to be released", func() bool { return backendActive(t, g, token, one) == 1 })
	agree("2 closed", map[string]int64{one: 1, two: 3})

	status, _ := adminDo(t, http.MethodPost, g.adminURL+"/api/backends/drain", token, fmt.Sprintf(`{"pool":"app","address":%q}`, two))
	if status != http.StatusOK {
		t.Fatalf("drain = %d", status)
	}
	var more []*websocket.Conn
	for range 2 {
		c, id := g.dial(t, "/ws")
		if id != "one" {
			t.Errorf("connection while two drains went to %s", id)
		}
		more = append(more, c)
	}
	agree("two drained, 2 more", map[string]int64{one: 3, two: 3})

	// Churn: connections open and close while /metrics is read. Between
	// an /api/backends read before a scrape and one after it, each
	// backend's total can only have grown: the scrape's value lies between.
	var wg sync.WaitGroup
	churnErr := make(chan error, 1)
	stop := make(chan struct{})
	const churned = 20
	wg.Go(func() {
		for range churned {
			c, err := g.dialErr("/ws")
			if err == nil {
				err = closeNormally(c)
			}
			if err != nil {
				select {
				case churnErr <- err:
				default:
				}
				return
			}
		}
		close(stop)
	})
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		before := apiBackends(t, g.adminURL, token)
		total := values(scrape(t, g.adminURL, token), "wsgate_backend_connections_total", "pool", "backend")
		after := apiBackends(t, g.adminURL, token)
		for i, b := range before {
			if k := b.Pool + "," + b.Address; total[k] < float64(b.TotalConnections) || total[k] > float64(after[i].TotalConnections) {
				t.Errorf("during churn: %s total %v in /metrics, outside [%d, %d] of /api/backends", k, total[k], b.TotalConnections, after[i].TotalConnections)
			}
		}
	}
	wg.Wait()
	select {
	case err := <-churnErr:
		t.Fatalf("churn: %v", err)
	default:
	}

	for _, c := range append(append(more, byID["one"][2:]...), byID["two"]...) {
		if err := closeNormally(c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every tunnel to be released", func() bool {
		return backendActive(t, g, token, one)+backendActive(t, g, token, two) == 0
	})
	agree("all closed", map[string]int64{one: 0, two: 0})

	// The event counters saw every one of the 28 tunnels.
	const tunnels = 6 + 2 + churned
	mfs := scrape(t, g.adminURL, token)
	if got := values(mfs, "wsgate_upgrades_total", "pool", "result")["app,ok"]; got != tunnels {
		t.Errorf("wsgate_upgrades_total{result=ok} = %v, want %d", got, tunnels)
	}
	// Each client closed with 1000. (Who is recorded as the initiator
	// depends on the proxy noting a close frame after relaying it, which
	// lets the backend's immediate answer be noted first now and then.)
	closes := values(mfs, "wsgate_closes_total", "pool", "initiator", "code")
	if closes["app,client,1000"]+closes["app,backend,1000"] != tunnels || sum(closes) != tunnels {
		t.Errorf("wsgate_closes_total = %v, want all %d with code 1000", closes, tunnels)
	}
	if got := values(mfs, "wsgate_connection_duration_seconds", "pool")["app"]; got != tunnels {
		t.Errorf("wsgate_connection_duration_seconds count = %v, want %d", got, tunnels)
	}
	if got := values(mfs, "wsgate_upgrade_duration_seconds", "pool")["app"]; got != tunnels {
		t.Errorf("wsgate_upgrade_duration_seconds count = %v, want %d", got, tunnels)
	}
	relayed := values(mfs, "wsgate_relayed_bytes_total", "pool", "direction")
	// 6 echoed 5-byte messages each way, plus the close frames.
	if relayed["app,client_to_backend"] < 6*(5+6) || relayed["app,backend_to_client"] < 6*(5+2) {
		t.Errorf("wsgate_relayed_bytes_total = %v, want at least the echoed messages", relayed)
	}
	checks := values(mfs, "wsgate_health_checks_total", "pool", "backend", "result")
	if checks["app,"+one+",pass"] < 1 || checks["app,"+two+",pass"] < 1 {
		t.Errorf("wsgate_health_checks_total = %v, want passes for both backends", checks)
	}
	for _, name := range []string{
		"wsgate_limited_total", "wsgate_config_reloads_total",
		"wsgate_config_generation", "go_goroutines", "process_resident_memory_bytes",
	} {
		if mfs[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if got := values(mfs, "wsgate_config_generation")[""]; got != 1 {
		t.Errorf("wsgate_config_generation = %v, want 1", got)
	}
	// The dashboard's totals are the same counters.
	snap := firstSnapshot(t, g.adminURL, token)
	if snap.Totals == nil || snap.Totals.Upgrades["ok"] != tunnels || snap.Totals.Closes["1000"] != tunnels {
		t.Errorf("/api/events totals = %+v, want %d upgrades ok and %d closes 1000", snap.Totals, tunnels, tunnels)
	}
	if got := values(mfs, "wsgate_tls_handshake_errors_total", "reason"); len(got) == 0 || sum(got) != 0 {
		t.Errorf("wsgate_tls_handshake_errors_total = %v, want every reason at 0", got)
	}

	// Plain HTTP on the TLS port: a failed handshake, counted by reason.
	conn, err := net.Dial("tcp", g.proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, conn) // until wsgate closes it, having counted it
	tlsErrors := values(scrape(t, g.adminURL, token), "wsgate_tls_handshake_errors_total", "reason")
	if tlsErrors["not_tls"] != 1 || sum(tlsErrors) != 1 {
		t.Errorf("wsgate_tls_handshake_errors_total after plain HTTP on the TLS port = %v, want not_tls 1", tlsErrors)
	}
}

// firstSnapshot reads the first snapshot of /api/events.
func firstSnapshot(t *testing.T, adminURL, token string) admin.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var snap admin.Snapshot
			if err := json.Unmarshal([]byte(data), &snap); err != nil {
				t.Fatalf("/api/events: %v", err)
			}
			return snap
		}
	}
	t.Fatalf("/api/events sent no snapshot: %v", sc.Err())
	return admin.Snapshot{}
}

func backendActive(t *testing.T, g *gate, token, addr string) int64 {
	t.Helper()
	for _, b := range apiBackends(t, g.adminURL, token) {
		if b.Address == addr {
			return b.ActiveConnections
		}
	}
	t.Fatalf("backend %s not in /api/backends", addr)
	return 0
}

// TestJSONLogs runs wsgate with -log-format json over a file that says
// text (the flag wins), sends real traffic, and reads every line it logs.
func TestJSONLogs(t *testing.T) {
	_, addr := startBackend(t, "one")
	g := startGateWith(t, gateConfig{backends: []string{addr}, extra: "log:\n  format: text\n", args: []string{"-log-format", "json"}})

	c, _ := g.dial(t, "/ws/chat?room=r&token=secret")
	echo(t, c, "hello")
	if err := closeNormally(c); err != nil {
		t.Fatal(err)
	}
	c, _ = g.dial(t, "/ws")
	echo(t, c, "bye")
	c.NetConn().Close() // no close frame
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}}}
	resp, err := client.Get("https://" + g.proxyAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "two tunnel records", func() bool { return strings.Count(g.Stderr.String(), `"msg":"tunnel closed"`) == 2 })
	g.Signal(syscall.SIGTERM)
	if code := g.Exit(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}

	var tunnels, plain []map[string]any
	msgs := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(g.Stderr.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON (%v): %s", err, sc.Text())
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("log line without %s: %s", k, sc.Text())
			}
		}
		msg, _ := rec["msg"].(string)
		msgs[msg] = true
		switch msg {
		case "tunnel closed":
			tunnels = append(tunnels, rec)
		case "http request":
			plain = append(plain, rec)
		}
	}
	for _, m := range []string{"config loaded", "shutting down", "stopped"} {
		if !msgs[m] {
			t.Errorf("no %q record", m)
		}
	}
	if len(tunnels) != 2 {
		t.Fatalf("%d tunnel records, want 2", len(tunnels))
	}
	for i, want := range []struct {
		path, code string
		bytesUp    float64 // at least
	}{
		{"/ws/chat", "1000", 5 + 6 + 2 + 6},
		{"/ws", "none", 3 + 6},
	} {
		rec := tunnels[i]
		for _, k := range []string{"remote_addr", "host", "path", "pool", "backend", "duration", "bytes_up", "bytes_down", "close_code", "closed_by"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("tunnel record %d has no %s: %v", i, k, rec)
			}
		}
		// The client ended both tunnels; the proxy notes an end after
		// passing it on, so the backend's immediate answer is sometimes
		// noted first (see TestMetricsAgreeWithAPI).
		if rec["level"] != "INFO" || rec["path"] != want.path || rec["pool"] != "app" || rec["backend"] != addr ||
			rec["close_code"] != want.code || (rec["closed_by"] != "client" && rec["closed_by"] != "backend") || rec["host"] != g.proxyAddr {
			t.Errorf("tunnel record %d = %v; want path %s, pool app, backend %s, close_code %s, closed_by client, host %s",
				i, rec, want.path, addr, want.code, g.proxyAddr)
		}
		if ra, _ := rec["remote_addr"].(string); !strings.HasPrefix(ra, "127.0.0.1:") {
			t.Errorf("tunnel record %d remote_addr = %v", i, rec["remote_addr"])
		}
		if d, _ := rec["duration"].(float64); d <= 0 || time.Duration(d) > time.Minute {
			t.Errorf("tunnel record %d duration = %v ns", i, rec["duration"])
		}
		up, _ := rec["bytes_up"].(float64)
		down, _ := rec["bytes_down"].(float64)
		if up < want.bytesUp || down < 5 {
			t.Errorf("tunnel record %d bytes_up %v, bytes_down %v; want at least %v and the echo", i, up, down, want.bytesUp)
		}
	}
	if len(plain) != 1 || plain[0]["path"] != "/healthz" || plain[0]["status"] != float64(200) || plain[0]["method"] != "GET" {
		t.Errorf("plain request records = %v, want one GET /healthz 200", plain)
	}
}

// TestLogFormatFromFile: without the flag, the file's log.format holds.
func TestLogFormatFromFile(t *testing.T) {
	_, addr := startBackend(t, "one")
	g := startGateWith(t, gateConfig{backends: []string{addr}, extra: "log:\n  format: json\n"})
	waitFor(t, "the config loaded record", func() bool { return strings.Contains(g.Stderr.String(), `"msg":"config loaded"`) })
	first, _, _ := strings.Cut(g.Stderr.String(), "\n")
	if !json.Valid([]byte(first)) {
		t.Errorf("first log line is not JSON: %s", first)
	}
}
