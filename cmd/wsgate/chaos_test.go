package main

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Chaos under load (issue 12, item 8): clients send numbered messages
// through a wsgate to three reference backends while backends are killed
// or rolled, wsgate reloads its config, or wsgate itself shuts down.
// Each client checks that the echoes of its messages (their
// acknowledgements) come back in order, each exactly once, across its
// reconnects; a prober opens a new connection every 50 ms and counts the
// ones that fail. Each test prints its connections, messages and failures.

const (
	// chaosClients is how many clients send messages at once.
	chaosClients = 60
	// chaosEvery is how often each client sends a message, and chaosWindow
	// how many of its messages may wait for their echo at once.
	chaosEvery  = 100 * time.Millisecond
	chaosWindow = 4
	// probeEvery is how often the prober opens a new connection.
	probeEvery = 50 * time.Millisecond
	// chaosHealth is the pool's health check: fast, and yet tolerant of a
	// probe answered late by a backend on a machine this load keeps busy
	// (a dead backend is marked down at once anyway, by the proxy's
	// passive failure when a connection to it is refused).
	chaosHealth = "    health_check:\n      interval: 200ms\n      timeout: 200ms\n      healthy_threshold: 2\n      unhealthy_threshold: 3\n"
)

// session is one connection of a chaos client.
type session struct {
	backend string // its X-Backend-Id
	opened  time.Time
	acked   atomic.Int64 // messages acknowledged on it

	// Set when it has ended: when, and the close code the client got
	// (1006 when the connection ended without a close frame).
	ended atomic.Int64 // unix nanoseconds; 0 while open
	code  atomic.Int64
}

// chaosClient is one client of the load: message n of client c is
// "c:n", and its echo must come back as message n of that client's
// acknowledged stream.
type chaosClient struct {
	id    int
	acked atomic.Int64 // messages acknowledged: 0 … acked-1, in order, each once

	mu       sync.Mutex
	sessions []*session
}

func (cl *chaosClient) add(s *session) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.sessions = append(cl.sessions, s)
}

func (cl *chaosClient) all() []*session {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.sessions)
}

// load is chaosClients clients and a prober working through a wsgate.
type load struct {
	t      *testing.T
	g      *gate
	dialer websocket.Dialer

	clients   []*chaosClient
	stop      chan struct{} // closed to end the load
	reconnect atomic.Bool   // clients reconnect after losing a connection
	wg        sync.WaitGroup

	// Backends whose connections may be lost: the ones killed or stopped
	// on purpose.
	victimsMu sync.Mutex
	victims   map[string]bool

	probes, probesOK, probesLost atomic.Int64
	reachedBackends              sync.Map // X-Backend-Id → true, for every connection that got an echo

	failMu   sync.Mutex
	failures []string
}

// startLoad starts the clients and, with probe, the prober; it returns
// once every client has had a few messages acknowledged.
func startLoad(t *testing.T, g *gate, probe bool) *load {
	t.Helper()
	l := &load{
		t: t, g: g,
		dialer:  websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second},
		stop:    make(chan struct{}),
		victims: map[string]bool{},
	}
	l.reconnect.Store(true)
	for i := range chaosClients {
		cl := &chaosClient{id: i}
		l.clients = append(l.clients, cl)
		l.wg.Go(func() { l.runClient(cl) })
	}
	if probe {
		l.wg.Go(l.runProber)
	}
	t.Cleanup(l.finish)
	waitFor(t, "every client to have messages acknowledged", func() bool {
		for _, cl := range l.clients {
			if cl.acked.Load() < 3 {
				return false
			}
		}
		return true
	})
	return l
}

// fail records a failure; the test reports them all at the end.
func (l *load) fail(format string, args ...any) {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// victim marks backend id's connections as ones that may be lost.
func (l *load) victim(id string) {
	l.victimsMu.Lock()
	defer l.victimsMu.Unlock()
	l.victims[id] = true
}

func (l *load) isVictim(id string) bool {
	l.victimsMu.Lock()
	defer l.victimsMu.Unlock()
	return l.victims[id]
}

// runClient connects, converses until the connection is lost, and
// reconnects, until the load stops. A failed dial is a failure: no new
// connection may fail.
func (l *load) runClient(cl *chaosClient) {
	for failedDials := 0; !l.stopped() && failedDials < 20; {
		c, resp, err := l.dialer.Dial("wss://"+l.g.proxyAddr+"/ws", nil)
		if err != nil {
			failedDials++
			l.fail("client %d: a new connection failed: %v", cl.id, dialError(resp, err))
			select {
			case <-l.stop:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s := &session{backend: resp.Header.Get("X-Backend-Id"), opened: time.Now()}
		cl.add(s)
		l.converse(cl, c, s)
		if !l.reconnect.Load() {
			return
		}
	}
}

// converse sends cl's messages on c, from the first one not acknowledged
// yet, and reads their echoes, until the connection ends (then s records
// how) or the load stops (then the client closes it with 1000).
func (l *load) converse(cl *chaosClient, c *websocket.Conn, s *session) {
	defer c.Close()
	sent := cl.acked.Load()
	readerDone := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		tick := time.NewTicker(chaosEvery)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(time.Second))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				return
			case <-readerDone:
				return
			case <-tick.C:
			}
			if sent-cl.acked.Load() >= chaosWindow {
				continue
			}
			if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "%d:%d", cl.id, sent)); err != nil {
				return
			}
			sent++
		}
	}()
	defer func() {
		close(readerDone)
		<-writerDone
	}()
	code := int64(-1)
	defer func() {
		s.code.Store(code)
		s.ended.Store(time.Now().UnixNano())
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				code = int64(ce.Code)
			}
			return
		}
		n := cl.acked.Load()
		if want := fmt.Sprintf("%d:%d", cl.id, n); string(msg) != want {
			l.fail("client %d on %s: got %q, want %q (the next unacknowledged message, once)", cl.id, s.backend, msg, want)
			return
		}
		if s.acked.Add(1) == 1 {
			l.reachedBackends.Store(s.backend, true)
		}
		cl.acked.Add(1)
	}
}

// dialError adds the HTTP status, if any, to a failed dial's error.
func dialError(resp *http.Response, err error) error {
	if resp != nil {
		return fmt.Errorf("%w (%s)", err, resp.Status)
	}
	return err
}

// runProber opens a new connection every probeEvery: dial, echo, close.
// A failed dial is a failure; so is a failed echo, unless the connection
// was on a victim (it was cut by the chaos, not refused).
func (l *load) runProber() {
	for i := 0; i < 1000; i++ {
		select {
		case <-l.stop:
			return
		case <-time.After(probeEvery):
		}
		l.probes.Add(1)
		c, resp, err := l.dialer.Dial("wss://"+l.g.proxyAddr+"/ws", nil)
		if err != nil {
			l.fail("probe %d: a new connection failed: %v", i, dialError(resp, err))
			continue
		}
		id := resp.Header.Get("X-Backend-Id")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg := fmt.Sprintf("probe %d", i)
		if err = c.WriteMessage(websocket.TextMessage, []byte(msg)); err == nil {
			var got []byte
			if _, got, err = c.ReadMessage(); err == nil && string(got) != msg {
				err = fmt.Errorf("echo %q, want %q", got, msg)
			}
		}
		c.Close()
		switch {
		case err == nil:
			l.probesOK.Add(1)
			l.reachedBackends.Store(id, true)
		case l.isVictim(id):
			l.probesLost.Add(1)
		default:
			l.fail("probe %d on %s: %v", i, id, err)
		}
	}
}

// reached reports whether a client or probe connection on backend id got
// an echo: whether it takes connections.
func (l *load) reached(id string) bool {
	_, ok := l.reachedBackends.Load(id)
	return ok
}

// finish stops the load and waits for it. Idempotent.
func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// report stops the load, fails the test for every failure recorded, logs
// the figures (connections, messages, failures) and returns the client
// connections that ended before the stop: those the chaos took.
func (l *load) report(what string) (lost []*session) {
	l.t.Helper()
	stopAt := time.Now()
	l.finish()
	var conns, acked int64
	lostBy := map[string]int{}
	for _, cl := range l.clients {
		ss := cl.all()
		conns += int64(len(ss))
		acked += cl.acked.Load()
		if last := ss[len(ss)-1]; last.acked.Load() == 0 {
			l.t.Errorf("client %d: no message acknowledged on its last connection (to %s)", cl.id, last.backend)
		}
		for _, s := range ss {
			if e := s.ended.Load(); e != 0 && time.Unix(0, e).Before(stopAt) {
				lost = append(lost, s)
				lostBy[fmt.Sprintf("%s, close %d", s.backend, s.code.Load())]++
			}
		}
	}
	l.failMu.Lock()
	failures := slices.Clone(l.failures)
	l.failMu.Unlock()
	for i, f := range failures {
		if i == 10 {
			l.t.Errorf("… and %d failures more", len(failures)-i)
			break
		}
		l.t.Error(f)
	}
	l.t.Logf("%s: %d clients, %d connections (%d lost: %v), %d probe connections (%d cut on purpose), %d messages acknowledged, %d failures",
		what, len(l.clients), conns, len(lost), lostBy, l.probes.Load(), l.probesLost.Load(), acked+l.probesOK.Load(), len(failures))
	return lost
}

// complaints gathers a test's failures, to report each distinct one once
// with how many times it happened.
type complaints map[string]int

func (c complaints) add(format string, args ...any) { c[fmt.Sprintf(format, args...)]++ }

func (c complaints) report(t *testing.T) {
	t.Helper()
	for _, msg := range slices.Sorted(maps.Keys(c)) {
		t.Errorf("%s (%d times)", msg, c[msg])
	}
}

// clientsOn returns the clients whose open connection is on backend id.
func (l *load) clientsOn(id string) []*chaosClient {
	var on []*chaosClient
	for _, cl := range l.clients {
		ss := cl.all()
		if last := ss[len(ss)-1]; last.backend == id && last.ended.Load() == 0 {
			on = append(on, cl)
		}
	}
	return on
}

// chaosBackends starts the three reference backends a, b and c and a
// wsgate in front of them with fast health checks and gc's settings.
func chaosBackends(t *testing.T, gc gateConfig) (*gate, map[string]*proc, map[string]string) {
	t.Helper()
	procs, addrs := map[string]*proc{}, map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		procs[id], addrs[id] = startBackend(t, id)
		gc.backends = append(gc.backends, addrs[id])
	}
	if gc.health == "" {
		gc.health = chaosHealth
	}
	g := startGateWith(t, gc)
	waitProbed(t, g)
	return g, procs, addrs
}

// (a) kill -9 one backend under load: only its clients are disconnected,
// they reconnect, and no new connection fails.
func TestChaosKillBackend(t *testing.T) {
	g, procs, _ := chaosBackends(t, gateConfig{})
	l := startLoad(t, g, true)
	onA := l.clientsOn("a")
	if len(onA) == 0 {
		t.Fatal("no client on a")
	}

	l.victim("a")
	if err := procs["a"].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's clients to reconnect elsewhere and go on", func() bool {
		for _, cl := range onA {
			ss := cl.all()
			last := ss[len(ss)-1]
			if last.backend == "a" || last.acked.Load() < 3 {
				return false
			}
		}
		return true
	})
	// A while longer under load, with a gone.
	<-time.After(time.Second)
	lost := l.report("kill -9 a")
	bad := complaints{}
	for _, s := range lost {
		if s.backend != "a" {
			bad.add("a connection on %s was lost (close %d); only a's may be", s.backend, s.code.Load())
		}
	}
	bad.report(t)
	if len(lost) < len(onA) {
		t.Errorf("%d connections lost, want all %d of a's", len(lost), len(onA))
	}
}

// (b) roll the three backends (SIGTERM, exit, restart on the same
// address) under load: every client of a stopped backend gets its 1001 and
// reconnects; no acknowledged message is lost or duplicated; no new
// connection fails.
func TestChaosRollBackends(t *testing.T) {
	g, procs, addrs := chaosBackends(t, gateConfig{})
	l := startLoad(t, g, true)

	began := time.Now()
	affected := 0
	for _, id := range []string{"a", "b", "c"} {
		on := l.clientsOn(id)
		affected += len(on)
		l.victim(id)
		procs[id].Signal(syscall.SIGTERM)
		if code := procs[id].Exit(10 * time.Second); code != 0 {
			t.Errorf("backend %s exit code after SIGTERM = %d, want 0", id, code)
		}
		// Its restart, under another name: its connections are not victims.
		startBackendAt(t, id+"2", addrs[id])
		waitFor(t, id+"2 to take connections", func() bool { return l.reached(id + "2") })
		waitFor(t, id+"'s clients to reconnect", func() bool {
			for _, cl := range on {
				ss := cl.all()
				if last := ss[len(ss)-1]; last.backend == id || last.acked.Load() == 0 {
					return false
				}
			}
			return true
		})
	}
	rolled := time.Since(began)
	<-time.After(time.Second) // under load with the new three
	lost := l.report("roll a, b and c")
	bad := complaints{}
	for _, s := range lost {
		switch {
		case !l.isVictim(s.backend):
			bad.add("a connection on %s was lost (close %d); only those of the stopped backends may be", s.backend, s.code.Load())
		case s.code.Load() != websocket.CloseGoingAway:
			bad.add("a client of %s got close %d, want 1001 (the backend's going away)", s.backend, s.code.Load())
		}
	}
	bad.report(t)
	if len(lost) < affected {
		t.Errorf("%d connections ended, want at least the %d the stopped backends held", len(lost), affected)
	}
	t.Logf("rolled three backends in %v; %d clients were on a stopped backend", rolled.Round(time.Millisecond), affected)
}

// (c) ten SIGHUP reloads with changed configs under load: no established
// connection is dropped, not even those of a backend a reload removes,
// and no new connection fails.
func TestChaosReloads(t *testing.T) {
	g, _, addrs := chaosBackends(t, gateConfig{})
	all := []string{addrs["a"], addrs["b"], addrs["c"]}
	l := startLoad(t, g, true)

	weighted := fmt.Sprintf("%s\n        weight: 3", addrs["a"])
	configs := []gateConfig{
		{backends: all, health: strings.Replace(chaosHealth, "interval: 200ms", "interval: 250ms", 1)},
		{backends: all, health: chaosHealth + "    policy: power_of_two\n"},
		{backends: []string{addrs["a"], addrs["b"]}, health: chaosHealth}, // c removed: its connections stay
		{backends: []string{addrs["a"], addrs["b"]}, health: chaosHealth, routes: "  - path_prefix: /other\n    pool: app\n"},
		{backends: []string{weighted, addrs["b"]}, health: chaosHealth},
		{backends: all, health: chaosHealth}, // c back
		{backends: all, health: chaosHealth, pools: fmt.Sprintf("  - name: spare\n    backends:\n      - address: %s\n", addrs["c"])},
		{backends: all, health: strings.Replace(chaosHealth, "unhealthy_threshold: 3", "unhealthy_threshold: 4", 1)},
		{backends: all, health: chaosHealth, routes: "  - host: localhost\n    pool: app\n"},
		{backends: all, health: chaosHealth},
	}
	var onC []*chaosClient
	var ackedOnC []int64
	for i, gc := range configs {
		g.writeConfig(t, gc)
		g.Signal(syscall.SIGHUP)
		gen := fmt.Sprintf("generation=%d", i+2)
		waitFor(t, gen, func() bool { return strings.Contains(g.Stderr.String(), gen) })
		switch i {
		case 2: // c removed: remember its clients' progress
			onC = l.clientsOn("c")
			for _, cl := range onC {
				ackedOnC = append(ackedOnC, cl.acked.Load())
			}
		case 4: // c's clients went on while c was out of the config
			for j, cl := range onC {
				waitFor(t, "c's clients to go on", func() bool { return cl.acked.Load() > ackedOnC[j]+3 })
			}
		}
		// A little traffic under each config.
		<-time.After(300 * time.Millisecond)
	}
	if strings.Contains(g.Stderr.String(), "reload rejected") {
		t.Errorf("a reload was rejected:\n%s", g.Stderr.String())
	}
	bad := complaints{}
	for _, s := range l.report("10 reloads") {
		bad.add("a connection on %s was dropped (close %d) during the reloads", s.backend, s.code.Load())
	}
	bad.report(t)
	if len(onC) == 0 {
		t.Error("no client was on c when a reload removed it")
	}
	t.Logf("10 reloads; %d clients on c stayed connected while c was out of the config", len(onC))
}

// (d) SIGTERM to wsgate with shutdown.close_spread: every client gets
// 1001, and the closes are spread over the window rather than sent at
// once.
func TestChaosShutdownSpread(t *testing.T) {
	const spread = 3 * time.Second
	g, _, _ := chaosBackends(t, gateConfig{extra: fmt.Sprintf("shutdown:\n  drain_timeout: 6s\n  close_spread: %v\n", spread)})
	l := startLoad(t, g, false)
	l.reconnect.Store(false) // wsgate is going away

	sigterm := time.Now()
	g.Signal(syscall.SIGTERM)
	if code := g.Exit(8 * time.Second); code != 0 {
		t.Errorf("wsgate exit code after SIGTERM = %d, want 0", code)
	}
	exited := time.Since(sigterm)

	lost := l.report("SIGTERM with close_spread")
	if len(lost) != chaosClients {
		t.Fatalf("%d connections closed by wsgate's shutdown, want all %d", len(lost), chaosClients)
	}
	var at []time.Duration
	bad := complaints{}
	for _, s := range lost {
		if c := s.code.Load(); c != websocket.CloseGoingAway {
			bad.add("a client on %s got close %d, want 1001", s.backend, c)
		}
		at = append(at, time.Unix(0, s.ended.Load()).Sub(sigterm))
	}
	bad.report(t)
	slices.Sort(at)
	p10, p90 := at[len(at)/10], at[len(at)*9/10]
	t.Logf("close_spread %v: %d closes from %v to %v after SIGTERM, 10th–90th percentile %v–%v; wsgate exited after %v",
		spread, len(at), at[0].Round(time.Millisecond), at[len(at)-1].Round(time.Millisecond), p10.Round(time.Millisecond), p90.Round(time.Millisecond), exited.Round(time.Millisecond))
	if last := at[len(at)-1]; last > spread+500*time.Millisecond {
		t.Errorf("the last 1001 arrived %v after SIGTERM, past the close_spread window (%v)", last, spread)
	}
	if p90-p10 < spread/2 {
		t.Errorf("the 10th–90th percentile of the 1001 arrivals spans %v, want at least half the close_spread window (%v)", p90-p10, spread/2)
	}
}
