package backend_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/internal/proctest"
)

func TestEcho(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	tests := []struct {
		name string
		typ  int
		data []byte
	}{
		{name: "text", typ: websocket.TextMessage, data: []byte("hello, wsgate")},
		{name: "binary", typ: websocket.BinaryMessage, data: []byte{0, 1, 2, 0xfe, 0xff}},
		{name: "empty text", typ: websocket.TextMessage, data: []byte{}},
		{name: "1 MiB text", typ: websocket.TextMessage, data: []byte(strings.Repeat("a", 1<<20))},
		{name: "1 MiB binary", typ: websocket.BinaryMessage, data: bytes.Repeat([]byte{0xab}, 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, _ := dial(t, nil, ts.url("ws", "/ws"), nil)
			for range 2 { // twice, to see the connection stays usable
				writeMessage(t, conn, tc.typ, tc.data)
				typ, got, err := readMessage(t, conn)
				if err != nil {
					t.Fatalf("ReadMessage() = %v, want the echo", err)
				}
				if typ != tc.typ {
					t.Errorf("echo message type = %d, want %d", typ, tc.typ)
				}
				if !bytes.Equal(got, tc.data) {
					t.Errorf("echo = %d bytes, want the %d bytes sent", len(got), len(tc.data))
				}
			}
		})
	}
}

func TestEchoOverLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxMessage int64
		size       int
	}{
		{name: "1 KiB limit", maxMessage: 1024, size: 1025},
		{name: "default 1 MiB limit", maxMessage: 0, size: 1<<20 + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t, backend.Options{MaxMessage: tc.maxMessage})
			conn, _ := dial(t, nil, ts.url("ws", "/ws"), nil)
			// The write may or may not complete before the server closes;
			// only what the client reads back matters.
			_ = conn.WriteMessage(websocket.BinaryMessage, make([]byte, tc.size))
			_, _, err := readMessage(t, conn)
			if got := closeCode(err); got != websocket.CloseMessageTooBig {
				t.Errorf("ReadMessage() after a %d-byte message = %v, want close %d", tc.size, err, websocket.CloseMessageTooBig)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	status, body := get(t, nil, ts.url("http", "/healthz"))
	if status != http.StatusOK || body != "OK" {
		t.Errorf("GET /healthz = %d %q, want 200 \"OK\"", status, body)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	for _, path := range []string{"/", "/nope", "/ws/other", "/healthz/x"} {
		t.Run(path, func(t *testing.T) {
			if status, _ := get(t, nil, ts.url("http", path)); status != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", path, status)
			}
		})
	}
}

func TestBackendIDHeader(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{ID: "backend-7"})
	for _, path := range []string{"/ws", "/ws/chat?room=lobby", "/ws/chat"} {
		t.Run(path, func(t *testing.T) {
			_, resp := dial(t, nil, ts.url("ws", path), nil)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Errorf("status = %d, want 101", resp.StatusCode)
			}
			if got := resp.Header.Get("X-Backend-Id"); got != "backend-7" {
				t.Errorf("X-Backend-Id = %q, want %q", got, "backend-7")
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
				t.Errorf("Sec-WebSocket-Protocol = %q, want none selected", got)
			}
		})
	}
}

func TestAllowedOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		origin  string
		want    int // HTTP status of the handshake
	}{
		{name: "any origin when unset", allowed: nil, origin: "https://elsewhere.example", want: http.StatusSwitchingProtocols},
		{name: "no origin header", allowed: []string{"https://app.example"}, origin: "", want: http.StatusSwitchingProtocols},
		{name: "listed origin", allowed: []string{"https://app.example"}, origin: "https://app.example", want: http.StatusSwitchingProtocols},
		{name: "listed origin other case", allowed: []string{"https://app.example"}, origin: "HTTPS://APP.EXAMPLE", want: http.StatusSwitchingProtocols},
		{name: "unlisted origin", allowed: []string{"https://app.example"}, origin: "https://evil.example", want: http.StatusForbidden},
		{name: "other scheme", allowed: []string{"https://app.example"}, origin: "http://app.example", want: http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t, backend.Options{AllowedOrigins: tc.allowed})
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			d := &websocket.Dialer{HandshakeTimeout: ioTimeout}
			conn, resp, err := d.Dial(ts.url("ws", "/ws"), h)
			if conn != nil {
				conn.Close()
			}
			if resp == nil {
				t.Fatalf("Dial() = %v, want an HTTP response", err)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("handshake status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestServeTwice(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	// A response proves the first Serve is running.
	if status, _ := get(t, nil, ts.url("http", "/healthz")); status != http.StatusOK {
		t.Fatalf("GET /healthz = %d, want 200", status)
	}
	ln := listenTCP(t)
	if err := ts.srv.Serve(t.Context(), ln); err == nil {
		t.Errorf("second Serve() = nil, want an error")
	}
	if _, err := ln.Accept(); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener after refused Serve: Accept() = %v, want it closed", err)
	}
}

// healthConnections returns /healthz's X-Backend-Connections values.
func healthConnections(t *testing.T, ts *testServer) []string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: ioTimeout}
	resp, err := c.Get(ts.url("http", "/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Values(backend.ConnectionsHeader)
}

// /healthz reports the connections the server holds, echo and chat alike,
// as they open and end.
func TestHealthzReportsConnections(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	if got := healthConnections(t, ts); !slices.Equal(got, []string{"0"}) {
		t.Fatalf("X-Backend-Connections with none open = %q, want [\"0\"]", got)
	}
	var conns []*websocket.Conn
	for _, path := range []string{"/ws", "/ws", "/ws", "/ws/chat?room=a", "/ws/chat?room=b"} {
		c, _ := dial(t, nil, ts.url("ws", path), nil)
		conns = append(conns, c)
	}
	// A connection counts from before its 101, so it counts once dialled.
	if got := healthConnections(t, ts); !slices.Equal(got, []string{"5"}) {
		t.Errorf("X-Backend-Connections with 5 open = %q, want [\"5\"]", got)
	}
	conns[0].Close()
	conns[3].Close()
	proctest.WaitFor(t, "two closes to be counted", func() bool { return slices.Equal(healthConnections(t, ts), []string{"3"}) })
}

func TestHealthzNoLoadReport(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{NoLoadReport: true})
	dial(t, nil, ts.url("ws", "/ws"), nil)
	if got := healthConnections(t, ts); got != nil {
		t.Errorf("X-Backend-Connections with NoLoadReport = %q, want none", got)
	}
}
