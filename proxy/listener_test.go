package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// preambleLayer is an accept layer like a PROXY protocol reader: it reads
// a line "HELLO addr:port\r\n" before TLS and makes addr the client's
// address; a line "NO\r\n" is refused.
func preambleLayer(c ClientConn) error {
	const max = 64
	var line []byte
	for n := 2; line == nil; n++ {
		b, err := c.Peek(n)
		if err != nil {
			return err
		}
		if bytes.HasSuffix(b, []byte("\r\n")) {
			line = b
		} else if n == max {
			return errors.New("preamble too long")
		}
	}
	c.Discard(len(line))
	text := strings.TrimSpace(string(line))
	if text == "NO" {
		return &Refusal{Reason: "test_refusal"}
	}
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(text, "HELLO "))
	if err != nil {
		return err
	}
	c.SetRemoteAddr(net.TCPAddrFromAddrPort(ap))
	return nil
}

// preambleDialer is a WebSocket dialer that sends line before the TLS
// handshake.
func (p *testProxy) preambleDialer(line string) *websocket.Dialer {
	d := p.dialer()
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, line); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return d
}

func TestAcceptLayerSetsClientAddressAndKeepsTheFastPath(t *testing.T) {
	b := newTestBackend(t, "b")
	obs := &recordingObserver{}
	p := startProxyLayers(t, Options{Observer: obs}, fastParking, []AcceptLayer{preambleLayer}, backendSpec{addr: b.addr})

	c, _, err := p.preambleDialer("HELLO 203.0.113.7:4567\r\n").Dial(p.url("/ws"), nil)
	if err != nil {
		t.Fatalf("Dial() with a preamble = %v", err)
	}
	defer c.Close()
	if got := b.header().Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For = %q, want the layer's address 203.0.113.7", got)
	}
	// The record-aware fast path survives the layer: the idle tunnel parks.
	if parkingSupported() {
		waitFor(t, "both directions to park", func() bool { return parked(p) == 2 })
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("after parking")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "after parking" {
		t.Fatalf("echo after parking = %q, %v", msg, err)
	}
	c.Close()
	waitFor(t, "the tunnel event", func() bool { return len(obs.tunnelEvents()) == 1 })
	if got := obs.tunnelEvents()[0].RemoteAddr; got != "203.0.113.7:4567" {
		t.Errorf("TunnelEvent.RemoteAddr = %q, want 203.0.113.7:4567", got)
	}
}

func TestAcceptLayerRefuses(t *testing.T) {
	b := newTestBackend(t, "b")
	obs := &recordingObserver{}
	p := startProxyLayers(t, Options{Observer: obs}, nil, []AcceptLayer{preambleLayer}, backendSpec{addr: b.addr})
	if _, _, err := p.preambleDialer("NO\r\n").Dial(p.url("/ws"), nil); err == nil {
		t.Fatal("Dial() after a refused preamble succeeded")
	}
	waitFor(t, "the refusal event", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.refusals) == 1
	})
	if r := obs.refusals[0]; r.Reason != "test_refusal" || r.TLS {
		t.Errorf("RefusalEvent = %+v, want reason test_refusal, not TLS", r)
	}
	if n := b.open(); n != 0 {
		t.Errorf("backend holds %d connections after a refusal, want 0", n)
	}
}

func TestHandshakeFailuresAreCounted(t *testing.T) {
	b := newTestBackend(t, "b")
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, addr string)
		want RefusalReason
	}{
		{"plain HTTP on the TLS port", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			_, _ = io.Copy(io.Discard, c) // the proxy closes it
		}, HandshakeNotTLS},
		{"silent client", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // until the handshake timeout closes it
		}, HandshakeTimeout},
		{"client gives up mid-handshake", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			// The first bytes of a ClientHello record, then nothing more.
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			c.Close()
		}, HandshakeClosed},
		{"client rejects the certificate", func(t *testing.T, addr string) {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost"}) // not our roots
			if err == nil {
				c.Close()
				t.Fatal("handshake with an unknown CA succeeded")
			}
		}, HandshakeClientAlert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			timeout := 5 * time.Second // room for a full handshake under -race
			if tc.want == HandshakeTimeout {
				timeout = 300 * time.Millisecond
			}
			p := startProxy(t, Options{Observer: obs, HeaderTimeout: timeout}, backendSpec{addr: b.addr})
			start := time.Now()
			tc.do(t, p.addr)
			waitFor(t, "the refusal event", func() bool {
				obs.mu.Lock()
				defer obs.mu.Unlock()
				return len(obs.refusals) == 1
			})
			r := obs.refusals[0]
			if !r.TLS || r.Reason != tc.want {
				t.Errorf("RefusalEvent = %+v, want a TLS refusal with reason %s", r, tc.want)
			}
			if tc.want == HandshakeTimeout && time.Since(start) > 3*time.Second {
				t.Errorf("the silent client was closed after %v, want about 300ms", time.Since(start))
			}
		})
	}
}

// A handshake in progress must not hold up the listener's end.
func TestListenerCloseEndsHandshakesInProgress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, ListenerOptions{TLS: &tls.Config{}, HandshakeTimeout: time.Minute})
	done := make(chan error)
	go func() { done <- l.Run(context.Background()) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the handshake to start", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.inFlight) == 1
	})
	start := time.Now()
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run() has not returned 5s after Close with a handshake in progress")
	}
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Error("the connection in its handshake is still open after Close")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close + Run took %v", d)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept() after Close = %v, want net.ErrClosed", err)
	}
}
