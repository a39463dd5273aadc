package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
	"github.com/wsgate/wsgate/registry"
)

// parkingSupported reports whether idle tunnels park on this platform
// (and build: the wsgate_portable tag turns the fast path off).
func parkingSupported() bool {
	p, err := sockio.NewParker()
	if err != nil {
		return false
	}
	p.Close()
	return true
}

// needParking skips a test of parking where nothing parks.
func needParking(t *testing.T) {
	t.Helper()
	if !parkingSupported() {
		t.Skip("idle tunnels do not park on this platform or build")
	}
}

func fastParking(h *Handler) {
	h.parkAfter = 20 * time.Millisecond
	h.sweepEvery = 10 * time.Millisecond
}

func parked(p *testProxy) int {
	pk := p.h.parker.Load()
	if pk == nil {
		return 0
	}
	return len(pk.Parked())
}

func TestIdleTunnelsPark(t *testing.T) {
	needParking(t)
	b := newTestBackend(t, "b")
	p := startProxyWith(t, Options{}, fastParking, backendSpec{addr: b.addr})
	const n = 20
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i], _ = p.dial(t, "/ws", nil)
	}
	waitFor(t, "every direction of every tunnel to park", func() bool { return parked(p) == 2*n })
	withParked := runtime.NumGoroutine()

	// Traffic resumes them, and echo works as before.
	for round := range 3 {
		for i, c := range clients {
			msg := fmt.Sprintf("round %d client %d", round, i)
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
				t.Fatalf("echo after parking = %q, %v; want %q", got, err, msg)
			}
		}
		waitFor(t, "tunnels to park again", func() bool { return parked(p) == 2*n })
	}
	// Parked tunnels hold no goroutines: resuming them all (by traffic)
	// shows the difference.
	for _, c := range clients {
		if err := c.WriteMessage(websocket.TextMessage, []byte("wake")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if awake := runtime.NumGoroutine(); awake < withParked+n {
		t.Logf("goroutines parked %d, awake %d (the tunnels re-park quickly, so this is a soft check)", withParked, awake)
	}

	// A parked tunnel notices its peer closing.
	waitFor(t, "tunnels to park", func() bool { return parked(p) == 2*n })
	clients[0].Close()
	id := registry.ID{Pool: "app", Address: b.addr}
	waitFor(t, "the closed tunnel to end", func() bool { return p.h.ActiveTunnels() == n-1 })
	waitFor(t, "its lease to be released", func() bool { a, _ := p.bal.Counts(id); return a == n-1 })
	b.dropAll()
	for _, c := range clients[1:] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatal("client read a message after the backend dropped it")
		}
		c.Close()
	}
	waitFor(t, "every tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	if got := parked(p); got != 0 {
		t.Errorf("%d copiers still parked after every tunnel ended", got)
	}
}

func TestShutdownResumesParkedTunnels(t *testing.T) {
	needParking(t)
	b := newTestBackend(t, "b")
	p := startProxyWith(t, Options{}, fastParking, backendSpec{addr: b.addr})
	const n = 10
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i], _ = p.dial(t, "/ws", nil)
	}
	waitFor(t, "tunnels to park", func() bool { return parked(p) == 2*n })
	codes := make(chan int, n)
	for _, c := range clients {
		go func() { codes <- readClose(c) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.h.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	for range n {
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Errorf("client close code = %d, want 1001", code)
		}
		if code := <-b.closeCodes; code != websocket.CloseGoingAway {
			t.Errorf("backend close code = %d, want 1001", code)
		}
	}
}

func TestParkingLeavesDrainDeadlineAlone(t *testing.T) {
	needParking(t)
	b := newTestBackend(t, "b")
	p := startProxyWith(t, Options{}, fastParking, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil) // never reads: never answers the close
	waitFor(t, "the tunnel to park", func() bool { return parked(p) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = p.h.Shutdown(ctx)
	// Sweeps run every 10ms here; none may cut the drain short.
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("Shutdown() returned after %v; a silent client keeps the drain going until the 500ms deadline", took)
	}
	_ = c
}

// Tunnels that park and resume all the time — woken by their clients'
// messages, by the proxy's pings and by the sweep, often at once — relay
// every message once and in order, and none is dropped. Parking every
// few milliseconds here makes the races between a copier handing itself
// to the parker and the wake-ups that come meanwhile happen often.
func TestParkAndWakeStorm(t *testing.T) {
	needParking(t)
	b := newTestBackend(t, "b")
	p := startProxyWith(t, Options{Limits: Limits{PingInterval: 4 * time.Millisecond, PingTimeout: 2 * time.Second}}, func(h *Handler) {
		h.parkAfter = 2 * time.Millisecond
		h.sweepEvery = time.Millisecond
	}, backendSpec{addr: b.addr})
	const clients, messages = 40, 60
	errs := make(chan error, clients)
	for i := range clients {
		c, _ := p.dial(t, "/ws", nil)
		go func() {
			errs <- func() error {
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				for m := range messages {
					// Quiet long enough, now and then, to park and be pinged.
					time.Sleep(time.Duration(rng.IntN(8)) * time.Millisecond)
					msg := fmt.Sprintf("client %d message %d", i, m)
					if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
						return err
					}
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, got, err := c.ReadMessage() // answers the pings on the way
					if err != nil {
						return fmt.Errorf("client %d, message %d: %w", i, m, err)
					}
					if string(got) != msg {
						return fmt.Errorf("client %d: echo %q, want %q", i, got, msg)
					}
				}
				return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	waitFor(t, "every tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	if got := parked(p); got != 0 {
		t.Errorf("%d copiers still parked after every tunnel ended", got)
	}
}

// Heartbeats wake a parked tunnel for a moment only: the copier that
// sends the proxy's ping and the one that relays the client's pong park
// again at once, not after parkAfter. With parkAfter at 100 ms and a ping
// every 150 ms, copiers that stayed awake for parkAfter after each
// heartbeat would be awake most of the time.
func TestHeartbeatsKeepTunnelsParked(t *testing.T) {
	needParking(t)
	fl := newFrameLog(t)
	const n = 10
	limits := Limits{PingInterval: 150 * time.Millisecond, PingTimeout: time.Second}
	p := startProxyWith(t, Options{Limits: limits}, func(h *Handler) {
		h.parkAfter = 100 * time.Millisecond
		h.sweepEvery = 10 * time.Millisecond
	}, backendSpec{addr: fl.addr})
	var pongs [n]atomic.Int32
	for i := range n {
		c, _ := p.dial(t, "/ws", nil)
		c.SetPingHandler(func(data string) error {
			pongs[i].Add(1)
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		go func() {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	waitFor(t, "every direction of every tunnel to park", func() bool { return parked(p) == 2*n })
	for i := range pongs {
		pongs[i].Store(0)
	}
	var samples, awake int
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		samples++
		awake += 2*n - parked(p)
	}
	mean := float64(awake) / float64(samples)
	for i := range pongs {
		if got := pongs[i].Load(); got < 3 {
			t.Errorf("client %d answered %d pings in a second, want several (one per 150 ms)", i, got)
		}
	}
	t.Logf("%d samples, %.2f of %d copiers awake on average", samples, mean, 2*n)
	if mean > 2 {
		t.Errorf("%.2f copiers awake on average, want under 2: heartbeats keep tunnels awake", mean)
	}
	if got := p.h.ActiveTunnels(); got != n {
		t.Errorf("ActiveTunnels() = %d, want %d", got, n)
	}
}
