package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frameLog is a scripted backend that echoes complete messages and
// records every frame it receives (opcode and payload length), and the
// code of the first close frame.
type frameLog struct {
	*scriptedBackend
	mu     sync.Mutex
	frames []string // "op=2 len=100"
	closes chan int
}

func newFrameLog(t *testing.T) *frameLog {
	fl := &frameLog{closes: make(chan int, 10)}
	fl.scriptedBackend = newScriptedBackend(t, func(c net.Conn, br *bufio.Reader) {
		var msg []byte
		var msgOp byte
		for {
			op, fin, payload, err := readFrameFin(br)
			if err != nil {
				fl.closes <- -1
				return
			}
			fl.mu.Lock()
			fl.frames = append(fl.frames, fmt.Sprintf("op=%d len=%d", op, len(payload)))
			fl.mu.Unlock()
			switch {
			case op == opClose:
				code := closeNoStatus
				if len(payload) >= 2 {
					code = int(binary.BigEndian.Uint16(payload))
				}
				fl.closes <- code
				_, _ = c.Write(serverFrame(opClose, payload[:min(2, len(payload))]))
				return
			case op >= 0x8:
				continue // ping, pong: not echoed
			case op != 0:
				msgOp, msg = op, payload
			default:
				msg = append(msg, payload...)
			}
			if fin {
				if _, err := c.Write(serverFrame(msgOp, msg)); err != nil {
					return
				}
				msg = nil
			}
		}
	})
	return fl
}

func (fl *frameLog) got() []string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return append([]string(nil), fl.frames...)
}

func TestMessageOverTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		// writeBuf is the client's write buffer: gorilla sends a message
		// larger than it in fragments of that size.
		writeBuf int
		// want is what the backend receives before its close frame: the
		// message of 1000 bytes, then what may pass of the one of 1001.
		want []string
	}{
		{"one frame", 4096, []string{"op=2 len=1000"}},
		// Fragments of 256: the fourth takes the message past 1000 and
		// never reaches the backend.
		{"fragments", 256, []string{"op=2 len=256", "op=0 len=256", "op=0 len=256", "op=0 len=232",
			"op=2 len=256", "op=0 len=256", "op=0 len=256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := newFrameLog(t)
			obs := &recordingObserver{}
			p := startProxy(t, Options{Limits: Limits{MaxMessageBytes: 1000}, Observer: obs}, backendSpec{addr: fl.addr})
			d := p.dialer()
			d.WriteBufferSize = tc.writeBuf
			c, _, err := d.Dial(p.url("/ws"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Exactly at the limit passes.
			if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, msg, err := c.ReadMessage(); err != nil || len(msg) != 1000 {
				t.Fatalf("echo of 1000 bytes = %d bytes, %v", len(msg), err)
			}
			if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 1001)); err != nil {
				t.Fatal(err)
			}
			if code := readClose(c); code != CloseMessageTooBig {
				t.Errorf("client got close code %d, want %d", code, CloseMessageTooBig)
			}
			select {
			case code := <-fl.closes:
				if code != CloseGoingAway {
					t.Errorf("backend got close code %d, want %d", code, CloseGoingAway)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend got no close")
			}
			got := fl.got()
			if len(got) < 1 || fmt.Sprint(got[:len(got)-1]) != fmt.Sprint(tc.want) {
				t.Errorf("backend received %v before its close, want %v", got, tc.want)
			}
			waitFor(t, "the tunnel event", func() bool { return len(obs.tunnelEvents()) == 1 })
			ev := obs.tunnelEvents()[0]
			if ev.ClosedBy != ClosedByProxy || ev.CloseCode != CloseMessageTooBig || ev.Reason != ReasonMaxMessageBytes {
				t.Errorf("tunnel event %+v, want closed by proxy, 1009, max_message_bytes", ev)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if len(obs.refusals) != 1 || obs.refusals[0].Reason != RefusedMaxMessageBytes {
				t.Errorf("refusals = %+v, want one max_message_bytes", obs.refusals)
			}
		})
	}
}

// dialFrom opens a WebSocket through p from the loopback address src.
func (p *testProxy) dialFrom(src string) (*websocket.Conn, *http.Response, error) {
	d := p.dialer()
	d.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext
	return d.Dial(p.url("/ws"), nil)
}

func TestMaxConnectionsPerIP(t *testing.T) {
	b := newTestBackend(t, "b")
	obs := &recordingObserver{}
	p := startProxy(t, Options{Limits: Limits{MaxConnectionsPerIP: 2}, Observer: obs}, backendSpec{addr: b.addr})
	var held []*websocket.Conn
	for range 2 {
		c, _, err := p.dialFrom("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	_, resp, err := p.dialFrom("127.0.0.1")
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third connection from one address = %v, %v; want 429 with Retry-After", resp, err)
	}
	// Another address is not affected.
	other, _, err := p.dialFrom("127.0.0.2")
	if err != nil {
		t.Fatalf("a connection from another address: %v", err)
	}
	other.Close()
	// A closed connection gives its place back.
	held[0].Close()
	waitFor(t, "the place to be given back", func() bool {
		c, _, err := p.dialFrom("127.0.0.1")
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	held[1].Close()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.refusals) == 0 || obs.refusals[0].Reason != RefusedMaxConnectionsPerIP {
		t.Errorf("refusals = %+v, want max_connections_per_ip", obs.refusals)
	}
}

func TestHandshakeRatePerIP(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{Limits: Limits{HandshakeRatePerIP: 2, HandshakeBurst: 3}}, backendSpec{addr: b.addr})
	refusedAt := -1
	for i := range 6 {
		c, resp, err := p.dialFrom("127.0.0.3")
		if err == nil {
			c.Close()
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("upgrade %d: %v, %v; want 101 or 429", i, resp, err)
		}
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || secs < 1 || secs > 2 {
			t.Errorf("Retry-After = %q, want 1 or 2 seconds", resp.Header.Get("Retry-After"))
		}
		refusedAt = i
		break
	}
	if refusedAt < 3 {
		t.Fatalf("first refusal at upgrade %d, want after the burst of 3", refusedAt)
	}
	// The bucket refills at 2 a second.
	waitFor(t, "the bucket to refill", func() bool {
		c, _, err := p.dialFrom("127.0.0.3")
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string
		ok   bool
	}{
		{"192.0.2.7:1234", "192.0.2.7/32", true},
		{"[::ffff:192.0.2.7]:1234", "192.0.2.7/32", true},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64", true},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64", true},
		{"[fe80::1%eth0]:80", "fe80::/64", true},
		{"@", "", false},
		{"", "", false},
	} {
		got, ok := clientKey(tc.addr)
		if ok != tc.ok || (ok && got.String() != tc.want) {
			t.Errorf("clientKey(%q) = %v, %v; want %s, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
}

// A scan of many addresses must not grow the per-address state without
// bound, and idle addresses are forgotten.
func TestPerIPIsBounded(t *testing.T) {
	var p perIP
	l := &Limits{MaxConnectionsPerIP: 10, HandshakeRatePerIP: 1, HandshakeBurst: 1}
	now := time.Now()
	for i := range maxTrackedIPs + 50_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		key, _ := a.Prefix(32)
		st, reason, _ := p.admit(key, l, now)
		if reason != "" {
			t.Fatalf("first upgrade from %v refused: %s", a, reason)
		}
		p.release(st, now)
	}
	if n := p.tracked(); n > maxTrackedIPs {
		t.Errorf("tracked addresses = %d after a scan, want at most %d", n, maxTrackedIPs)
	}
	// An address with an open connection is never the one forgotten.
	busy, _ := netip.MustParseAddr("192.0.2.1").Prefix(32)
	if _, reason, _ := p.admit(busy, l, now); reason != "" {
		t.Fatal(reason)
	}
	p.expire(now.Add(2*perIPIdle), perIPIdle)
	if n := p.tracked(); n != 1 {
		t.Errorf("tracked addresses after expiry = %d, want 1 (the one with a connection)", n)
	}
}

// fastSweep makes the Handler's background sweep (parking, pings,
// timeouts) run every 20 ms.
func fastSweep(h *Handler) {
	h.sweepEvery = 20 * time.Millisecond
	h.parkAfter = 40 * time.Millisecond
}

func TestPingsKeepLiveClientsAndCutDeadOnes(t *testing.T) {
	fl := newFrameLog(t)
	obs := &recordingObserver{}
	const interval, timeout = 150 * time.Millisecond, 150 * time.Millisecond
	p := startProxyWith(t, Options{Limits: Limits{PingInterval: interval, PingTimeout: timeout}, Observer: obs}, fastSweep, backendSpec{addr: fl.addr})

	// A live client: gorilla answers pings while it reads.
	live, _ := p.dial(t, "/ws", nil)
	var pings int
	live.SetPingHandler(func(data string) error {
		pings++
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// A dead one: it never reads nor writes after its handshake.
	dead, _, err := p.dialer().Dial(p.url("/dead"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()

	select {
	case code := <-fl.closes:
		if code != CloseGoingAway {
			t.Errorf("backend of the dead client got close %d, want 1001", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dead client's tunnel was not cut")
	}
	waitFor(t, "the dead tunnel's event", func() bool { return len(obs.tunnelEvents()) == 1 })
	if ev := obs.tunnelEvents()[0]; ev.Path != "/dead" || ev.Reason != ReasonPingTimeout || ev.ClosedBy != ClosedByProxy {
		t.Errorf("tunnel event %+v, want /dead closed by proxy for ping_timeout", ev)
	}
	// The live one stays, several ping intervals on.
	time.Sleep(4 * (interval + timeout))
	if err := live.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatalf("the live client was cut: %v", err)
	}
	if n := p.h.ActiveTunnels(); n != 1 {
		t.Errorf("ActiveTunnels() = %d, want 1 (the live client)", n)
	}
	if pings < 2 {
		t.Errorf("the live client answered %d pings, want several", pings)
	}
}

func TestIdleTimeoutAndMaxLifetime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
		reason string
		// talk keeps the tunnel busy, which only the lifetime ignores.
		talk bool
	}{
		{"idle", Limits{IdleTimeout: 200 * time.Millisecond}, ReasonIdleTimeout, false},
		{"lifetime", Limits{MaxLifetime: 400 * time.Millisecond}, ReasonMaxLifetime, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBackend(t, "b")
			obs := &recordingObserver{}
			p := startProxyWith(t, Options{Limits: tc.limits, Observer: obs}, fastSweep, backendSpec{addr: b.addr})
			c, _ := p.dial(t, "/ws", nil)
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.talk {
				go func() {
					for ctx.Err() == nil {
						if c.WriteMessage(websocket.TextMessage, []byte("busy")) != nil {
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			if code := readClose(c); code != CloseGoingAway {
				t.Errorf("client got close %d, want 1001", code)
			}
			took := time.Since(start)
			select {
			case code := <-b.closeCodes:
				if code != CloseGoingAway {
					t.Errorf("backend got close %d, want 1001", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend got no close")
			}
			waitFor(t, "the tunnel event", func() bool { return len(obs.tunnelEvents()) == 1 })
			if ev := obs.tunnelEvents()[0]; ev.Reason != tc.reason {
				t.Errorf("tunnel event reason %q, want %q", ev.Reason, tc.reason)
			}
			t.Logf("closed after %v", took.Round(time.Millisecond))
			if tc.limits.MaxLifetime > 0 && (took < tc.limits.MaxLifetime*9/10 || took > tc.limits.MaxLifetime*11/10+200*time.Millisecond) {
				t.Errorf("closed after %v, want within 10%% of the lifetime %v (plus a sweep)", took, tc.limits.MaxLifetime)
			}
		})
	}
}

// A client that talks has answered: under a message size limit too, whose
// path relays the client's bytes through the limit gate. A client that
// sends a message every 20 ms but never reads (so it never answers a ping
// itself) must not be cut for ping_timeout.
func TestTalkingClientUnderSizeLimitIsNotCut(t *testing.T) {
	fl := newFrameLog(t)
	obs := &recordingObserver{}
	const interval, timeout = 100 * time.Millisecond, 100 * time.Millisecond
	limits := Limits{PingInterval: interval, PingTimeout: timeout, MaxMessageBytes: 1 << 20}
	p := startProxyWith(t, Options{Limits: limits, Observer: obs}, fastSweep, backendSpec{addr: fl.addr})
	c, _ := p.dial(t, "/ws", nil)
	deadline := time.Now().Add(6 * (interval + timeout))
	for time.Now().Before(deadline) {
		if err := c.WriteMessage(websocket.TextMessage, []byte("busy")); err != nil {
			t.Fatalf("the talking client was cut: %v (events %+v)", err, obs.tunnelEvents())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.h.ActiveTunnels(); n != 1 {
		t.Errorf("ActiveTunnels() = %d, want 1 (events %+v)", n, obs.tunnelEvents())
	}
}
