package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http lingers up to 500ms after answering a request it will
		// not read further (431, 400) to avoid a TCP reset; Server.Close
		// does not wait for it.
		goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

func TestEcho(t *testing.T) {
	b := newTestBackend(t, "b1")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, id := p.dial(t, "/ws", nil)
	if id != "b1" {
		t.Errorf("X-Backend-Id = %q, want b1", id)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, tc := range []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 0xff}},
		{"1MiB", websocket.BinaryMessage, big},
		{"empty", websocket.TextMessage, []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.WriteMessage(tc.typ, tc.msg); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.typ || !bytes.Equal(got, tc.msg) {
				t.Errorf("echo = type %d, %d bytes; want type %d, %d bytes", typ, len(got), tc.typ, len(tc.msg))
			}
		})
	}
}

// TestEchoBurst streams messages of many sizes without waiting for their
// echoes, so that TLS records arrive several to a read, split across reads
// and larger than the relay's buffers, in both directions at once.
func TestEchoBurst(t *testing.T) {
	b := newTestBackend(t, "b1")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil)
	sizes := []int{1, 100, 5000, 16384, 16385, 40000, 70000, 3}
	const count = 240
	msg := func(i int) []byte {
		m := make([]byte, sizes[i%len(sizes)])
		for j := range m {
			m[j] = byte(i + j)
		}
		return m
	}
	werr := make(chan error, 1)
	go func() {
		for i := range count {
			if err := c.WriteMessage(websocket.BinaryMessage, msg(i)); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range count {
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if want := msg(i); !bytes.Equal(got, want) {
			t.Fatalf("echo %d: %d bytes, want the %d sent", i, len(got), len(want))
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

func TestEchoOverUnixSocket(t *testing.T) {
	b := newUnixTestBackend(t, "unix1")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	c, id := p.dial(t, "/ws", nil)
	if id != "unix1" {
		t.Errorf("X-Backend-Id = %q, want unix1", id)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("over unix")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "over unix" {
		t.Errorf("ReadMessage() = %q, %v; want %q", got, err, "over unix")
	}
	resp, err := p.httpClient().Get("https://" + p.addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "plain unix1 /plain" {
		t.Errorf("plain body = %q, want %q", body, "plain unix1 /plain")
	}
}

func TestLeastConnections(t *testing.T) {
	bs := []*testBackend{newTestBackend(t, "a"), newTestBackend(t, "b"), newTestBackend(t, "c")}
	p := startProxy(t, Options{}, backendSpec{addr: bs[0].addr}, backendSpec{addr: bs[1].addr}, backendSpec{addr: bs[2].addr})

	byID := map[string][]*websocket.Conn{}
	for range 30 {
		c, id := p.dial(t, "/ws", nil)
		byID[id] = append(byID[id], c)
	}
	for _, id := range []string{"a", "b", "c"} {
		if got := len(byID[id]); got != 10 {
			t.Errorf("backend %s holds %d of 30 connections, want 10", id, got)
		}
	}
	// Close the ten on b; the next ten all land on b, where round-robin
	// would spread them.
	for _, c := range byID["b"] {
		c.Close()
	}
	id := registry.ID{Pool: "app", Address: bs[1].addr}
	waitFor(t, "b's connections to be released", func() bool {
		active, _ := p.bal.Counts(id)
		return active == 0
	})
	for i := range 10 {
		if _, got := p.dial(t, "/ws", nil); got != "b" {
			t.Fatalf("connection %d after emptying b went to %s, want b", i, got)
		}
	}
}

func TestWeights(t *testing.T) {
	heavy, light := newTestBackend(t, "heavy"), newTestBackend(t, "light")
	p := startProxy(t, Options{}, backendSpec{addr: heavy.addr, weight: 2}, backendSpec{addr: light.addr, weight: 1})
	got := map[string]int{}
	for range 30 {
		_, id := p.dial(t, "/ws", nil)
		got[id]++
	}
	if got["heavy"] != 20 || got["light"] != 10 {
		t.Errorf("connections with weights 2:1 = %v, want heavy 20, light 10", got)
	}
}

func TestRetryRefusingBackend(t *testing.T) {
	good := newTestBackend(t, "good")
	dead := refusingAddr(t)
	p := startProxy(t, Options{}, backendSpec{addr: dead}, backendSpec{addr: good.addr})
	for i := range 20 {
		if _, id := p.dial(t, "/ws", nil); id != "good" {
			t.Fatalf("connection %d went to %q, want good", i, id)
		}
	}
}

func TestRetryBackendAnswering503(t *testing.T) {
	closing, good := newTestBackend(t, "closing"), newTestBackend(t, "good")
	closing.setStatus(http.StatusServiceUnavailable)
	p := startProxy(t, Options{}, backendSpec{addr: closing.addr}, backendSpec{addr: good.addr})
	for i := range 10 {
		if _, id := p.dial(t, "/ws", nil); id != "good" {
			t.Fatalf("connection %d went to %q, want good", i, id)
		}
	}
}

func TestBackendErrorIsRelayed(t *testing.T) {
	b := newTestBackend(t, "b")
	b.setStatus(http.StatusForbidden)
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	_, resp, err := p.dialer().Dial(p.url("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Dial() = %v, status %v; want the backend's 403", err, resp)
	}
}

func TestNoBackend(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends []backendSpec
	}{
		{"empty pool", nil},
		{"all refuse", []backendSpec{{addr: refusingAddr(t)}, {addr: refusingAddr(t)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, Options{}, tc.backends...)
			_, resp, err := p.dialer().Dial(p.url("/ws"), nil)
			if err == nil {
				t.Fatal("Dial() succeeded with no backend")
			}
			if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("Dial() response = %v, want 503", resp)
			}
			if got := resp.Header.Get("Retry-After"); got == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{MaxHeaderBytes: 4096}, backendSpec{addr: b.addr})
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	for _, tc := range []struct {
		name string
		req  string
		want int
	}{
		{"no key", "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		{"short key", "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n", 400},
		{"wrong version", "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", 400},
		{"POST upgrade", "POST /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\nContent-Length: 0\r\n\r\n", 400},
		{"no Connection upgrade", "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n", 400},
		{"headers over limit", "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 4200) + "\r\n\r\n", 431},
		{"headers far over limit", "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", 431},
		{"garbage request line", "HELLO\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := p.rawRequest(t, tc.req)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if n := b.upgrades; n != 0 {
		t.Errorf("backend saw %d upgrades from bad requests, want 0", n)
	}
}

func TestHeaderTimeout(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{HeaderTimeout: 200 * time.Millisecond}, backendSpec{addr: b.addr})
	for _, tc := range []struct {
		name    string
		partial string
		useTLS  bool
	}{
		{"slow headers", "GET /ws HTTP/1.1\r\nHost: local", true},
		{"stalled handshake", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conn net.Conn
			var err error
			if tc.useTLS {
				conn, err = tls.Dial("tcp", p.addr, &tls.Config{RootCAs: p.roots, ServerName: "localhost"})
			} else {
				conn, err = net.Dial("tcp", p.addr) // never sends a ClientHello
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.partial); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			_, err = io.ReadAll(conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %v; want it closed after the 200ms header timeout", time.Since(start))
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	hdr := http.Header{
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Proto": {"gopher"},
		"Keep-Alive":        {"timeout=5"},
		"X-Custom":          {"kept"},
	}
	d := p.dialer()
	d.Subprotocols = []string{"chat.v1"}
	c, resp, err := d.Dial(p.url("/ws?room=1"), hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Subprotocol(); got != "chat.v1" {
		t.Errorf("negotiated subprotocol = %q, want chat.v1", got)
	}
	if got := resp.Header.Get("X-Backend-Id"); got != "b" {
		t.Errorf("X-Backend-Id = %q, want b", got)
	}
	got := b.header()
	for _, tc := range []struct{ key, want string }{
		{"X-Forwarded-For", "203.0.113.7, 127.0.0.1"},
		{"X-Forwarded-Proto", "https"},
		{"X-Forwarded-Host", p.addr},
		{"Host", p.addr},
		{"X-Custom", "kept"},
		{"Keep-Alive", ""},
	} {
		if v := strings.Join(got.Values(tc.key), ","); v != tc.want {
			t.Errorf("backend saw %s = %q, want %q", tc.key, v, tc.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	a, bb, c := newTestBackend(t, "a"), newTestBackend(t, "b"), newTestBackend(t, "c")
	p := startProxy(t, Options{Routes: []Route{
		{Pool: "app"},
		{Host: "chat.localhost", PathPrefix: "/", Pool: "chat"},
		{PathPrefix: "/api", Pool: "api"},
	}}, backendSpec{addr: a.addr})
	if _, err := p.store.Apply([]registry.PoolSpec{
		{Name: "app", Backends: []registry.BackendSpec{{Address: a.addr, Weight: 1}}},
		{Name: "chat", Backends: []registry.BackendSpec{{Address: bb.addr, Weight: 1}}},
		{Name: "api", Backends: []registry.BackendSpec{{Address: c.addr, Weight: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pools to be built", func() bool {
		var l balancer.Lease
		defer l.Release()
		return p.bal.Acquire("api", nil, &l) == nil
	})
	for _, tc := range []struct{ host, path, want string }{
		{"localhost", "/ws", "a"},
		{"localhost", "/api/ws", "c"},
		{"CHAT.localhost:443", "/api/ws", "b"},
		{"chat.localhost", "/ws", "b"},
	} {
		d := p.dialer()
		d.NetDial = func(string, string) (net.Conn, error) { return net.Dial("tcp", p.addr) }
		conn, resp, err := d.Dial("wss://"+tc.host+tc.path, nil)
		if err != nil {
			t.Errorf("Dial(%s%s) error = %v", tc.host, tc.path, err)
			continue
		}
		conn.Close()
		if got := resp.Header.Get("X-Backend-Id"); got != tc.want {
			t.Errorf("Dial(%s%s) went to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestAllowedOrigins(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{Routes: []Route{{Pool: "app", AllowedOrigins: []string{"https://app.example.com"}}}}, backendSpec{addr: b.addr})
	if _, _, err := p.dialer().Dial(p.url("/ws"), http.Header{"Origin": {"https://app.example.com"}}); err != nil {
		t.Errorf("Dial(allowed origin) error = %v", err)
	}
	_, resp, err := p.dialer().Dial(p.url("/ws"), http.Header{"Origin": {"https://evil.example.com"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("Dial(other origin) = %v, %v; want 403", err, resp)
	}
}

func TestPlainHTTP(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: refusingAddr(t)}, backendSpec{addr: b.addr})
	for range 5 {
		resp, err := p.httpClient().Get("https://" + p.addr + "/status")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "plain b /status" {
			t.Errorf("GET /status = %d %q, want 200 %q", resp.StatusCode, body, "plain b /status")
		}
	}
	if active, _ := p.bal.Counts(registry.ID{Pool: "app", Address: b.addr}); active != 0 {
		t.Errorf("active count after plain requests = %d, want 0", active)
	}
}

func TestCloseIsPropagated(t *testing.T) {
	b := newTestBackend(t, "b")
	// A short linger, set before any tunnel exists (tunnels read it).
	p := startProxyWith(t, Options{}, func(h *Handler) { h.halfCloseLinger = 50 * time.Millisecond }, backendSpec{addr: b.addr})
	id := registry.ID{Pool: "app", Address: b.addr}

	t.Run("client closes", func(t *testing.T) {
		c, _ := p.dial(t, "/ws", nil)
		waitFor(t, "backend to hold the connection", func() bool { return b.open() == 1 })
		c.Close() // TCP close without a close frame
		waitFor(t, "backend side to be closed", func() bool { return b.open() == 0 })
		waitFor(t, "lease to be released", func() bool { a, _ := p.bal.Counts(id); return a == 0 })
		waitFor(t, "tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	})
	t.Run("backend closes", func(t *testing.T) {
		c, _ := p.dial(t, "/ws", nil)
		waitFor(t, "backend to hold the connection", func() bool { return b.open() == 1 })
		b.dropAll()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("client not closed after the backend closed")
		}
		c.Close() // as a client does on seeing the end
		waitFor(t, "lease to be released", func() bool { a, _ := p.bal.Counts(id); return a == 0 })
	})
	t.Run("half-closed client is closed after the linger", func(t *testing.T) {
		c, _ := p.dial(t, "/ws", nil)
		waitFor(t, "backend to hold the connection", func() bool { return b.open() == 1 })
		b.dropAll()
		_, _, _ = c.ReadMessage() // sees the end, but never closes
		waitFor(t, "lease to be released", func() bool { a, _ := p.bal.Counts(id); return a == 0 })
		waitFor(t, "tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	})
	t.Run("close handshake passes", func(t *testing.T) {
		c, _ := p.dial(t, "/ws", nil)
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Errorf("ReadMessage() after close = %v, want close 1000 echoed by the backend", err)
		}
	})
}

func TestMaxConnections(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{Limits: Limits{MaxConnections: 3}}, backendSpec{addr: b.addr})
	var held []*websocket.Conn
	for range 3 {
		c, _ := p.dial(t, "/ws", nil)
		held = append(held, c)
	}
	_, resp, err := p.dialer().Dial(p.url("/ws"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("Dial() over the limit = %v, %v; want 503 with Retry-After", resp, err)
	}
	// A closed connection frees its place.
	held[0].Close()
	waitFor(t, "the place to be freed", func() bool { return p.h.inUse.Load() == 2 })
	c, _ := p.dial(t, "/ws", nil)
	if err := c.WriteMessage(websocket.TextMessage, []byte("fits")); err != nil {
		t.Fatal(err)
	}
	// Failed upgrades give their place back too.
	b.setStatus(http.StatusServiceUnavailable)
	held[1].Close()
	waitFor(t, "the place to be freed", func() bool { return p.h.inUse.Load() == 2 })
	for range 5 {
		if _, resp, _ := p.dialer().Dial(p.url("/ws"), nil); resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("Dial() with the backend refusing = %v, want 503", resp)
		}
	}
	if got := p.h.inUse.Load(); got != 2 {
		t.Errorf("connections counted after failed upgrades = %d, want 2", got)
	}
}

func TestPipelinedFramesReachTheBackend(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	conn, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: p.roots, ServerName: "localhost", DynamicRecordSizingDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The request and a masked text frame in one write and one TLS record
	// without waiting for the 101; the frame is bigger than net/http's
	// 4 KiB read buffer, so part of it stays decrypted inside crypto/tls.
	msg := frame(true, 1, 12000, true)
	req := "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), msg...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %v, %v; want 101", resp, err)
	}
	// The echo of the pipelined frame comes back without the client
	// sending anything more.
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatalf("no echo of the pipelined frame: %v", err)
	}
	if got := int(hdr[2])<<8 | int(hdr[3]); hdr[0] != 0x81 || got != 12000 {
		t.Errorf("echo header = % x, want a 12000-byte text frame", hdr)
	}
}
