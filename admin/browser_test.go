//go:build linux

// The browser test drives Chromium and reads /proc: Linux only.

package admin_test

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/admin"
	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

// The dashboard's browser test drives the page in headless Chromium
// (Debian's, /usr/bin/chromium) with playwright-core from npm, installed in
// testdata/browser by `npm ci` (.ci/run does both). The Go side runs a
// real wsgate in this process (registry, balancer, health checks, the
// proxy on a TLS listener, the admin server with a token) in front of
// real reference backends, and holds real WebSocket tunnels through it.
// testdata/browser/dashboard.mjs checks the page, and stops at each step
// for the Go side to act or check: a line "step NAME [JSON]" on its
// stdout is answered with one line on its stdin.

const (
	browserDir   = "testdata/browser"
	adminToken   = "dashboard-test-token"
	browserLimit = 60 * time.Second // the whole browser session
	stepLimit    = 20 * time.Second // one step of it
)

// browserTools returns node and Chromium, or skips the test when they
// are missing, except in CI (CI=true), where .ci/run installs them.
func browserTools(t *testing.T) (node, chromium string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node")
	}
	chromium = cmp.Or(os.Getenv("WSGATE_CHROMIUM"), "/usr/bin/chromium")
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium+" (apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "playwright-core (npm ci --prefix admin/"+browserDir+")")
	}
	if len(missing) > 0 {
		msg := "the dashboard's browser test needs " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; .ci/run should have installed them")
		}
		t.Skip(msg)
	}
	return node, chromium
}

// upgradeTotals counts the proxy's upgrades by result and ended tunnels by
// close code, as the metrics package does: it is the test's
// Options.Totals.
type upgradeTotals struct {
	mu       sync.Mutex
	upgrades map[string]int64
	closes   map[string]int64
}

var _ proxy.Observer = (*upgradeTotals)(nil)

func (u *upgradeTotals) UpgradeDone(ev *proxy.UpgradeEvent) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.upgrades[string(ev.Result)]++
}

func (u *upgradeTotals) TunnelClosed(ev *proxy.TunnelEvent) {
	code := "none"
	if ev.CloseCode != proxy.CloseCodeNone {
		code = strconv.Itoa(ev.CloseCode)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closes[code]++
}

func (u *upgradeTotals) Refused(*proxy.RefusalEvent) {}

func (u *upgradeTotals) Totals() (upgrades, closes map[string]int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	upgrades, closes = make(map[string]int64), make(map[string]int64)
	for k, v := range u.upgrades {
		upgrades[k] = v
	}
	for k, v := range u.closes {
		closes[k] = v
	}
	return upgrades, closes
}

// liveGateway is wsgate assembled in-process on loopback listeners.
type liveGateway struct {
	proxyAddr, adminURL string
	roots               *x509.CertPool
	backends            map[string]string // backend ID → address
}

// startLiveGateway runs wsgate with pools app (b1, b2) and chat (c1) of
// reference backends, until the test ends.
func startLiveGateway(t *testing.T) *liveGateway {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		running.Wait()
	})
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	lg := &liveGateway{backends: map[string]string{}}
	for _, id := range []string{"b1", "b2", "c1"} {
		ln := listen()
		lg.backends[id] = ln.Addr().String()
		srv := backend.New(backend.Options{ID: id, DrainTimeout: time.Second, Logger: log})
		running.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				t.Errorf("backend %s: %v", id, err)
			}
		})
	}

	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	check := &registry.HealthCheck{Path: "/healthz", Interval: 200 * time.Millisecond, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}
	if _, err := store.Apply([]registry.PoolSpec{
		{Name: "app", Check: check, Backends: []registry.BackendSpec{{Address: lg.backends["b1"]}, {Address: lg.backends["b2"]}}},
		{Name: "chat", Check: check, Backends: []registry.BackendSpec{{Address: lg.backends["c1"]}}},
	}); err != nil {
		t.Fatal(err)
	}
	bal := balancer.New(store, balancer.Options{Logger: log})
	checker := healthcheck.New(store, healthcheck.Options{Logger: log})
	totals := &upgradeTotals{upgrades: map[string]int64{}, closes: map[string]int64{}}
	ph := proxy.New(proxy.Options{
		Routes:   []proxy.Route{{PathPrefix: "/", Pool: "app"}, {PathPrefix: "/ws/chat", Pool: "chat"}},
		Balancer: bal, Failures: checker, Observer: totals, Logger: log,
	})
	adm := admin.New(admin.Options{Store: store, Balancer: bal, Totals: totals.Totals, Token: adminToken, Logger: log})

	certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	lg.roots = x509.NewCertPool()
	lg.roots.AppendCertsFromPEM(certPEM)

	for _, run := range []func(context.Context) error{bal.Run, checker.Run, ph.Run} {
		running.Go(func() {
			if err := run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	proxyLn, adminLn := listen(), listen()
	lg.proxyAddr, lg.adminURL = proxyLn.Addr().String(), "http://"+adminLn.Addr().String()
	proxySrv, adminSrv := ph.Server(), adm.HTTPServer()
	accept := proxy.NewListener(proxyLn, proxy.ListenerOptions{
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12},
		Logger: log,
	})
	running.Go(func() {
		if err := accept.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	running.Go(func() { _ = proxySrv.Serve(accept) })
	running.Go(func() { _ = adminSrv.Serve(adminLn) })
	// Stopped before the goroutines above are waited for (cleanups run
	// last in, first out), as wsgate stops: the admin server's Shutdown
	// ends the dashboard's stream.
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = proxySrv.Shutdown(sctx)
		if err := ph.Shutdown(sctx); err != nil {
			t.Errorf("proxy Shutdown() = %v", err)
		}
		if err := adminSrv.Shutdown(sctx); err != nil {
			t.Errorf("admin Shutdown() = %v; a dashboard stream held it up?", err)
		}
	})

	// Wait for every backend's first probe, so that the page shows a
	// health result.
	proctest.WaitFor(t, "the first health checks", func() bool {
		all, _ := store.Backends()
		for _, b := range all {
			if b.Health != registry.HealthUp {
				return false
			}
		}
		return true
	})
	return lg
}

// tunnel is a WebSocket held through the gateway.
type tunnel struct {
	conn    *websocket.Conn
	backend string // the backend's address
}

func (lg *liveGateway) open(t *testing.T, path string) *tunnel {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: lg.roots, ServerName: "localhost"},
		HandshakeTimeout: 5 * time.Second,
	}
	c, resp, err := d.Dial("wss://"+lg.proxyAddr+path, nil)
	if err != nil {
		t.Fatalf("Dial(%s) error = %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	addr, ok := lg.backends[resp.Header.Get("X-Backend-Id")]
	if !ok {
		t.Fatalf("Dial(%s): X-Backend-Id %q, want one of %v", path, resp.Header.Get("X-Backend-Id"), lg.backends)
	}
	return &tunnel{conn: c, backend: addr}
}

// close ends the tunnel with a close handshake.
func (tn *tunnel) close(t *testing.T, code int) {
	t.Helper()
	msg := websocket.FormatCloseMessage(code, "bye")
	if err := tn.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = tn.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := tn.conn.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != code {
				t.Fatalf("closing the tunnel: %v, want the close %d echoed", err, code)
			}
			break
		}
	}
	tn.conn.Close()
}

// traffic opens and closes tunnels for d, in waves, and returns the
// tunnels held then. Each close is a handshake with code 1000 or 1001.
func (lg *liveGateway) traffic(t *testing.T, held []*tunnel, opened map[string]int64, d time.Duration) []*tunnel {
	t.Helper()
	var mine []*tunnel
	for i, end := 0, time.Now().Add(d); time.Now().Before(end); i++ {
		// A wave of opens every few seconds, closes in between.
		if i%40 < 12 {
			path := "/ws"
			if i%3 == 0 {
				path = "/ws/chat"
			}
			tn := lg.open(t, path)
			opened[tn.backend]++
			mine = append(mine, tn)
		} else if len(mine) > 2 && i%2 == 0 {
			code := websocket.CloseNormalClosure
			if i%5 == 0 {
				code = websocket.CloseGoingAway
			}
			mine[0].close(t, code)
			mine = mine[1:]
		}
		time.Sleep(100 * time.Millisecond)
	}
	return append(held, mine...)
}

// backendView is a backend as the page should show it.
type backendView struct {
	Pool    string `json:"pool"`
	Address string `json:"address"`
	State   string `json:"state"`
	Active  int64  `json:"active"`
	Total   int64  `json:"total"`
}

// apiBackends reads GET /api/backends with the token.
func (lg *liveGateway) apiBackends(t *testing.T) []backendView {
	t.Helper()
	req, err := http.NewRequest("GET", lg.adminURL+"/api/backends", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []admin.BackendStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("GET /api/backends: %d, %v", resp.StatusCode, err)
	}
	out := make([]backendView, len(list))
	for i, b := range list {
		out[i] = backendView{Pool: b.Pool, Address: b.Address, State: b.State, Active: b.ActiveConnections, Total: b.TotalConnections}
	}
	return out
}

// expect is what the page must show for each backend: the tunnels held
// and opened so far, and the state given.
func (lg *liveGateway) expect(t *testing.T, held []*tunnel, opened map[string]int64, states map[string]string) []backendView {
	t.Helper()
	active := map[string]int64{}
	for _, tn := range held {
		active[tn.backend]++
	}
	var views []backendView
	for _, id := range []string{"b1", "b2", "c1"} {
		addr := lg.backends[id]
		pool := "app"
		if id == "c1" {
			pool = "chat"
		}
		views = append(views, backendView{Pool: pool, Address: addr, State: cmp.Or(states[addr], "healthy"), Active: active[addr], Total: opened[addr]})
	}
	// In the API's order.
	slices.SortFunc(views, func(a, b backendView) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Address, b.Address))
	})
	// /api/backends must agree before the page is asked to.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := lg.apiBackends(t)
		if slices.Equal(got, views) {
			return views
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/backends = %+v, want %+v", got, views)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// browserSession is the running dashboard.mjs.
type browserSession struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// step waits for the script's next "step NAME" line and returns its JSON
// argument (or "").
func (bs *browserSession) step(name string) string {
	bs.t.Helper()
	select {
	case line, ok := <-bs.lines:
		if !ok {
			bs.t.Fatalf("dashboard.mjs ended before step %q", name)
		}
		rest, found := strings.CutPrefix(line, "step "+name)
		if !found {
			bs.t.Fatalf("dashboard.mjs said %q, want step %q", line, name)
		}
		return strings.TrimSpace(rest)
	case <-time.After(stepLimit):
		bs.t.Fatalf("dashboard.mjs did not reach step %q within %v", name, stepLimit)
	}
	return ""
}

// answer lets the script go on past its step with v as JSON.
func (bs *browserSession) answer(v any) {
	bs.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		bs.t.Fatal(err)
	}
	if _, err := bs.in.Write(append(b, '\n')); err != nil {
		bs.t.Fatalf("writing to dashboard.mjs: %v", err)
	}
}

// startBrowser runs dashboard.mjs with config as JSON in its first
// argument. Chromium gets a temporary directory of the test's (TMPDIR) for
// its profile, so that a browser left behind can be found.
func startBrowser(t *testing.T, node string, limit time.Duration, config map[string]any, tmp string, stderr io.Writer) *browserSession {
	t.Helper()
	arg, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, node, "dashboard.mjs", string(arg))
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stderr = stderr
	// Past the time limit, SIGTERM: playwright then closes the browser
	// before node exits. SIGKILL only if that hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	bs := &browserSession{t: t, cmd: cmd, in: in, lines: make(chan string, 16)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer close(bs.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "step ") {
				bs.lines <- line
			} else {
				t.Logf("dashboard.mjs: %s", line)
			}
		}
	}()
	t.Cleanup(func() {
		in.Close()
		<-scanned
		err := cmd.Wait()
		cancel()
		if err != nil {
			t.Errorf("dashboard.mjs: %v", err)
		}
		// Every Chromium process had its profile under tmp: none may be
		// left once its helpers (crashpad) had a moment to exit.
		left := processesWith(tmp)
		for end := time.Now().Add(3 * time.Second); len(left) > 0 && time.Now().Before(end); left = processesWith(tmp) {
			time.Sleep(50 * time.Millisecond)
		}
		for _, pid := range left {
			t.Errorf("a browser process (pid %d) outlived dashboard.mjs; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return bs
}

// processesWith returns the processes whose command line mentions s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDashboardInBrowser: the dashboard shows the tunnels held through a
// real wsgate, follows a tunnel's close without a reload, and its Drain and
// Undrain buttons work, with the admin token asked for and sent.
func TestDashboardInBrowser(t *testing.T) {
	node, chromium := browserTools(t)
	started := time.Now()
	lg := startLiveGateway(t)

	// Three tunnels on pool app, one on chat.
	var held []*tunnel
	opened := map[string]int64{}
	for _, path := range []string{"/ws", "/ws", "/ws", "/ws/chat"} {
		tn := lg.open(t, path)
		held = append(held, tn)
		opened[tn.backend]++
	}
	views := lg.expect(t, held, opened, nil)

	// For the README's picture (docs/dashboard.png), tunnels may come and
	// go for a while with the page open, so that its charts have a history:
	// WSGATE_DASHBOARD_TRAFFIC=30s WSGATE_DASHBOARD_SCREENSHOTS=DIR.
	var traffic time.Duration
	if v := os.Getenv("WSGATE_DASHBOARD_TRAFFIC"); v != "" {
		var err error
		if traffic, err = time.ParseDuration(v); err != nil {
			t.Fatalf("WSGATE_DASHBOARD_TRAFFIC: %v", err)
		}
	}
	screenshots := cmp.Or(os.Getenv("WSGATE_DASHBOARD_SCREENSHOTS"), t.TempDir())
	var stderr strings.Builder
	tmp := t.TempDir()
	bs := startBrowser(t, node, browserLimit+traffic, map[string]any{
		"url": lg.adminURL + "/", "token": adminToken, "chromium": chromium,
		"screenshots": screenshots, "expect": views,
	}, tmp, &stderr)
	defer func() {
		if t.Failed() {
			t.Logf("dashboard.mjs stderr:\n%s", stderr.String())
		}
	}()

	bs.step("counted")
	// Close a tunnel of the busier app backend (least connections put two
	// of the three on one of b1, b2).
	busier := views[0].Address
	if views[1].Active > views[0].Active {
		busier = views[1].Address
	}
	victim := slices.IndexFunc(held, func(tn *tunnel) bool { return tn.backend == busier })
	held[victim].close(t, websocket.CloseNormalClosure)
	held = append(held[:victim], held[victim+1:]...)
	bs.answer(lg.expect(t, held, opened, nil))

	drained := bs.step("drained")
	var ref struct{ Pool, Address string }
	if err := json.Unmarshal([]byte(drained), &ref); err != nil {
		t.Fatalf("step drained %q: %v", drained, err)
	}
	states := map[string]string{ref.Address: "draining"}
	held = lg.traffic(t, held, opened, traffic)
	// The click drained it for wsgate, not just on the page: new tunnels go
	// elsewhere.
	lg.expect(t, held, opened, states)
	for range 2 {
		tn := lg.open(t, "/ws")
		if tn.backend == ref.Address {
			t.Errorf("a new tunnel went to %s, which the page drained", ref.Address)
		}
		held = append(held, tn)
		opened[tn.backend]++
	}
	bs.answer(lg.expect(t, held, opened, states))

	bs.step("undrained")
	bs.answer(lg.expect(t, held, opened, nil))

	bs.step("done")
	bs.answer(nil)
	for _, name := range []string{"dashboard.png", "dashboard-phone.png"} {
		if fi, err := os.Stat(filepath.Join(screenshots, name)); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v, want a PNG", name, err)
		}
	}
	kept := " (WSGATE_DASHBOARD_SCREENSHOTS=DIR keeps them)"
	if os.Getenv("WSGATE_DASHBOARD_SCREENSHOTS") != "" {
		kept = ""
	}
	t.Logf("screenshots in %s%s; browser session done %v after the test started", screenshots, kept, time.Since(started).Round(time.Millisecond))
}
