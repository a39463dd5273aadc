package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fastHealth is a pool health check quick enough for tests. A killed
// backend refuses the probe at once, so the timeout only matters for a
// live one: 200ms keeps a busy CI machine from marking healthy backends
// down (100ms did, under the chaos tests' load).
const fastHealth = "    health_check:\n      interval: 200ms\n      timeout: 200ms\n      healthy_threshold: 2\n      unhealthy_threshold: 2\n"

// backendState returns the admin API's view of the backend at addr.
func backendState(t *testing.T, g *gate, addr string) backendStatus {
	t.Helper()
	for _, b := range getBackends(t, g.adminURL) {
		if b.Address == addr {
			return b
		}
	}
	t.Fatalf("backend %s not in /api/backends", addr)
	return backendStatus{}
}

func adminPost(t *testing.T, g *gate, path, addr string) {
	t.Helper()
	body := fmt.Sprintf(`{"pool":"app","address":%q}`, addr)
	resp, err := adminClient.Post(g.adminURL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s = %d, want 200", path, resp.StatusCode)
	}
}

// waitProbed waits until every backend has had a health verdict.
func waitProbed(t *testing.T, g *gate) {
	t.Helper()
	waitFor(t, "first health verdicts", func() bool {
		for _, b := range getBackends(t, g.adminURL) {
			if b.State != "healthy" || b.HealthReason == "" {
				return false
			}
		}
		return true
	})
}

func TestKillBackendUnderLoad(t *testing.T) {
	ids := []string{"a", "b", "c"}
	procs := map[string]*proc{}
	addrOf := map[string]string{}
	var addrs []string
	for _, id := range ids {
		procs[id], addrOf[id] = startBackend(t, id)
		addrs = append(addrs, addrOf[id])
	}
	g := startGateWith(t, gateConfig{backends: addrs, health: fastHealth})
	waitProbed(t, g)

	// Two long-lived connections on each backend.
	held := map[string]int{}
	for range 6 {
		_, id := g.dial(t, "/ws")
		held[id]++
	}
	for _, id := range ids {
		if held[id] != 2 {
			t.Fatalf("held connections per backend = %v, want 2 each", held)
		}
	}

	// A stream of new connections, each dial + echo + close, bounded in
	// count and time.
	var dials, failures atomic.Int64
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second}
		for range 20000 {
			select {
			case <-stop:
				return
			default:
			}
			dials.Add(1)
			c, _, err := d.Dial("wss://"+g.proxyAddr+"/ws", nil)
			if err != nil {
				failures.Add(1)
				t.Logf("stream dial failed: %v", err)
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
				failures.Add(1)
			} else if _, _, err := c.ReadMessage(); err != nil {
				failures.Add(1)
			}
			c.Close()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-streamDone
	}()
	waitFor(t, "the stream to get going", func() bool { return dials.Load() > 20 })

	// kill -9 a.
	killed := time.Now()
	if err := procs["a"].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to be marked unhealthy", func() bool { return backendState(t, g, addrOf["a"]).State == "unhealthy" })
	took := time.Since(killed)
	// interval × unhealthy_threshold + timeout = 500ms, plus the admin
	// polling here.
	t.Logf("a marked unhealthy %v after kill -9 (reason %q)", took, backendState(t, g, addrOf["a"]).HealthReason)
	if took > 600*time.Millisecond {
		t.Errorf("a marked unhealthy %v after kill -9, want within 500ms (interval × threshold + timeout)", took)
	}
	waitFor(t, "more dials while a is down", func() bool { return dials.Load() > 100 })

	// Restart a on the same address: healthy after healthy_threshold probes.
	startBackendAt(t, "a2", addrOf["a"])
	up := time.Now()
	waitFor(t, "a to be healthy again", func() bool { return backendState(t, g, addrOf["a"]).State == "healthy" })
	t.Logf("a healthy again %v after restart", time.Since(up))

	close(stop)
	<-streamDone
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d stream connections failed; want none", f, dials.Load())
	}
	t.Logf("stream: %d connections, %d failed", dials.Load(), failures.Load())

	// a is the emptiest (b and c hold 2 each): the next two land on it.
	waitFor(t, "stream connections to be released", func() bool {
		for _, id := range []string{"b", "c"} {
			if backendState(t, g, addrOf[id]).ActiveConnections != 2 {
				return false
			}
		}
		return backendState(t, g, addrOf["a"]).ActiveConnections == 0
	})
	for range 2 {
		if _, id := g.dial(t, "/ws"); id != "a2" {
			t.Errorf("next connection went to %s, want a2 (the restarted, emptiest backend)", id)
		}
	}
}

// toggleBackend is an in-process WebSocket echo backend whose /healthz
// answer can be switched between 200 and 503 while it keeps serving.
type toggleBackend struct {
	id       string
	srv      *httptest.Server
	failing  atomic.Bool
	flooded  atomic.Int64 // bytes sent on /flood connections
	mu       sync.Mutex
	conns    []*websocket.Conn
	upgrader websocket.Upgrader

	// floodEnds receives, as each /flood connection's reader ends, the
	// close code it received (-1: it ended without a close frame).
	floodEnds chan int
}

func newToggleBackend(t *testing.T, id string) *toggleBackend {
	tb := &toggleBackend{id: id, floodEnds: make(chan int, 16), upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}}
	tb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if tb.failing.Load() {
				http.Error(w, "failing", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("OK"))
			return
		}
		c, err := tb.upgrader.Upgrade(w, r, http.Header{"X-Backend-Id": {id}})
		if err != nil {
			return
		}
		tb.mu.Lock()
		tb.conns = append(tb.conns, c)
		tb.mu.Unlock()
		if r.URL.Path == "/flood" {
			// As fast as the proxy takes them, until the connection ends;
			// close frames are answered by the reading goroutine.
			go func() {
				for {
					if _, _, err := c.NextReader(); err != nil {
						code := -1
						if ce, ok := err.(*websocket.CloseError); ok {
							code = ce.Code
						}
						select {
						case tb.floodEnds <- code:
						default: // nobody asked
						}
						return
					}
				}
			}()
			msg := make([]byte, 16<<10)
			for c.WriteMessage(websocket.BinaryMessage, msg) == nil {
				tb.flooded.Add(int64(len(msg)))
			}
			return
		}
		echoBack(c)
	}))
	t.Cleanup(func() {
		tb.mu.Lock()
		for _, c := range tb.conns {
			c.Close()
		}
		tb.mu.Unlock()
		tb.srv.Close()
	})
	return tb
}

func (tb *toggleBackend) addr() string { return tb.srv.Listener.Addr().String() }

// A client that stops reading while its backend floods it must not hold
// up shutdown: wsgate exits within drain_timeout even with the write
// timeout off (the stall then lasts until the drain deadline cuts it).
func TestSIGTERMWithStalledClient(t *testing.T) {
	tb := newToggleBackend(t, "flood")
	g := startGate(t, []string{tb.addr()}, "shutdown:\n  drain_timeout: 2s\ntunnels:\n  write_timeout: 0\n")
	g.dial(t, "/flood") // never read
	other, _ := g.dial(t, "/ws")
	echo(t, other, "beside the stalled one")
	// Let the flood fill the buffers on the way to the stalled client.
	waitFor(t, "the flood to stall", func() bool {
		return backendState(t, g, tb.addr()).ActiveConnections == 2 && tb.flooded.Load() > 1<<20
	})
	code := make(chan int, 1)
	go func() { code <- closeCode(t, other) }()
	start := time.Now()
	g.Signal(syscall.SIGTERM)
	if c := <-code; c != websocket.CloseGoingAway {
		t.Errorf("the reading client got close code %d, want 1001", c)
	}
	if exit := g.Exit(2500 * time.Millisecond); exit != 0 {
		t.Errorf("wsgate exit code after SIGTERM = %d, want 0", exit)
	}
	t.Logf("wsgate exited %v after SIGTERM (drain_timeout 2s)", time.Since(start).Round(time.Millisecond))
}

func TestFailingHealthCheckLeavesRotation(t *testing.T) {
	one, two := newToggleBackend(t, "one"), newToggleBackend(t, "two")
	g := startGateWith(t, gateConfig{backends: []string{one.addr(), two.addr()}, health: fastHealth})
	waitProbed(t, g)

	var onOne []*websocket.Conn
	for range 4 {
		c, id := g.dial(t, "/ws")
		if id == "one" {
			onOne = append(onOne, c)
		}
	}
	if len(onOne) != 2 {
		t.Fatalf("%d of 4 connections on one, want 2", len(onOne))
	}

	one.failing.Store(true)
	waitFor(t, "one to be marked unhealthy", func() bool { return backendState(t, g, one.addr()).State == "unhealthy" })
	if r := backendState(t, g, one.addr()).HealthReason; r != "status 503" {
		t.Errorf("health_reason = %q, want %q", r, "status 503")
	}
	for range 6 {
		if _, id := g.dial(t, "/ws"); id != "two" {
			t.Errorf("new connection went to %s while one fails its health check, want two", id)
		}
	}
	for i, c := range onOne {
		echo(t, c, fmt.Sprintf("still here %d", i))
	}

	one.failing.Store(false)
	waitFor(t, "one to be healthy again", func() bool { return backendState(t, g, one.addr()).State == "healthy" })
	if _, id := g.dial(t, "/ws"); id != "one" {
		t.Errorf("next connection went to %s, want one (the emptiest)", id)
	}
}

func TestDrainUndrain(t *testing.T) {
	_, a := startBackend(t, "a")
	_, b := startBackend(t, "b")
	g := startGate(t, []string{a, b}, "")

	var onA []*websocket.Conn
	for range 4 {
		c, id := g.dial(t, "/ws")
		if id == "a" {
			onA = append(onA, c)
		}
	}
	adminPost(t, g, "/api/backends/drain", a)
	if st := backendState(t, g, a); st.State != "draining" || st.ActiveConnections != 2 {
		t.Errorf("after drain: %+v, want draining with its 2 connections", st)
	}
	for range 4 {
		if _, id := g.dial(t, "/ws"); id != "b" {
			t.Errorf("new connection went to %s while a drains, want b", id)
		}
	}
	for _, c := range onA {
		echo(t, c, "draining but alive")
	}
	adminPost(t, g, "/api/backends/undrain", a)
	if st := backendState(t, g, a).State; st != "healthy" {
		t.Errorf("after undrain: state %s, want healthy", st)
	}
	if _, id := g.dial(t, "/ws"); id != "a" {
		t.Errorf("connection after undrain went to %s, want a (the emptiest)", id)
	}
}

func TestReload(t *testing.T) {
	_, a := startBackend(t, "a")
	_, b := startBackend(t, "b")
	g := startGateWith(t, gateConfig{backends: []string{a}})
	c1, _ := g.dial(t, "/ws")
	c2, _ := g.dial(t, "/ws")

	// Add b.
	g.writeConfig(t, gateConfig{backends: []string{a, b}})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "b to appear", func() bool { return len(getBackends(t, g.adminURL)) == 2 })
	for range 2 {
		if _, id := g.dial(t, "/ws"); id != "b" {
			t.Errorf("connection after adding b went to %s, want b (the emptiest)", id)
		}
	}
	echo(t, c1, "untouched by the reload")
	if !strings.Contains(g.Stderr.String(), "generation=2") {
		t.Errorf("no log line names generation 2:\n%s", g.Stderr.String())
	}

	// A broken file is rejected and changes nothing.
	g.writeConfig(t, gateConfig{backends: []string{a, b}, extra: "bogus_key: 1\n"})
	g.Signal(syscall.SIGHUP)
	// The rejection, then one line per error, naming the bad key.
	waitFor(t, "the rejection and the bad key to be logged", func() bool {
		log := g.Stderr.String()
		return strings.Contains(log, "reload rejected") && strings.Contains(log, `unknown key \"bogus_key\"`)
	})
	if n := len(getBackends(t, g.adminURL)); n != 2 {
		t.Errorf("backends after a rejected reload = %d, want 2", n)
	}
	echo(t, c2, "still fine")
	c3, _ := g.dial(t, "/ws")
	echo(t, c3, "new connections too")

	// A new certificate: new handshakes get it, established connections
	// keep going.
	oldRoots := g.roots
	g.certFile, g.keyFile, g.roots = tlsFiles(t, t.TempDir())
	g.writeConfig(t, gateConfig{backends: []string{a, b}})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the new certificate to be served", func() bool {
		conn, err := tls.Dial("tcp", g.proxyAddr, &tls.Config{RootCAs: g.roots, ServerName: "localhost"})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	if conn, err := tls.Dial("tcp", g.proxyAddr, &tls.Config{RootCAs: oldRoots, ServerName: "localhost"}); err == nil {
		conn.Close()
		t.Error("the old certificate is still served after the reload")
	}
	echo(t, c2, "established before the certificate changed")

	// Remove a: its connections run on; new ones go to b.
	g.writeConfig(t, gateConfig{backends: []string{b}})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "a to be removed", func() bool { return len(getBackends(t, g.adminURL)) == 1 })
	echo(t, c1, "a was removed but this connection lives")
	for range 3 {
		if _, id := g.dial(t, "/ws"); id != "b" {
			t.Errorf("connection after removing a went to %s, want b", id)
		}
	}
}

func TestConnectionLimit(t *testing.T) {
	_, a := startBackend(t, "a")
	g := startGate(t, []string{a}, "limits:\n  max_connections: 2\n")
	for range 2 {
		g.dial(t, "/ws")
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial("wss://"+g.proxyAddr+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third Dial() = %v, %v; want 503 at max_connections 2", resp, err)
	}
	waitFor(t, "the refusal to be logged", func() bool {
		return strings.Contains(g.Stderr.String(), `msg="limit reached; refused"`) && strings.Contains(g.Stderr.String(), "reason=max_connections")
	})
}

// The edge limits apply on SIGHUP, to connections that come after it.
func TestReloadAppliesLimits(t *testing.T) {
	_, a := startBackend(t, "a")
	g := startGate(t, []string{a}, "limits:\n  max_connections_per_ip: 5\n")
	held, _ := g.dial(t, "/ws")
	g.dial(t, "/ws")
	g.writeConfig(t, gateConfig{backends: []string{a}, extra: "limits:\n  max_connections_per_ip: 2\n"})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(g.Stderr.String(), "limits changed") })
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial("wss://"+g.proxyAddr+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection after lowering max_connections_per_ip to 2 = %v, %v; want 429 with Retry-After", resp, err)
	}
	// The connections held before the reload are untouched.
	echo(t, held, "still here")
}

// Two wsgate processes given one session ticket secret resume each
// other's TLS sessions; a process without it does not.
func TestSessionTicketsAcrossProcesses(t *testing.T) {
	_, a := startBackend(t, "a")
	secret := filepath.Join(t.TempDir(), "ticket-secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withSecret := func() *gate {
		g := startGateWith(t, gateConfig{backends: []string{a}})
		// The TLS section is the harness's; add the tickets to it.
		b, err := os.ReadFile(g.path)
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.Replace(string(b), "tls:\n", "tls:\n  session_tickets:\n    secret_file: "+secret+"\n", 1)
		if err := os.WriteFile(g.path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		g.Signal(syscall.SIGHUP)
		waitFor(t, "the ticket secret", func() bool { return strings.Contains(g.Stderr.String(), "session ticket keys changed") })
		return g
	}
	g1, g2 := withSecret(), withSecret()
	plain := startGate(t, []string{a}, "")
	// Each harness process has its own certificate; the client trusts all
	// of them (it re-checks a session's certificate when it resumes).
	pool := x509.NewCertPool()
	for _, g := range []*gate{g1, g2, plain} {
		pem, err := os.ReadFile(g.certFile)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	resumed := func(first, second *gate) bool {
		cache := tls.NewLRUClientSessionCache(8)
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache}, HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial("wss://"+first.proxyAddr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "take the ticket")
		c.Close()
		c2, _, err := d.Dial("wss://"+second.proxyAddr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		return c2.NetConn().(*tls.Conn).ConnectionState().DidResume
	}
	if !resumed(g1, g2) {
		t.Error("a session from one process did not resume on another with the same ticket secret")
	}
	if resumed(g1, plain) {
		t.Error("a session resumed on a process without the ticket secret")
	}
}

// The runtime section is in force from the start, and a SIGHUP that
// changes it applies it; the log says what is in force and from where.
func TestRuntimeSection(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	_, a := startBackend(t, "a")
	g := startGate(t, []string{a}, "runtime:\n  gc_percent: 40\n  memory_limit: 256MiB\n")
	waitFor(t, "the gc policy at start", func() bool {
		return strings.Contains(g.Stderr.String(), `msg="gc policy"`) &&
			strings.Contains(g.Stderr.String(), "gc_percent=40 memory_limit=256MiB memory_limit_from=config")
	})
	g.writeConfig(t, gateConfig{backends: []string{a}, extra: "runtime:\n  gc_percent: 60\n  memory_limit: 50%\n"})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the gc policy after the reload", func() bool {
		return strings.Contains(g.Stderr.String(), "gc_percent_from=config gc_percent=60 memory_limit=") &&
			strings.Contains(g.Stderr.String(), "memory_available_from=")
	})
	g.dial(t, "/ws")
}

// echoBack sends every message c receives back to it, until either
// direction fails: the echo of the test backends.
func echoBack(c *websocket.Conn) {
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil || c.WriteMessage(mt, msg) != nil {
			return
		}
	}
}
