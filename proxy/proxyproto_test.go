package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// The load balancer of these tests is at 127.0.0.2; clients from
// 127.0.0.1 are not behind it.
const (
	lbAddr     = "127.0.0.2"
	directAddr = "127.0.0.1"
)

var trustedLB = []netip.Prefix{netip.MustParsePrefix(lbAddr + "/32")}

// proxyV2 builds a version 2 header by hand: the signature, command and
// family bytes, the length, then block.
func proxyV2(cmd, family byte, block ...[]byte) []byte {
	body := bytes.Join(block, nil)
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), cmd, family)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func ports(src, dst uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, src), dst)
}

var (
	v1Header = []byte("PROXY TCP4 203.0.113.7 127.0.0.1 4567 443\r\n")
	// TCP over IPv6 from [2001:db8::7]:4567, with an ALPN TLV and one of
	// the range kept for applications (as AWS's VPC endpoint ID).
	v2Header = proxyV2(0x21, 0x21,
		netip.MustParseAddr("2001:db8::7").AsSlice(), netip.IPv6Loopback().AsSlice(), ports(4567, 443),
		[]byte{0x01, 0x00, 0x08}, []byte("http/1.1"), []byte{0xea, 0x00, 0x04}, []byte("vpce"))
)

// Through a real TLS WebSocket client, a real Handler and Listener: the
// header's source is the client address the backend and the access record
// see, and the tunnel still parks (the record-aware conn is kept).
func TestProxyProtocolGivesTheClientAddress(t *testing.T) {
	b := newTestBackend(t, "b")
	for _, tc := range []struct {
		name       string
		from       string
		header     []byte
		dribble    bool
		wantXFF    string
		wantRemote string // of the TunnelEvent; "" for from's own address
	}{
		{"v1", lbAddr, v1Header, false, "203.0.113.7", "203.0.113.7:4567"},
		{"v2 with TLVs", lbAddr, v2Header, false, "2001:db8::7", "[2001:db8::7]:4567"},
		{"v1 a byte at a time", lbAddr, v1Header, true, "203.0.113.7", "203.0.113.7:4567"},
		{"v2 a byte at a time", lbAddr, v2Header, true, "2001:db8::7", "[2001:db8::7]:4567"},
		{"v2 TCP6 with an IPv4-mapped source", lbAddr,
			proxyV2(0x21, 0x21, netip.MustParseAddr("::ffff:198.51.100.9").AsSlice(), netip.IPv6Loopback().AsSlice(), ports(80, 443)),
			false, "198.51.100.9", "198.51.100.9:80"},
		{"v2 LOCAL keeps the balancer's address", lbAddr, proxyV2(0x20, 0x00), false, lbAddr, ""},
		{"v1 UNKNOWN keeps the balancer's address", lbAddr, []byte("PROXY UNKNOWN\r\n"), false, lbAddr, ""},
		{"no header from an untrusted address", directAddr, nil, false, directAddr, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			asked := make(chan int, 1024)
			layer := spied(ProxyProtocol(trustedLB), asked)
			p := startProxyLayers(t, Options{Observer: obs}, fastParking, []AcceptLayer{layer}, backendSpec{addr: b.addr})
			if !tc.dribble {
				asked = nil
			}
			c, _, err := p.headerDialer(tc.from, tc.header, asked).Dial(p.url("/ws"), nil)
			if err != nil {
				t.Fatalf("Dial() from %s with the header = %v", tc.from, err)
			}
			defer c.Close()
			if got := b.header().Get("X-Forwarded-For"); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tc.wantXFF)
			}
			parksAndEchoes(t, p, c)
			local := c.NetConn().LocalAddr().String()
			c.Close()
			waitFor(t, "the tunnel event", func() bool { return len(obs.tunnelEvents()) == 1 })
			want := tc.wantRemote
			if want == "" {
				want = local
			}
			if got := obs.tunnelEvents()[0].RemoteAddr; got != want {
				t.Errorf("TunnelEvent.RemoteAddr = %q, want %q", got, want)
			}
			if r := obs.refusalEvents(); len(r) != 0 {
				t.Errorf("refusals = %+v, want none", r)
			}
		})
	}
}

// A PROXY header from an address that is not trusted, or a trusted
// address without a valid one: the connection is closed before TLS, at
// once, and counted.
func TestProxyProtocolRefuses(t *testing.T) {
	b := newTestBackend(t, "b")
	for _, tc := range []struct {
		name   string
		from   string
		header []byte
		want   RefusalReason
	}{
		{"v1 header from an untrusted address", directAddr, v1Header, RefusedProxyUntrusted},
		{"v2 header from an untrusted address", directAddr, v2Header, RefusedProxyUntrusted},
		{"no header from a trusted address", lbAddr, nil, RefusedProxyHeader},
		{"malformed v1 header", lbAddr, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 4567\r\n"), RefusedProxyHeader},
		{"v1 header with LF alone", lbAddr, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 4567 443\n"), RefusedProxyHeader},
		{"v2 header of version 1", lbAddr, append([]byte("\r\n\r\n\x00\r\nQUIT\n\x11"), v2Header[13:]...), RefusedProxyHeader},
		{"plain HTTP from a trusted address", lbAddr, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), RefusedProxyHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			p := startProxyLayers(t, Options{Observer: obs, HeaderTimeout: 10 * time.Second}, nil,
				[]AcceptLayer{ProxyProtocol(trustedLB)}, backendSpec{addr: b.addr})
			start := time.Now()
			if c, _, err := p.headerDialer(tc.from, tc.header, nil).Dial(p.url("/ws"), nil); err == nil {
				c.Close()
				t.Fatal("Dial() succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the refused connection was closed after %v, want at once (the handshake timeout is 10s)", d)
			}
			oneRefusal(t, obs, tc.want, false)
			if n := b.open(); n != 0 {
				t.Errorf("backend holds %d connections after a refusal, want 0", n)
			}
		})
	}
}

// A header that never completes: the connection is closed at the
// handshake deadline and counted as a handshake timeout; one whose client
// gives up is counted as closed, as a TLS handshake would be.
func TestProxyProtocolIncompleteHeader(t *testing.T) {
	b := newTestBackend(t, "b")
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name    string
		partial []byte
		hangUp  bool
		want    RefusalReason
	}{
		{"v1", v1Header[:24], false, HandshakeTimeout},
		{"v2", v2Header[:20], false, HandshakeTimeout},
		{"nothing", nil, false, HandshakeTimeout},
		{"v1 then FIN", v1Header[:24], true, HandshakeClosed},
		{"v2 then FIN", v2Header[:20], true, HandshakeClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			p := startProxyLayers(t, Options{Observer: obs, HeaderTimeout: timeout}, nil,
				[]AcceptLayer{ProxyProtocol(trustedLB)}, backendSpec{addr: b.addr})
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lbAddr)}}).Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := c.Write(tc.partial); err != nil {
				t.Fatal(err)
			}
			if tc.hangUp {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				t.Fatalf("reading until the proxy closes = %d bytes, %v; want 0, EOF", n, err)
			}
			d := time.Since(start)
			if !tc.hangUp && (d < timeout-50*time.Millisecond || d > 5*time.Second) {
				t.Errorf("closed after %v, want about %v", d, timeout)
			}
			oneRefusal(t, obs, tc.want, true)
		})
	}
}

// Listener.SetLayers turns PROXY protocol on and off for new connections
// (a reload), also while connections are coming in.
func TestListenerSetLayers(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxyLayers(t, Options{}, nil, nil, backendSpec{addr: b.addr})
	dial := func(header []byte) error {
		c, _, err := p.headerDialer(lbAddr, header, nil).Dial(p.url("/ws"), nil)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(v1Header); err == nil {
		t.Fatal("Dial() with a header and no layers succeeded")
	}
	p.listener.SetLayers([]AcceptLayer{ProxyProtocol(trustedLB)})
	if err := dial(v1Header); err != nil {
		t.Fatalf("Dial() with a header after SetLayers = %v", err)
	}
	if got := b.header().Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For = %q, want the header's 203.0.113.7", got)
	}
	if err := dial(nil); err == nil {
		t.Fatal("Dial() without a header from a trusted address succeeded")
	}

	// Swaps while connections come in: each is served by one set or the
	// other, and the race detector sees no race.
	stop := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for on := false; ; on = !on {
			select {
			case <-stop:
				return
			default:
			}
			if on {
				p.listener.SetLayers([]AcceptLayer{ProxyProtocol(trustedLB)})
			} else {
				p.listener.SetLayers(nil)
			}
		}
	}()
	for range 10 {
		_ = dial(v1Header)
	}
	close(stop)
	<-swapped
	p.listener.SetLayers(nil)
	if err := dial(nil); err != nil {
		t.Fatalf("Dial() without a header after SetLayers(nil) = %v", err)
	}
	if got := b.header().Get("X-Forwarded-For"); got != lbAddr {
		t.Errorf("X-Forwarded-For = %q, want the socket's %s", got, lbAddr)
	}
}

// The layer reads the header and not a byte more: it returns as soon as
// the header is in, even when nothing follows yet, and what follows is
// what the connection reads next.
func TestProxyProtocolReadsNoFurther(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []byte
		want   string
	}{
		{"v1", v1Header, "203.0.113.7:4567"},
		{"v2", v2Header, "[2001:db8::7]:4567"},
		{"v2 LOCAL", proxyV2(0x20, 0x11, make([]byte, 12)), lbAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lbAddr)}}).Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			raw, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			cc := sockio.Accepted(raw)
			defer cc.Close()
			_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := client.Write(tc.header); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- ProxyProtocol(trustedLB)(cc) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("layer = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the layer has not returned 5s after the whole header came")
			}
			if got := cc.RemoteAddr().String(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("RemoteAddr() = %s, want %s", got, tc.want)
			}
			if _, err := client.Write([]byte("rest")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(cc, got); err != nil || string(got) != "rest" {
				t.Errorf("read after the layer = %q, %v; want rest", got, err)
			}
		})
	}
}

// The per-address limits count the header's address, not the balancer's.
func TestProxyProtocolAddressIsLimitedPerAddress(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxyLayers(t, Options{Limits: Limits{MaxConnectionsPerIP: 1}}, nil,
		[]AcceptLayer{ProxyProtocol(trustedLB)}, backendSpec{addr: b.addr})
	dial := func(client string) (*http.Response, error) {
		header := fmt.Appendf(nil, "PROXY TCP4 %s 127.0.0.1 4567 443\r\n", client)
		c, resp, err := p.headerDialer(lbAddr, header, nil).Dial(p.url("/ws"), nil)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return resp, err
	}
	for _, client := range []string{"203.0.113.7", "203.0.113.8"} {
		if _, err := dial(client); err != nil {
			t.Fatalf("the first connection of %s through the balancer: %v", client, err)
		}
	}
	if resp, err := dial("203.0.113.7"); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second connection of 203.0.113.7 = %v, %v; want 429", resp, err)
	}
}
