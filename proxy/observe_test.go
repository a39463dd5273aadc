package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestObserverUpgradeResults(t *testing.T) {
	ok := newTestBackend(t, "ok")
	forbidding := newTestBackend(t, "forbidding")
	forbidding.setStatus(http.StatusForbidden)
	for _, tc := range []struct {
		name     string
		opts     Options
		backends []backendSpec
		hdr      http.Header
		raw      string // a raw request instead of a gorilla dial
		want     UpgradeResult
		status   int
	}{
		{name: "ok", backends: []backendSpec{{addr: ok.addr}}, want: UpgradeOK, status: 101},
		{name: "malformed", backends: []backendSpec{{addr: ok.addr}},
			raw:  "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
			want: UpgradeBadRequest, status: 400},
		{name: "headers too large", opts: Options{MaxHeaderBytes: 1024}, backends: []backendSpec{{addr: ok.addr}},
			hdr: http.Header{"X-Big": {strings.Repeat("a", 2000)}}, want: UpgradeBadRequest, status: 431},
		{name: "origin", opts: Options{Routes: []Route{{Pool: "app", AllowedOrigins: []string{"https://good.example"}}}},
			backends: []backendSpec{{addr: ok.addr}}, hdr: http.Header{"Origin": {"https://evil.example"}},
			want: UpgradeForbiddenOrigin, status: 403},
		{name: "empty pool", want: UpgradeNoBackend, status: 503},
		{name: "refusing backends", backends: []backendSpec{{addr: refusingAddr(t)}}, want: UpgradeBackendError, status: 503},
		{name: "backend says 403", backends: []backendSpec{{addr: forbidding.addr}}, want: UpgradeBackendRefused, status: 403},
		{name: "connection limit", opts: Options{Limits: Limits{MaxConnections: 1}}, backends: []backendSpec{{addr: ok.addr}}, want: UpgradeLimited, status: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			tc.opts.Observer = obs
			p := startProxyWith(t, tc.opts, func(h *Handler) {
				if tc.opts.Limits.MaxConnections > 0 {
					h.inUse.Store(1) // full already
				}
			}, tc.backends...)
			if tc.raw != "" {
				p.rawRequest(t, tc.raw).Body.Close()
			} else if c, _, err := p.dialer().Dial(p.url("/ws"), tc.hdr); err == nil {
				c.Close()
			}
			waitFor(t, "the upgrade event", func() bool { return len(obs.upgradeEvents()) == 1 })
			ev := obs.upgradeEvents()[0]
			if ev.Result != tc.want || ev.Status != tc.status || ev.Pool != "app" {
				t.Errorf("UpgradeEvent = %+v, want result %s, status %d, pool app", ev, tc.want, tc.status)
			}
			if ev.Duration <= 0 || ev.Duration > 5*time.Second {
				t.Errorf("UpgradeEvent.Duration = %v", ev.Duration)
			}
			if tc.want == UpgradeLimited && (len(obs.refusals) != 1 || obs.refusals[0].Reason != RefusedMaxConnections) {
				t.Errorf("refusals = %+v, want one max_connections", obs.refusals)
			}
		})
	}
}

func TestObserverTunnelClosed(t *testing.T) {
	echo := newTestBackend(t, "echo")
	// Scripted ends: the backend closes with 4001, or drops the TCP
	// connection without a close frame, once it has read one frame.
	scripted := newScriptedBackendReq(t, func(c net.Conn, br *bufio.Reader, req *http.Request) {
		if _, _, err := readFrame(br); err != nil {
			return
		}
		if req.URL.Path == "/backend-closes" {
			_, _ = c.Write(serverFrame(opClose, []byte{0x0f, 0xa1}))
			for { // on to the client's answer
				if op, _, err := readFrame(br); err != nil || op == opClose {
					return
				}
			}
		}
	})
	for _, tc := range []struct {
		name    string
		backend string
		path    string
		end     func(c *websocket.Conn)
		by      Initiator
		code    int
	}{
		{"client closes", echo.addr, "/ws", func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
			readClose(c)
		}, ClosedByClient, 1000},
		{"client closes without a code", echo.addr, "/ws", func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.CloseMessage, nil)
			readClose(c)
		}, ClosedByClient, 1005},
		{"client drops", echo.addr, "/ws", func(c *websocket.Conn) { c.NetConn().Close() }, ClosedByClient, CloseCodeNone},
		{"backend closes", scripted.addr, "/backend-closes", func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte("go"))
			readClose(c)
		}, ClosedByBackend, 4001},
		{"backend drops", scripted.addr, "/backend-drops", func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte("go"))
			readClose(c)
			c.Close()
		}, ClosedByBackend, CloseCodeNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			p := startProxy(t, Options{Observer: obs}, backendSpec{addr: tc.backend})
			c, _ := p.dial(t, tc.path+"?token=secret", nil)
			if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			tc.end(c)
			waitFor(t, "the tunnel event", func() bool { return len(obs.tunnelEvents()) == 1 })
			ev := obs.tunnelEvents()[0]
			if ev.ClosedBy != tc.by || ev.CloseCode != tc.code {
				t.Errorf("closed_by %s, close_code %d; want %s, %d", ev.ClosedBy, ev.CloseCode, tc.by, tc.code)
			}
			if ev.Pool != "app" || ev.Backend != tc.backend || ev.Path != tc.path || ev.Host == "" || ev.RemoteAddr == "" {
				t.Errorf("TunnelEvent = %+v: want pool app, backend %s, path %s without the query, host and remote_addr set", ev, tc.backend, tc.path)
			}
			if ev.BytesUp < 5 || ev.Duration <= 0 {
				t.Errorf("TunnelEvent bytes up %d, duration %v: want at least the 5-byte message, > 0", ev.BytesUp, ev.Duration)
			}
		})
	}
}

func TestShutdownIsRecordedAsProxyClose(t *testing.T) {
	b := newTestBackend(t, "b")
	obs := &recordingObserver{}
	p := startProxy(t, Options{Observer: obs}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil)
	go readClose(c)
	if err := p.h.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := obs.tunnelEvents()
	if len(evs) != 1 || evs[0].ClosedBy != ClosedByProxy || evs[0].CloseCode != CloseGoingAway {
		t.Errorf("tunnel events = %+v, want one closed by proxy with 1001", evs)
	}
}

func TestRelayedBytes(t *testing.T) {
	b := newTestBackend(t, "b")
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	sum := func() (up, down int64) {
		for _, pb := range p.h.RelayedBytes() {
			if pb.Pool != "app" {
				t.Errorf("RelayedBytes() has pool %q", pb.Pool)
			}
			up, down = up+pb.Up, down+pb.Down
		}
		return up, down
	}
	c, _ := p.dial(t, "/ws", nil)
	msg := make([]byte, 1000)
	for range 10 {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	// 10 frames of 1000 bytes each way: 4 (+4 mask) header bytes each. A
	// copier counts a write once it returns, which may be just after the
	// echo has come back.
	var up, down int64
	waitFor(t, "the counts to settle", func() bool {
		up, down = sum()
		return up == 10*1008 && down == 10*1004
	})
	c.Close()
	waitFor(t, "the tunnel to end", func() bool { return p.h.ActiveTunnels() == 0 })
	if up2, down2 := sum(); up2 < up || down2 < down {
		t.Errorf("RelayedBytes() went down when the tunnel ended: %d, %d after %d, %d", up2, down2, up, down)
	}
}
