package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// forwardedBackend is a WebSocket echo backend whose 101 answers say the
// X-Forwarded-For it was sent (as X-Seen-Forwarded-For).
func forwardedBackend(t *testing.T) string {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, http.Header{"X-Seen-Forwarded-For": {r.Header.Get("X-Forwarded-For")}})
		if err != nil {
			return
		}
		defer c.Close()
		echoBack(c)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// dialFrom opens a WebSocket to g from the loopback address from, sending
// header (if any) before the TLS handshake, and returns the
// X-Forwarded-For the backend saw.
func (g *gate) dialFrom(from string, header []byte) (*websocket.Conn, string, error) {
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: g.roots, ServerName: "localhost"},
		HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(header); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	c, resp, err := d.Dial("wss://"+g.proxyAddr+"/ws", nil)
	if err != nil {
		return nil, "", err
	}
	return c, resp.Header.Get("X-Seen-Forwarded-For"), nil
}

// A wsgate run process with proxy_protocol.trusted_cidrs: [127.0.0.2/32]:
// clients from 127.0.0.2 (the load balancer) must send a header, whose
// address the backend and the access log see; clients from 127.0.0.1 must
// not. SIGHUP turns it off and on again.
func TestProxyProtocolEndToEnd(t *testing.T) {
	const lb, direct = "127.0.0.2", "127.0.0.1"
	v1 := []byte("PROXY TCP4 203.0.113.7 127.0.0.1 4567 443\r\n")
	// Version 2, PROXY, TCP over IPv6 from [2001:db8::7]:4567 to [::1]:443.
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" +
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07" +
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" +
		"\x11\xd7\x01\xbb")
	const on = "proxy_protocol:\n  trusted_cidrs: [127.0.0.2/32]\n"
	be := forwardedBackend(t)
	g := startGateWith(t, gateConfig{backends: []string{be}, extra: on})

	for _, tc := range []struct {
		name, from string
		header     []byte
		wantXFF    string // "" for a refused connection
	}{
		{"v1 from the load balancer", lb, v1, "203.0.113.7"},
		{"v2 from the load balancer", lb, v2, "2001:db8::7"},
		{"no header from the load balancer", lb, nil, ""},
		{"a header from elsewhere", direct, v1, ""},
		{"no header from elsewhere", direct, nil, direct},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, xff, err := g.dialFrom(tc.from, tc.header)
			if tc.wantXFF == "" {
				if err == nil {
					c.Close()
					t.Fatalf("Dial() from %s succeeded; want the connection closed", tc.from)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial() from %s = %v", tc.from, err)
			}
			defer c.Close()
			if xff != tc.wantXFF {
				t.Errorf("X-Forwarded-For at the backend = %q, want %q", xff, tc.wantXFF)
			}
			echo(t, c, "through "+tc.name)
		})
	}
	// The access record names the header's address.
	waitFor(t, "the access record of the v1 tunnel", func() bool {
		return strings.Contains(g.Stderr.String(), "remote_addr=203.0.113.7:4567")
	})
	if log := g.Stderr.String(); !strings.Contains(log, "proxy_protocol_untrusted") || !strings.Contains(log, "reason=proxy_protocol\n") {
		t.Errorf("the refusals are not logged with their reasons:\n%s", log)
	}

	// Reloaded without proxy_protocol: the load balancer's connections
	// are plain ones again.
	g.writeConfig(t, gateConfig{backends: []string{be}})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to turn PROXY protocol off", func() bool {
		c, xff, err := g.dialFrom(lb, nil)
		if err != nil {
			return false
		}
		c.Close()
		return xff == lb
	})
	if c, _, err := g.dialFrom(lb, v1); err == nil {
		c.Close()
		t.Error("a header is accepted with proxy_protocol removed")
	}
	// And on again.
	g.writeConfig(t, gateConfig{backends: []string{be}, extra: on})
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to turn PROXY protocol on", func() bool {
		c, xff, err := g.dialFrom(lb, v1)
		if err != nil {
			return false
		}
		c.Close()
		return xff == "203.0.113.7"
	})
}
