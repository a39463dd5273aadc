package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/proctest"
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

// headerDialer is a WebSocket dialer whose connections come from the
// loopback address from ("" for any) and send header before the TLS
// handshake. With asked (the lengths an accept layer's Peek calls ask for,
// see peekSpy) the header goes a byte at a time, each once the layer has
// asked for more than it has been sent.
func (p *testProxy) headerDialer(from string, header []byte, asked <-chan int) *websocket.Dialer {
	d := p.dialer()
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{}
		if from != "" {
			nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := sendHeader(c, header, asked); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return d
}

// sendHeader writes header to c: at once, or with asked a byte at a time
// (see headerDialer).
func sendHeader(c net.Conn, header []byte, asked <-chan int) error {
	if asked == nil {
		_, err := c.Write(header)
		return err
	}
	wanted := 0
	for i := range header {
		for wanted <= i {
			select {
			case n := <-asked:
				wanted = max(wanted, n)
			case <-time.After(5 * time.Second):
				return fmt.Errorf("the accept layer asked for no more than %d bytes in 5s", wanted)
			}
		}
		if _, err := c.Write(header[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// peekSpy is a ClientConn that reports the length of each Peek on asked.
type peekSpy struct {
	ClientConn
	asked chan<- int
}

func (s peekSpy) Peek(n int) ([]byte, error) {
	select {
	case s.asked <- n:
	default:
	}
	return s.ClientConn.Peek(n)
}

// spied returns layer with its connections' Peek calls reported on asked.
func spied(layer AcceptLayer, asked chan<- int) AcceptLayer {
	return func(c ClientConn) error { return layer(peekSpy{c, asked}) }
}

// parksAndEchoes checks that the one tunnel of p, c's, parks when idle
// (where tunnels park: the record-aware conn survived the accept layers),
// and echoes after that.
func parksAndEchoes(t *testing.T, p *testProxy, c *websocket.Conn) {
	t.Helper()
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
}

func TestAcceptLayerSetsClientAddressAndKeepsTheFastPath(t *testing.T) {
	b := newTestBackend(t, "b")
	obs := &recordingObserver{}
	p := startProxyLayers(t, Options{Observer: obs}, fastParking, []AcceptLayer{preambleLayer}, backendSpec{addr: b.addr})

	c, _, err := p.headerDialer("", []byte("HELLO 203.0.113.7:4567\r\n"), nil).Dial(p.url("/ws"), nil)
	if err != nil {
		t.Fatalf("Dial() with a preamble = %v", err)
	}
	defer c.Close()
	if got := b.header().Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For = %q, want the layer's address 203.0.113.7", got)
	}
	parksAndEchoes(t, p, c)
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
	if _, _, err := p.headerDialer("", []byte("NO\r\n"), nil).Dial(p.url("/ws"), nil); err == nil {
		t.Fatal("Dial() after a refused preamble succeeded")
	}
	oneRefusal(t, obs, "test_refusal", false)
	if n := b.open(); n != 0 {
		t.Errorf("backend holds %d connections after a refusal, want 0", n)
	}
}

// oneRefusal waits for the refusal event obs is to see, and checks it.
func oneRefusal(t *testing.T, obs *recordingObserver, reason RefusalReason, tls bool) {
	t.Helper()
	waitFor(t, "the refusal event", func() bool { return len(obs.refusalEvents()) == 1 })
	if r := obs.refusalEvents()[0]; r.Reason != reason || r.TLS != tls {
		t.Errorf("RefusalEvent = %+v, want reason %s, TLS %v", r, reason, tls)
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
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("plain HTTP on the TLS port: no HTTP answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body) // to the close
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
				t.Errorf("plain HTTP on the TLS port: %s %q, want 400 naming HTTPS", resp.Status, body)
			}
		}, HandshakeNotTLS},
		{"garbage on the TLS port", func(t *testing.T, addr string) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = io.WriteString(c, "\x00\x01garbage\r\n\r\n")
			if b, _ := io.ReadAll(c); len(b) != 0 { // the proxy closes it
				t.Errorf("garbage on the TLS port got %q, want nothing", b)
			}
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
			oneRefusal(t, obs, tc.want, true)
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

// Refusals are logged at warn, at most once a second per reason.
func TestRefusalsAreLoggedOnceASecondPerReason(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logged proctest.SyncBuffer
	refuse := func(c ClientConn) error {
		b, err := c.Peek(1)
		if err != nil {
			return err
		}
		return &Refusal{Reason: RefusalReason("reason_" + string(b))}
	}
	l := NewListener(ln, ListenerOptions{
		TLS:    &tls.Config{},
		Layers: []AcceptLayer{refuse},
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	done := make(chan error)
	go func() { done <- l.Run(context.Background()) }()
	defer func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v after Close, want nil", err)
		}
	}()
	start := time.Now()
	for _, first := range "aaaaab" {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, string(first))
		_, _ = io.Copy(io.Discard, c) // until the listener closes it
		c.Close()
	}
	seconds := int(time.Since(start)/time.Second) + 1
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	count := func(reason string) int {
		n := 0
		for _, line := range lines {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, `msg="limit reached; refused"`) && strings.Contains(line, "reason="+reason) {
				n++
			}
		}
		return n
	}
	if a := count("reason_a"); a < 1 || a > seconds {
		t.Errorf("%d warnings for 5 refusals of one reason in %ds, want 1 to %d:\n%s", a, seconds, seconds, logged.String())
	}
	if b := count("reason_b"); b != 1 {
		t.Errorf("%d warnings for the refusal of another reason, want 1:\n%s", b, logged.String())
	}
}
