package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/proctest"
	wstls "github.com/wsgate/wsgate/tls"
)

// Binaries built once by TestMain.
var (
	wsgateBin  string
	backendBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err := proctest.Build(dir, ".", "../wsgate-backend")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	wsgateBin, backendBin = bins[0], bins[1]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a started binary (see proctest.Proc).
type proc = proctest.Proc

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return proctest.Start(t, bin, args...)
}

// startBackend runs a reference backend process and returns its address.
func startBackend(t *testing.T, id string) (*proc, string) {
	return startBackendAt(t, id, "127.0.0.1:0")
}

// startBackendAt runs a reference backend process on addr.
func startBackendAt(t *testing.T, id, addr string) (*proc, string) {
	p := start(t, backendBin, "-listen", addr, "-id", id, "-drain-timeout", "2s", noLoadReport)
	return p, p.WaitLine("listening on")
}

// noLoadReport keeps the X-Backend-Connections header out of a reference
// backend's /healthz. The tests of one wsgate process assert exact
// least-connections spreads, which reported load blurs by one whenever a
// probe lands while a connection is being set up; reported load has its
// own test (TestReportedLoadTwoProcesses).
const noLoadReport = "-report-load=false"

// tlsFiles writes a self-signed certificate for localhost and returns the
// file paths and a pool trusting it.
func tlsFiles(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, roots
}

// gate is a running `wsgate run` process.
type gate struct {
	*proc
	proxyAddr, adminURL string
	roots               *x509.CertPool
	path                string // the config file
	certFile, keyFile   string
}

// gateConfig is what a test varies in the config file.
type gateConfig struct {
	bin           string   // the wsgate binary; "" is wsgateBin
	listen, admin string   // the listeners' addresses; "" is 127.0.0.1:0
	backends      []string // none: no backends key
	discover      string   // the pool's discover block, indented for it, or ""
	health        string   // the pool's health_check block, indented for it, or ""
	pool          string   // more keys of the pool, indented for it
	pools         string   // more pools after app, indented as items of pools
	routes        string   // more routes after app's, indented as items of routes
	adminKeys     string   // more admin keys, indented for the admin block
	extra         string   // more top-level YAML
	args          []string // more arguments of wsgate run
}

func (g *gate) writeConfig(t *testing.T, gc gateConfig) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\ntls:\n  certificates:\n    - cert_file: %s\n      key_file: %s\n", cmp.Or(gc.listen, "127.0.0.1:0"), g.certFile, g.keyFile)
	fmt.Fprintf(&b, "admin:\n  listen: %s\n%spools:\n  - name: app\n", cmp.Or(gc.admin, "127.0.0.1:0"), gc.adminKeys)
	if len(gc.backends) > 0 {
		b.WriteString("    backends:\n")
	}
	for _, addr := range gc.backends {
		fmt.Fprintf(&b, "      - address: %s\n", addr)
	}
	b.WriteString(gc.discover)
	b.WriteString(gc.health)
	b.WriteString(gc.pool)
	b.WriteString(gc.pools)
	b.WriteString("routes:\n  - pool: app\n")
	b.WriteString(gc.routes)
	b.WriteString(gc.extra)
	if err := os.WriteFile(g.path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startGate(t *testing.T, backends []string, extraYAML string) *gate {
	t.Helper()
	return startGateWith(t, gateConfig{backends: backends, extra: extraYAML})
}

func startGateWith(t *testing.T, gc gateConfig) *gate {
	t.Helper()
	g, _ := newGate(t, gc)
	g.serving(start(t, cmp.Or(gc.bin, wsgateBin), append([]string{"run", "-config", g.path}, gc.args...)...))
	return g
}

// newGate writes gc's config file, with a certificate of its own, into a
// new directory, which it returns: a gate to start.
func newGate(t *testing.T, gc gateConfig) (*gate, string) {
	t.Helper()
	dir := t.TempDir()
	g := &gate{path: filepath.Join(dir, "wsgate.yaml")}
	g.certFile, g.keyFile, g.roots = tlsFiles(t, dir)
	g.writeConfig(t, gc)
	return g, dir
}

// serving takes p as the gate's process and waits until it listens.
func (g *gate) serving(p *proc) {
	g.proc = p
	g.proxyAddr = strings.TrimPrefix(g.WaitLine("wsgate: proxy listening on"), "https://")
	g.adminURL = g.WaitLine("wsgate: admin listening on")
}

func (g *gate) dial(t *testing.T, path string) (*websocket.Conn, string) {
	t.Helper()
	return dialWSS(t, g.proxyAddr, path, g.roots)
}

func dialWSS(t *testing.T, addr, path string, roots *x509.CertPool) (*websocket.Conn, string) {
	t.Helper()
	c, id, err := tryDialWSS(addr, path, roots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, id
}

// tryDialWSS opens a WebSocket connection over TLS to addr and returns it
// with the X-Backend-Id of the answer. Unlike dialWSS it may be called
// from any goroutine; the caller closes the connection.
func tryDialWSS(addr, path string, roots *x509.CertPool) (*websocket.Conn, string, error) {
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: roots, ServerName: "localhost", InsecureSkipVerify: roots == nil},
		HandshakeTimeout: 5 * time.Second,
	}
	c, resp, err := d.Dial("wss://"+addr+path, nil)
	if err != nil {
		return nil, "", fmt.Errorf("dial wss://%s%s: %w", addr, path, err)
	}
	return c, resp.Header.Get("X-Backend-Id"), nil
}

func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("WriteMessage() error = %v", err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}

type backendStatus struct {
	Pool              string `json:"pool"`
	Address           string `json:"address"`
	State             string `json:"state"`
	HealthReason      string `json:"health_reason"`
	ActiveConnections int64  `json:"active_connections"`
	TotalConnections  int64  `json:"total_connections"`

	InheritedConnections int64 `json:"inherited_connections"`
	// ReportedConnections is nil while no report stands.
	ReportedConnections *int64 `json:"reported_connections"`
}

// adminClient opens a connection per request: a keep-alive connection to
// an admin listener that a binary upgrade hands over may be closed by the
// old process just as a request goes out on it.
var adminClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func getBackends(t *testing.T, adminURL string) []backendStatus {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/api/backends")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []backendStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// closeCode reads from c until it fails and returns the close code, or -1.
func closeCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		return -1
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(wsgateBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "wsgate ") {
		t.Errorf("wsgate version = %q, %v; want a line starting with \"wsgate \"", out, err)
	}
}

func TestValidate(t *testing.T) {
	for _, ex := range []string{"../../examples/minimal.yaml", "../../examples/multi.yaml", "../../examples/discover.yaml"} {
		out, err := exec.Command(wsgateBin, "validate", "-config", ex).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Errorf("wsgate validate %s = %q, %v; want ok", ex, out, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:99999\nadmin:\n  lisen: x\npools:\n  - name: app\n    backends:\n      - address: 127.0.0.1:9001\n        weight: -1\nroutes:\n  - pool: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wsgateBin, "validate", "-config", bad)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("validate bad config: exit %d (%v), want 1", code, err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	for _, want := range []string{bad + ":1:", bad + ":3:", bad + ":8:", bad + ":10:"} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("stderr has no line starting %q:\n%s", want, stderr.String())
		}
	}
}

func TestRunBalancesAndStops(t *testing.T) {
	var addrs []string
	for _, id := range []string{"a", "b", "c"} {
		_, addr := startBackend(t, id)
		addrs = append(addrs, addr)
	}
	g := startGate(t, addrs, "shutdown:\n  drain_timeout: 3s\n")

	byID := map[string][]*websocket.Conn{}
	for range 30 {
		c, id := g.dial(t, "/ws")
		byID[id] = append(byID[id], c)
	}
	for _, id := range []string{"a", "b", "c"} {
		if n := len(byID[id]); n != 10 {
			t.Errorf("backend %s holds %d of 30, want 10", id, n)
		}
		echo(t, byID[id][0], "hello "+id)
	}
	for _, b := range getBackends(t, g.adminURL) {
		if b.ActiveConnections != 10 || b.TotalConnections != 10 || b.State != "healthy" {
			t.Errorf("GET /api/backends: %+v, want 10 active, 10 total, healthy", b)
		}
	}

	// One more client that never reads, so it never answers the close
	// frame: it keeps the drain going until drain_timeout.
	g.dial(t, "/ws")

	// Every other client reads, so it answers the proxy's close frame.
	codes := make(chan int, 30)
	for _, cs := range byID {
		for _, c := range cs {
			go func() { codes <- closeCode(t, c) }()
		}
	}
	start := time.Now()
	g.Signal(syscall.SIGTERM)
	// /healthz turns 503 at once, and the admin listener stays up while
	// the drain lasts.
	waitFor(t, "admin /healthz to turn 503", func() bool {
		resp, err := http.Get(g.adminURL + "/healthz")
		if err != nil {
			t.Fatalf("admin listener gone during the drain: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	for range 30 {
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Errorf("client close code = %d, want 1001", code)
		}
	}
	// Within drain_timeout (3s), plus a little to exit.
	if code := g.Exit(3500 * time.Millisecond); code != 0 {
		t.Errorf("wsgate exit code after SIGTERM = %d, want 0", code)
	}
	took := time.Since(start)
	t.Logf("wsgate stopped %v after SIGTERM", took)
	if took < 2*time.Second {
		t.Errorf("wsgate stopped after %v, before the silent client's drain_timeout of 3s", took)
	}
}

// waitFor polls cond until it holds, failing the test after a while.
var waitFor = proctest.WaitFor

func TestBackendShutdownReachesClients(t *testing.T) {
	b1, addr1 := startBackend(t, "one")
	_, addr2 := startBackend(t, "two")
	g := startGate(t, []string{addr1, addr2}, "")
	backendShutdownReachesClients(t, g, b1, "one", "two")
}

// backendShutdownReachesClients holds two connections on the backend
// victim (whose X-Backend-Id is victimID), sends it SIGTERM and checks that
// its clients get its 1001 through wsgate, that it exits 0, and that
// reconnects land on the backend otherID.
func backendShutdownReachesClients(t *testing.T, g *gate, victim *proc, victimID, otherID string) {
	t.Helper()
	var onVictim []*websocket.Conn
	for len(onVictim) < 2 {
		c, id := g.dial(t, "/ws")
		echo(t, c, "to "+id)
		if id == victimID {
			onVictim = append(onVictim, c)
		}
	}
	victim.Signal(syscall.SIGTERM)
	for i, c := range onVictim {
		if code := closeCode(t, c); code != websocket.CloseGoingAway {
			t.Errorf("client %d: close code %d, want 1001 from backend %s", i, code, victimID)
		}
	}
	if code := victim.Exit(10 * time.Second); code != 0 {
		t.Errorf("backend %s exit code = %d, want 0", victimID, code)
	}
	// Reconnecting lands on the other backend (the first refuses, and is
	// skipped).
	for range 3 {
		c, id := g.dial(t, "/ws")
		if id != otherID {
			t.Errorf("reconnect went to %q, want %s", id, otherID)
		}
		echo(t, c, "again")
	}
}

func TestDemo(t *testing.T) {
	p := start(t, wsgateBin, "demo", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	echoURL := p.WaitLine("echo")
	chatURL := p.WaitLine("chat")
	adminURL := p.WaitLine("dashboard")
	addr := strings.TrimPrefix(strings.TrimSuffix(echoURL, "/ws"), "wss://")

	c, id := dialWSS(t, addr, "/ws", nil)
	if !strings.HasPrefix(id, "backend-") {
		t.Errorf("X-Backend-Id = %q, want backend-N", id)
	}
	echo(t, c, "hello demo")

	room := strings.TrimPrefix(chatURL, "wss://"+addr)
	a, _ := dialWSS(t, addr, room, nil)
	bb, _ := dialWSS(t, addr, room, nil)
	if err := a.WriteMessage(websocket.TextMessage, []byte("to the room")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{a, bb} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, got, err := c.ReadMessage(); err != nil || string(got) != "to the room" {
			t.Errorf("chat member got %q, %v; want the broadcast", got, err)
		}
	}
	echoBackends := 0
	for _, b := range getBackends(t, strings.TrimSuffix(adminURL, "/")) {
		if b.Pool == "echo" {
			echoBackends++
		}
	}
	if echoBackends != 3 {
		t.Errorf("demo echo backends = %d, want 3", echoBackends)
	}

	p.Signal(syscall.SIGTERM)
	if code := p.Exit(8 * time.Second); code != 0 {
		t.Errorf("demo exit code = %d, want 0", code)
	}
}

func TestDemoBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsgateBin, "demo", "-listen", ln.Addr().String(), "-admin", "127.0.0.1:0")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("demo on a busy port: exit %d, want 1", code)
	}
	if !strings.Contains(string(out), "address already in use") {
		t.Errorf("demo on a busy port said %q; want it to name the busy address", out)
	}
}
