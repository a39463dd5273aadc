package proxy

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// readClose reads from c until it fails and returns the close code
// received, or -1 when the connection ended without a close frame.
func readClose(c *websocket.Conn) int {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return -1
	}
}

func TestShutdownSendsGoingAway(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	const n = 20
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i], _ = p.dial(t, "/ws", nil)
		if i%2 == 0 {
			// Half of them in the middle of a fragmented message: the close
			// frame goes between two fragments.
			w, err := clients[i].NextWriter(websocket.BinaryMessage)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(make([]byte, 10000)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "backend to hold every connection", func() bool { return b.open() == n })

	codes := make(chan int, n)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { codes <- readClose(c) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.h.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil (every handshake done)", err)
	}
	t.Logf("Shutdown took %v", time.Since(start))
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != websocket.CloseGoingAway {
			t.Errorf("client got close code %d, want 1001", code)
		}
	}
	for i := range n {
		select {
		case code := <-b.closeCodes:
			if code != websocket.CloseGoingAway {
				t.Errorf("backend got close code %d, want 1001", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("backend saw %d of %d connections close", i, n)
		}
	}
	if got := p.h.ActiveTunnels(); got != 0 {
		t.Errorf("ActiveTunnels() after Shutdown = %d, want 0", got)
	}
}

func TestShutdownWaitsForFrameBoundary(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil)
	raw := c.UnderlyingConn()

	// Half of a masked 1000-byte text frame.
	f := frame(true, 1, 1000, true)
	if _, err := raw.Write(f[:500]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the half frame to reach the proxy", func() bool {
		p.h.conns.mu.Lock()
		defer p.h.conns.mu.Unlock()
		for tn := range p.h.conns.m {
			return tn.up.n.Load() >= 500
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.h.Shutdown(ctx) }()

	// The backend cannot have its close yet: the frame in flight comes
	// first. Send the rest; the backend echoes the whole message, then
	// gets 1001.
	select {
	case code := <-b.closeCodes:
		t.Fatalf("backend got close %d in the middle of a frame", code)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := raw.Write(f[500:]); err != nil {
		t.Fatal(err)
	}
	if code := <-b.closeCodes; code != websocket.CloseGoingAway {
		t.Errorf("backend close code = %d, want 1001", code)
	}
	if code := readClose(c); code != websocket.CloseGoingAway {
		t.Errorf("client close code = %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil) // never reads: never answers the close
	// The backend holds its end a moment before the handler counts the
	// tunnel; a Shutdown in between would close a tunnel that was never
	// counted, at once, which is not what this test is about.
	waitFor(t, "the tunnel to be counted", func() bool { return b.open() == 1 && p.h.ActiveTunnels() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.h.Shutdown(ctx)
	// The tunnel's reads time out at the deadline too, so it may end just
	// before Shutdown sees ctx expire: either way it waited for the
	// deadline, and no longer.
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown() = %v, want nil or context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("Shutdown() took %v with a 300ms deadline and a client that never answers", took)
	}
	if got := p.h.ActiveTunnels(); got != 0 {
		t.Errorf("ActiveTunnels() = %d after Shutdown, want 0", got)
	}
	// The client still got the close frame before the connection ended.
	if code := readClose(c); code != websocket.CloseGoingAway {
		t.Errorf("client close code = %d, want 1001", code)
	}
}

func TestShutdownPassesBackendClose(t *testing.T) {
	// A close that already passed is not sent twice: when the client has
	// sent its close, the backend gets no second one.
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil)
	raw := c.UnderlyingConn()
	cf := closeFrame(websocket.CloseNormalClosure, "", true)
	// Write the close to the backend without reading the answer.
	if _, err := raw.Write(cf); err != nil {
		t.Fatal(err)
	}
	if code := <-b.closeCodes; code != websocket.CloseNormalClosure {
		t.Errorf("backend close code = %d, want 1000 from the client", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = p.h.Shutdown(ctx)
	select {
	case code := <-b.closeCodes:
		t.Errorf("backend saw a second close (%d)", code)
	default:
	}
	var _ net.Conn = raw
}

func TestShutdownSpreadsTheCloses(t *testing.T) {
	b := newTestBackend(t, "b")
	const n, spread = 12, 600 * time.Millisecond
	p := startProxy(t, Options{Limits: Limits{CloseSpread: spread}}, backendSpec{addr: b.addr})
	arrivals := make(chan time.Time, n)
	var wg sync.WaitGroup
	for range n {
		c, _ := p.dial(t, "/ws", nil)
		wg.Go(func() {
			if code := readClose(c); code != websocket.CloseGoingAway {
				t.Errorf("client got close %d, want 1001", code)
			}
			arrivals <- time.Now()
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	wg.Wait()
	close(arrivals)
	var got []time.Duration
	for at := range arrivals {
		got = append(got, at.Sub(start))
	}
	slices.Sort(got)
	t.Logf("1001 arrivals over %v: first %v, median %v, last %v", spread, got[0].Round(time.Millisecond), got[n/2].Round(time.Millisecond), got[n-1].Round(time.Millisecond))
	if first, last := got[0], got[n-1]; first > spread/4 || last < spread*2/3 || last > spread+time.Second {
		t.Errorf("closes arrived from %v to %v; want them spread over the %v window", first, last, spread)
	}
}
