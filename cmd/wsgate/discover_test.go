package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/dnstest"
)

// heldBackend is a WebSocket echo backend on a chosen address whose
// /healthz answers 200 only once let through: until then every probe
// hangs (and times out).
type heldBackend struct {
	srv     *httptest.Server
	release chan struct{}
	once    sync.Once
}

func newHeldBackend(t *testing.T, addr, id string) *heldBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hb := &heldBackend{release: make(chan struct{})}
	up := websocket.Upgrader{}
	hb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			select {
			case <-hb.release:
				_, _ = w.Write([]byte("OK"))
			case <-r.Context().Done():
			}
			return
		}
		c, err := up.Upgrade(w, r, http.Header{"X-Backend-Id": {id}})
		if err != nil {
			return
		}
		defer c.Close()
		echoBack(c)
	}))
	hb.srv.Listener.Close()
	hb.srv.Listener = ln
	hb.srv.Start()
	t.Cleanup(func() {
		hb.let()
		hb.srv.CloseClientConnections()
		hb.srv.Close()
	})
	return hb
}

func (hb *heldBackend) let() { hb.once.Do(func() { close(hb.release) }) }

// stateOf returns the admin API's state of the backend at addr, or "" when
// it is not listed.
func stateOf(t *testing.T, g *gate, addr string) backendStatus {
	t.Helper()
	for _, b := range getBackends(t, g.adminURL) {
		if b.Address == addr {
			return b
		}
	}
	return backendStatus{}
}

// TestDiscoverEndToEnd runs wsgate with a pool found in DNS, served by a
// real DNS server on loopback whose answers the test changes: backends
// that appear are probed before they get connections, those that vanish
// drain without losing their tunnels, and a DNS server that stops or
// answers nothing leaves the pool as it was, which the log and the
// metrics say. A reload keeps what discovery found.
func TestDiscoverEndToEnd(t *testing.T) {
	_, addr2 := startBackendAt(t, "b2", "127.0.0.2:0")
	_, port, _ := net.SplitHostPort(addr2)
	_, addr3 := startBackendAt(t, "b3", "127.0.0.3:"+port)
	addr4 := "127.0.0.4:" + port
	b4 := newHeldBackend(t, addr4, "b4")

	dns := dnstest.Start(t)
	dns.SetA("app.test", 1, "127.0.0.2")
	gc := gateConfig{
		discover: fmt.Sprintf("    discover:\n      name: app.test\n      type: A\n      port: %s\n      interval: 100ms\n      resolver: %s\n", port, dns.Addr()),
		health:   "    health_check:\n      interval: 1s\n      timeout: 1s\n      healthy_threshold: 1\n      unhealthy_threshold: 1\n",
	}
	g := startGateWith(t, gc)
	logCount := func(msg string) int { return strings.Count(g.Stderr.String(), fmt.Sprintf("msg=%q", msg)) }
	healthy := func(addr string) func() bool {
		return func() bool { return stateOf(t, g, addr).State == "healthy" }
	}
	conns := make(map[string][]*websocket.Conn)
	dial := func() string {
		t.Helper()
		c, id := g.dial(t, "/ws")
		echo(t, c, "hello "+id)
		conns[id] = append(conns[id], c)
		return id
	}

	// The first answer: one backend.
	waitFor(t, "b2 healthy", healthy(addr2))
	if id := dial(); id != "b2" {
		t.Fatalf("first connection went to %q, want b2", id)
	}

	// A second address: probed, then it gets the next connection.
	dns.SetA("app.test", 1, "127.0.0.2", "127.0.0.3")
	waitFor(t, "b3 healthy", healthy(addr3))
	if id := dial(); id != "b3" {
		t.Errorf("connection after b3 appeared went to %q, want b3 (the emptiest)", id)
	}

	// A third whose first probe hangs: no connection goes to it, though it
	// has the fewest, until a probe passes.
	dns.SetA("app.test", 1, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	waitFor(t, "b4 discovered", func() bool { return stateOf(t, g, addr4).Address != "" })
	for range 6 {
		if id := dial(); id == "b4" {
			t.Fatal("a connection went to b4 before its first probe passed")
		}
	}
	if st := stateOf(t, g, addr4); st.State != "unhealthy" || st.ActiveConnections != 0 {
		t.Errorf("b4 before its first passing probe: %+v, want unhealthy without connections", st)
	}
	b4.let()
	waitFor(t, "b4 healthy", healthy(addr4))
	if id := dial(); id != "b4" {
		t.Errorf("connection after b4 passed its probe went to %q, want b4 (the emptiest)", id)
	}

	// b2 vanishes: it drains; its tunnels keep working; no new connection
	// goes to it; once they are closed it is removed.
	dns.SetA("app.test", 1, "127.0.0.3", "127.0.0.4")
	waitFor(t, "b2 draining", func() bool { return stateOf(t, g, addr2).State == "draining" })
	if st := stateOf(t, g, addr2); st.ActiveConnections != int64(len(conns["b2"])) {
		t.Errorf("draining b2 holds %d connections, want %d", st.ActiveConnections, len(conns["b2"]))
	}
	for _, c := range conns["b2"] {
		echo(t, c, "b2 drains but this tunnel lives")
	}
	for range 4 {
		if id := dial(); id == "b2" {
			t.Error("a new connection went to the vanished b2")
		}
	}
	for _, c := range conns["b2"] {
		_ = closeNormally(c)
	}
	waitFor(t, "b2 removed", func() bool { return stateOf(t, g, addr2).Address == "" })
	for _, msg := range []string{"backend discovered", "backend vanished from dns; draining", "vanished backend removed"} {
		if logCount(msg) == 0 {
			t.Errorf("no log line %q", msg)
		}
	}

	// The DNS server stops: the last answer stays, the failure is logged
	// once and counted every time.
	dns.Stop()
	waitFor(t, "the failure logged", func() bool { return logCount("dns lookup failed; keeping the last answer") > 0 })
	waitFor(t, "failures counted", func() bool {
		return values(scrape(t, g.adminURL, ""), "wsgate_discovery_errors_total", "pool")["app"] >= 5
	})
	if n := logCount("dns lookup failed; keeping the last answer"); n != 1 {
		t.Errorf("%d log lines for one failure streak, want 1", n)
	}
	for _, addr := range []string{addr3, addr4} {
		if st := stateOf(t, g, addr); st.State != "healthy" {
			t.Errorf("%s with the DNS server gone: %+v, want healthy", addr, st)
		}
	}
	if id := dial(); id != "b3" && id != "b4" {
		t.Errorf("connection with the DNS server gone went to %q", id)
	}

	// It comes back with an empty answer (NXDOMAIN): the pool stays too.
	dns.SetA("app.test", 1)
	dns.Restart()
	waitFor(t, "the empty answer logged", func() bool { return logCount("dns answer empty; keeping the last answer") == 1 })
	waitFor(t, "empty answers counted", func() bool {
		return values(scrape(t, g.adminURL, ""), "wsgate_discovery_empty_total", "pool")["app"] >= 1
	})
	if id := dial(); id != "b3" && id != "b4" {
		t.Errorf("connection after an empty answer went to %q", id)
	}
	dns.SetA("app.test", 1, "127.0.0.3", "127.0.0.4")
	waitFor(t, "the recovery logged", func() bool { return logCount("dns lookup recovered") == 1 })
	if got := values(scrape(t, g.adminURL, ""), "wsgate_discovery_backends", "pool")["app"]; got != 2 {
		t.Errorf("wsgate_discovery_backends{pool=app} = %v, want 2", got)
	}

	// A reload keeps the discovered backends as they are: not dropped and
	// found again (which would log them again and probe them first).
	discoveredBefore := logCount("backend discovered")
	dns.Stop()
	g.writeConfig(t, gc)
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(g.Stderr.String(), "generation=2") })
	time.Sleep(500 * time.Millisecond) // five lookups, failing
	for _, addr := range []string{addr3, addr4} {
		if st := stateOf(t, g, addr); st.State != "healthy" || st.ActiveConnections == 0 {
			t.Errorf("%s after the reload: %+v, want healthy with its connections", addr, st)
		}
	}
	if n := logCount("backend discovered"); n != discoveredBefore {
		t.Errorf("%d backends discovered anew after the reload, want none", n-discoveredBefore)
	}
	for id, cs := range conns {
		if id != "b2" {
			echo(t, cs[0], "through the reload")
		}
	}
}
