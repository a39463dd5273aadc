package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/registry"
)

// A client that stops reading while its backend keeps sending must never
// pin its tunnel, its lease or the proxy's shutdown.

// floodBackend answers /flood by sending 16 KiB messages as fast as the
// proxy takes them, and anything else by echoing. Either way it reads the
// proxy's frames and reports the code of the first close frame it
// receives on closes; it answers a close frame with one and hangs up.
type floodBackend struct {
	*scriptedBackend
	closes  chan int      // close codes received, -1 for a connection that ended without one
	flooded atomic.Int64  // bytes the flooding connections have written
	stuck   chan struct{} // closed once a flood write has waited 200 ms
	stuckAt atomic.Pointer[struct{}]
}

func newFloodBackend(t *testing.T) *floodBackend {
	fb := &floodBackend{closes: make(chan int, 100), stuck: make(chan struct{})}
	fb.scriptedBackend = newScriptedBackendReq(t, func(c net.Conn, br *bufio.Reader, req *http.Request) {
		done, flooding := make(chan struct{}), make(chan struct{})
		if req.URL.Path == "/flood" {
			go func() {
				defer close(flooding)
				fb.flood(c, done)
			}()
		} else {
			close(flooding)
		}
		stop := sync.OnceFunc(func() {
			close(done)
			<-flooding
		})
		defer stop()
		for {
			op, payload, err := readFrame(br)
			if err != nil {
				fb.closes <- -1
				return
			}
			if op == opClose {
				code := closeNoStatus
				if len(payload) >= 2 {
					code = int(binary.BigEndian.Uint16(payload))
				}
				fb.closes <- code
				stop() // the answer must not queue behind the flood
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.Write(serverFrame(opClose, payload[:min(2, len(payload))]))
				return
			}
			if req.URL.Path != "/flood" {
				if _, err := c.Write(serverFrame(op, payload)); err != nil {
					return
				}
			}
		}
	})
	return fb
}

// flood writes 16 KiB messages to c until a write fails or done closes.
// Writes and the script's close-frame answer share c: a write deadline
// keeps either from waiting long on the other.
func (fb *floodBackend) flood(c net.Conn, done <-chan struct{}) {
	msg := serverFrame(2, make([]byte, 16<<10))
	for {
		select {
		case <-done:
			return
		default:
		}
		_ = c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(msg)
		fb.flooded.Add(int64(n))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if fb.stuckAt.CompareAndSwap(nil, &struct{}{}) {
				close(fb.stuck)
			}
			continue
		}
		if err != nil {
			return
		}
	}
}

// stallClient opens /flood through p and never reads from it.
func stallClient(t *testing.T, p *testProxy) *websocket.Conn {
	t.Helper()
	c, _ := p.dial(t, "/flood", nil)
	return c
}

func TestStalledClientIsCutAfterWriteTimeout(t *testing.T) {
	fb := newFloodBackend(t)
	obs := &recordingObserver{}
	const writeTimeout = 300 * time.Millisecond
	p := startProxy(t, Options{Limits: Limits{WriteTimeout: writeTimeout}, Observer: obs}, backendSpec{addr: fb.addr})
	id := registry.ID{Pool: "app", Address: fb.addr}

	stallClient(t, p)
	select {
	case <-fb.stuck:
	case <-time.After(10 * time.Second):
		t.Fatalf("the flood never filled the client's buffers (%d bytes written)", fb.flooded.Load())
	}
	stalledAt := time.Now()

	// Meanwhile another tunnel works as ever.
	echo, _ := p.dial(t, "/echo", nil)
	if err := echo.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	_ = echo.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := echo.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("echo beside the stalled tunnel: ReadMessage() = %q, %v", msg, err)
	}

	select {
	case code := <-fb.closes:
		if code != CloseGoingAway {
			t.Errorf("flooding backend got close code %d, want %d", code, CloseGoingAway)
		}
		t.Logf("backend got its close %v after the flood stalled (write timeout %v)", time.Since(stalledAt).Round(time.Millisecond), writeTimeout)
	case <-time.After(writeTimeout + abandonGrace + 5*time.Second):
		t.Fatal("the stalled tunnel was never closed")
	}
	waitFor(t, "the stalled tunnel to end", func() bool { return p.h.ActiveTunnels() == 1 })
	if active, _ := p.bal.Counts(id); active != 1 {
		t.Errorf("backend's active count = %d after the stalled tunnel ended, want 1 (the echo)", active)
	}
	var ev *TunnelEvent
	for _, e := range obs.tunnelEvents() {
		if e.Path == "/flood" {
			ev = &e
		}
	}
	if ev == nil {
		t.Fatal("observer got no event for the stalled tunnel")
	}
	if ev.ClosedBy != ClosedByProxy || ev.CloseCode != CloseGoingAway {
		t.Errorf("stalled tunnel's event: closed_by %s, close_code %d; want proxy, 1001", ev.ClosedBy, ev.CloseCode)
	}
	if ev.BytesDown == 0 {
		t.Error("stalled tunnel's event counts no bytes down")
	}

	// The echo tunnel still works after the cut, and ends cleanly.
	if err := echo.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := echo.ReadMessage(); err != nil || string(msg) != "after" {
		t.Fatalf("echo after the cut: ReadMessage() = %q, %v", msg, err)
	}
}

// With no write timeout a stalled client keeps its tunnel; closing the
// proxy must still not wait for it, nor for a close_notify it cannot send.
func TestCloseDoesNotWaitForStalledClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(h *Handler)
	}{
		{"Close", func(h *Handler) { h.Close() }},
		{"Shutdown past its deadline", func(h *Handler) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_ = h.Shutdown(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFloodBackend(t)
			p := startProxy(t, Options{Limits: Limits{WriteTimeout: -1}}, backendSpec{addr: fb.addr})
			id := registry.ID{Pool: "app", Address: fb.addr}
			stallClient(t, p)
			echo, _ := p.dial(t, "/echo", nil)
			select {
			case <-fb.stuck:
			case <-time.After(10 * time.Second):
				t.Fatalf("the flood never filled the client's buffers (%d bytes written)", fb.flooded.Load())
			}
			done := make(chan struct{})
			start := time.Now()
			go func() {
				defer close(done)
				tc.stop(p.h)
			}()
			select {
			case <-done:
				t.Logf("%s returned after %v", tc.name, time.Since(start).Round(time.Millisecond))
			case <-time.After(2 * time.Second):
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Logf("%s", buf)
				t.Fatalf("%s has not returned after 2 s with a stalled client", tc.name)
			}
			if n := p.h.ActiveTunnels(); n != 0 {
				t.Errorf("ActiveTunnels() = %d after %s, want 0", n, tc.name)
			}
			if active, _ := p.bal.Counts(id); active != 0 {
				t.Errorf("backend's active count = %d, want 0", active)
			}
			_ = echo.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := echo.ReadMessage(); err == nil {
				t.Error("the echo tunnel still delivers messages after the proxy closed")
			}
		})
	}
}

// The other way round: a backend that stops reading while its client
// floods it gets cut the same way, and the client receives the 1001.
func TestStalledBackendIsCutAfterWriteTimeout(t *testing.T) {
	release := make(chan struct{})
	b := newScriptedBackend(t, func(c net.Conn, br *bufio.Reader) {
		<-release // never reads while the test runs
	})
	defer close(release)
	obs := &recordingObserver{}
	const writeTimeout = 300 * time.Millisecond
	p := startProxy(t, Options{Limits: Limits{WriteTimeout: writeTimeout}, Observer: obs}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/sink", nil)

	// The client writes until the proxy's close stops it, reading for the
	// close frame at the same time (gorilla: one writer, one reader).
	var written atomic.Int64
	go func() {
		msg := make([]byte, 16<<10)
		for {
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				return
			}
			written.Add(int64(len(msg)))
		}
	}()
	start := time.Now()
	code := readClose(c)
	if code != CloseGoingAway {
		t.Fatalf("flooding client got close code %d, want %d", code, CloseGoingAway)
	}
	t.Logf("client got 1001 after %v, %d bytes written", time.Since(start).Round(time.Millisecond), written.Load())
	waitFor(t, "the stalled tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	evs := obs.tunnelEvents()
	if len(evs) != 1 || evs[0].ClosedBy != ClosedByProxy || evs[0].CloseCode != CloseGoingAway {
		t.Errorf("tunnel events = %+v, want one closed by proxy with 1001", evs)
	}
	if active, _ := p.bal.Counts(registry.ID{Pool: "app", Address: b.addr}); active != 0 {
		t.Errorf("backend's active count = %d, want 0", active)
	}
}
