package backend_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/internal/proctest"
)

func TestDrain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		drainTimeout time.Duration
		silentPeer   bool // a peer that never reads, so never answers the close
	}{
		{name: "peers answer the close", drainTimeout: 10 * time.Second},
		{name: "a peer stays silent", drainTimeout: 1500 * time.Millisecond, silentPeer: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := start(t, backend.Options{ID: "b", DrainTimeout: tc.drainTimeout})
			polite := []*websocket.Conn{}
			for _, path := range []string{"/ws", "/ws", "/ws/chat?room=x"} {
				c, _ := dial(t, nil, ts.url("ws", path), nil)
				polite = append(polite, c)
			}
			var silent *websocket.Conn
			if tc.silentPeer {
				silent, _ = dial(t, nil, ts.url("ws", "/ws/chat?room=x"), nil)
			}

			ts.stop()

			// Reading processes the server's close and answers it (gorilla's
			// default close handler), as a well-behaved client does.
			for i, c := range polite {
				_, _, err := readMessage(t, c)
				if got := closeCode(err); got != websocket.CloseGoingAway {
					t.Errorf("client %d: ReadMessage() = %v, want close %d", i, err, websocket.CloseGoingAway)
				}
			}

			if tc.silentPeer {
				// The drain is under way (the close frames went out) and held
				// open by the silent peer: health and upgrades must say 503.
				if status, _ := get(t, nil, ts.url("http", "/healthz")); status != http.StatusServiceUnavailable {
					t.Errorf("GET /healthz while draining = %d, want 503", status)
				}
				for _, path := range []string{"/ws", "/ws/chat?room=x"} {
					d := &websocket.Dialer{HandshakeTimeout: ioTimeout}
					conn, resp, err := d.Dial(ts.url("ws", path), nil)
					if conn != nil {
						conn.Close()
					}
					if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
						status := 0
						if resp != nil {
							status = resp.StatusCode
						}
						t.Errorf("Dial(%s) while draining = %v (status %d), want status 503", path, err, status)
					}
				}
				select {
				case <-ts.done:
					t.Fatalf("Serve returned while a peer had not answered, before DrainTimeout")
				default:
				}
			}

			elapsed, err := ts.wait(t, tc.drainTimeout+5*time.Second)
			if err != nil {
				t.Errorf("Serve() = %v, want nil", err)
			}
			if elapsed > tc.drainTimeout+time.Second {
				t.Errorf("Serve returned %s after cancel, want within DrainTimeout %s", elapsed, tc.drainTimeout)
			}
			if tc.silentPeer {
				if elapsed < tc.drainTimeout {
					t.Errorf("Serve returned %s after cancel, before DrainTimeout %s although a peer never answered", elapsed, tc.drainTimeout)
				}
				// The close frame reached the silent peer too before the
				// server closed the connection.
				_, _, err := readMessage(t, silent)
				if got := closeCode(err); got != websocket.CloseGoingAway {
					t.Errorf("silent client: ReadMessage() = %v, want close %d", err, websocket.CloseGoingAway)
				}
			} else if elapsed > 5*time.Second {
				t.Errorf("Serve returned %s after cancel although every peer answered at once", elapsed)
			}
		})
	}
}

func TestDrainWithoutConnections(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	ts.stop()
	elapsed, err := ts.wait(t, 5*time.Second)
	if err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Serve returned %s after cancel with nothing to drain, want at once", elapsed)
	}
	d := net.Dialer{Timeout: ioTimeout}
	if c, err := d.Dial("tcp", ts.addr); err == nil {
		c.Close()
		t.Errorf("Dial(%s) after Serve returned = nil, want the listener closed", ts.addr)
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir := proctest.SocketDir(t)
	path := filepath.Join(dir, "b.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ts := startOn(t, ln, backend.Options{ID: "unix-b"})

	dialUnix := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	if status, body := get(t, &http.Transport{DialContext: dialUnix}, "http://backend/healthz"); status != http.StatusOK || body != "OK" {
		t.Errorf("GET /healthz over unix socket = %d %q, want 200 \"OK\"", status, body)
	}

	conn, resp := dial(t, &websocket.Dialer{NetDialContext: dialUnix, HandshakeTimeout: ioTimeout}, "ws://backend/ws", nil)
	if got := resp.Header.Get("X-Backend-Id"); got != "unix-b" {
		t.Errorf("X-Backend-Id = %q, want %q", got, "unix-b")
	}
	writeMessage(t, conn, websocket.TextMessage, []byte("over unix"))
	if _, got, err := readMessage(t, conn); err != nil || string(got) != "over unix" {
		t.Errorf("echo over unix socket = %q, %v, want %q", got, err, "over unix")
	}

	ts.stop()
	_, _, err = readMessage(t, conn)
	if got := closeCode(err); got != websocket.CloseGoingAway {
		t.Errorf("ReadMessage() after cancel = %v, want close %d", err, websocket.CloseGoingAway)
	}
	if _, err := ts.wait(t, 5*time.Second); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Serve returned: Lstat() = %v, want it removed", err)
	}
}

func TestServeListenerError(t *testing.T) {
	t.Parallel()
	ln := listenTCP(t)
	ln.Close() // Accept fails at once, as with a listener torn down underneath
	s := backend.New(backend.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.Serve(t.Context(), ln); err == nil {
		t.Errorf("Serve(closed listener) = nil, want an error")
	}
}
