package discovery

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/internal/dnstest"
	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
)

// The tests in this file run a real DNS server, real health checks and real
// backends on loopback, in real time.

var fastCheck = &registry.HealthCheck{Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}

// running is a registry with a Discoverer (with the real DNSClient), a
// health Checker and a Balancer running over it.
type running struct {
	store *registry.Store
	bal   *balancer.Balancer
}

func runAll(t *testing.T, pools ...registry.PoolSpec) *running {
	t.Helper()
	store := newRegistry(t, pools...)
	quiet := slog.New(slog.DiscardHandler)
	r := &running{store: store, bal: balancer.New(store, balancer.Options{Logger: quiet})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{
		New(store, Options{Connections: r.bal, Logger: quiet}).Run,
		healthcheck.New(store, healthcheck.Options{Logger: quiet}).Run,
		r.bal.Run,
	} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return r
}

// states returns the pool's backends as address → state.
func (r *running) states(pool string) map[string]registry.State {
	bs, _ := r.store.PoolBackends(pool)
	out := make(map[string]registry.State, len(bs))
	for _, b := range bs {
		out[b.Address] = b.State()
	}
	return out
}

// healthz is a backend that answers /healthz with 200 once let through,
// and holds the probe until then.
type healthz struct {
	srv     *httptest.Server
	release chan struct{}
	once    sync.Once
}

func newHealthz(t *testing.T, network, address string, held bool) *healthz {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	h := &healthz{release: make(chan struct{})}
	if !held {
		h.let()
	}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("OK"))
	}))
	h.srv.Listener.Close()
	h.srv.Listener = ln
	h.srv.Start()
	t.Cleanup(func() {
		h.let()
		h.srv.Close()
	})
	return h
}

func (h *healthz) let()         { h.once.Do(func() { close(h.release) }) }
func (h *healthz) addr() string { return h.srv.Listener.Addr().String() }
func (h *healthz) port() uint16 {
	_, p, _ := net.SplitHostPort(h.addr())
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// SRV with two targets on different ports: both become backends, with the
// records' ports and weights, and are probed into service.
func TestSRVTwoTargets(t *testing.T) {
	a := newHealthz(t, "tcp", "127.0.0.1:0", false)
	b := newHealthz(t, "tcp", "127.0.0.1:0", false)
	dns := dnstest.Start(t)
	dns.SetSRV("_ws._tcp.app.test", 30,
		dnstest.SRV{Target: "a.app.test", Port: a.port(), Priority: 1, Weight: 2},
		dnstest.SRV{Target: "b.app.test", Port: b.port(), Priority: 1, Weight: 5},
		dnstest.SRV{Target: "spare.app.test", Port: 1, Priority: 2, Weight: 1})
	dns.SetA("a.app.test", 30, "127.0.0.1")
	dns.SetA("b.app.test", 30, "127.0.0.1")
	dns.SetA("spare.app.test", 30, "127.0.0.1")
	r := runAll(t, registry.PoolSpec{Name: "app", Check: fastCheck,
		Discover: &registry.Discover{Name: "_ws._tcp.app.test", Type: TypeSRV, Interval: time.Second, Resolver: dns.Addr()}})

	proctest.WaitFor(t, "both SRV targets healthy", func() bool {
		s := r.states("app")
		return len(s) == 2 && s[a.addr()] == registry.StateHealthy && s[b.addr()] == registry.StateHealthy
	})
	for addr, want := range map[string]int{a.addr(): 2, b.addr(): 5} {
		if be, err := r.store.Backend(registry.ID{Pool: "app", Address: addr}); err != nil || be.Weight != want {
			t.Errorf("backend %s = %+v, %v; want weight %d", addr, be, err, want)
		}
	}
}

// AAAA with the IPv6 loopback: the backend is [::1]:port, probed over IPv6.
func TestAAAALoopback(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here (%v): AAAA discovery is covered by TestResolve with an in-memory resolver", err)
	} else {
		ln.Close()
	}
	be := newHealthz(t, "tcp6", "[::1]:0", false)
	dns := dnstest.Start(t)
	dns.SetAAAA("v6.app.test", 30, "::1")
	r := runAll(t, registry.PoolSpec{Name: "app", Check: fastCheck,
		Discover: &registry.Discover{Name: "v6.app.test", Type: TypeAAAA, Port: int(be.port()), Interval: time.Second, Resolver: dns.Addr()}})
	want := "[::1]:" + strconv.Itoa(int(be.port()))
	if want != be.addr() {
		t.Fatalf("backend listens on %s, want %s", be.addr(), want)
	}
	proctest.WaitFor(t, want+" healthy", func() bool { return r.states("app")[want] == registry.StateHealthy })
}

// A discovered backend gets no connection until its first probe passes,
// even while that probe is still out.
func TestNoConnectionBeforeTheFirstProbe(t *testing.T) {
	old := newHealthz(t, "tcp", "127.0.0.2:0", false)
	port := old.port()
	fresh := newHealthz(t, "tcp", net.JoinHostPort("127.0.0.3", strconv.Itoa(int(port))), true)
	dns := dnstest.Start(t)
	dns.SetA("app.test", 1, "127.0.0.2")
	check := *fastCheck
	check.Timeout = 10 * time.Second // the held probe of fresh must not time out
	check.Interval = 10 * time.Second
	r := runAll(t, registry.PoolSpec{Name: "app", Check: &check,
		Discover: &registry.Discover{Name: "app.test", Type: TypeA, Port: int(port), Interval: 100 * time.Millisecond, Resolver: dns.Addr()}})
	proctest.WaitFor(t, old.addr()+" healthy", func() bool { return r.states("app")[old.addr()] == registry.StateHealthy })

	dns.SetA("app.test", 1, "127.0.0.2", "127.0.0.3")
	proctest.WaitFor(t, fresh.addr()+" discovered", func() bool { _, ok := r.states("app")[fresh.addr()]; return ok })
	var leases []*balancer.Lease
	defer func() {
		for _, l := range leases {
			l.Release()
		}
	}()
	acquire := func() string {
		t.Helper()
		l := new(balancer.Lease)
		if err := r.bal.Acquire("app", nil, l); err != nil {
			t.Fatalf("Acquire() error = %v", err)
		}
		leases = append(leases, l)
		return l.Address
	}
	// Least connections would send every one of these to fresh, which has
	// none, if it were eligible.
	for i := range 20 {
		if got := acquire(); got != old.addr() {
			t.Fatalf("connection %d went to %s before its first probe passed", i, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := r.states("app")[fresh.addr()]; s != registry.StateUnhealthy {
		t.Errorf("state of %s while its probe is out = %v, want unhealthy", fresh.addr(), s)
	}
	fresh.let()
	proctest.WaitFor(t, fresh.addr()+" healthy", func() bool { return r.states("app")[fresh.addr()] == registry.StateHealthy })
	if got := acquire(); got != fresh.addr() {
		t.Errorf("first connection after the probe passed went to %s, want %s (it has the fewest)", got, fresh.addr())
	}
}

// The DNS server stops: the last answer stays; it comes back with an
// address less: that one drains.
func TestServerGoneKeepsLastAnswer(t *testing.T) {
	a := newHealthz(t, "tcp", "127.0.0.2:0", false)
	port := a.port()
	b := newHealthz(t, "tcp", net.JoinHostPort("127.0.0.3", strconv.Itoa(int(port))), false)
	dns := dnstest.Start(t)
	dns.SetA("app.test", 1, "127.0.0.2", "127.0.0.3")
	r := runAll(t, registry.PoolSpec{Name: "app", Check: fastCheck,
		Discover: &registry.Discover{Name: "app.test", Type: TypeA, Port: int(port), Interval: 50 * time.Millisecond, Resolver: dns.Addr()}})
	both := func() bool {
		s := r.states("app")
		return len(s) == 2 && s[a.addr()] == registry.StateHealthy && s[b.addr()] == registry.StateHealthy
	}
	proctest.WaitFor(t, "both healthy", both)
	dns.Stop()
	time.Sleep(300 * time.Millisecond) // six intervals without a server
	if !both() {
		t.Errorf("backends without a DNS server: %v, want both still healthy", r.states("app"))
	}
	// Least connections puts one connection on each; a's then vanishes.
	var onA *balancer.Lease
	for range 2 {
		l := new(balancer.Lease)
		if err := r.bal.Acquire("app", nil, l); err != nil {
			t.Fatal(err)
		}
		if l.Address == a.addr() {
			onA = l
		} else {
			defer l.Release()
		}
	}
	if onA == nil {
		t.Fatalf("no connection on %s", a.addr())
	}
	dns.SetA("app.test", 1, "127.0.0.3")
	dns.Restart()
	proctest.WaitFor(t, a.addr()+" draining", func() bool { return r.states("app")[a.addr()] == registry.StateDraining })
	time.Sleep(200 * time.Millisecond)
	if s := r.states("app")[a.addr()]; s != registry.StateDraining {
		t.Errorf("vanished backend with a connection: %v, want still draining", s)
	}
	onA.Release()
	proctest.WaitFor(t, a.addr()+" removed", func() bool { _, ok := r.states("app")[a.addr()]; return !ok })
}
