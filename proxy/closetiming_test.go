package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The end of a backend's stream must reach the client as soon as the
// bytes before it: a backend that sends its close frame (or a last
// message) and closes the TCP connection at once makes its FIN arrive at
// the proxy together with those bytes, and the proxy must not wait for a
// new readiness signal that will never come.

// closeLag is how late the end of the stream may reach the client after
// the last bytes before it, at most. Without the fix lags of 0.5-1 s (the
// parking sweep's period) show up in a few percent of connections.
const closeLag = 250 * time.Millisecond

func TestBackendCloseReachesClientAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		last []byte // what the backend sends right before its FIN
		// end waits for the last message and then the end of the stream,
		// returning when each arrived.
		end func(c *websocket.Conn) (last, eof time.Time, err error)
	}{
		{
			name: "close frame then FIN",
			last: serverFrame(opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}),
			end: func(c *websocket.Conn) (time.Time, time.Time, error) {
				_, _, err := c.ReadMessage()
				last := time.Now()
				if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					return last, last, errors.New("want close 1000 first, got " + errString(err))
				}
				buf := make([]byte, 16)
				for {
					if _, err := c.NetConn().Read(buf); err != nil {
						return last, time.Now(), nil //nolint:nilerr // the end of the stream is what is timed
					}
				}
			},
		},
		{
			name: "message then FIN, no close frame",
			last: serverFrame(1, []byte("last words")),
			end: func(c *websocket.Conn) (time.Time, time.Time, error) {
				_, msg, err := c.ReadMessage()
				last := time.Now()
				if err != nil || string(msg) != "last words" {
					return last, last, errors.New("want the last message first, got " + errString(err))
				}
				_, _, err = c.ReadMessage()
				if err == nil {
					return last, last, errors.New("a message after the last one")
				}
				return last, time.Now(), nil
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newScriptedBackend(t, func(c net.Conn, br *bufio.Reader) {
				// Wait for the client's go-ahead, so the proxy's copier is
				// waiting for the backend when the last bytes and the FIN
				// arrive.
				if _, err := br.ReadByte(); err != nil {
					return
				}
				_, _ = c.Write(tc.last)
				_ = c.(*net.TCPConn).CloseWrite()
			})
			p := startProxy(t, Options{}, backendSpec{addr: b.addr})
			const conns, parallel = 80, 4
			var (
				mu   sync.Mutex
				lags []time.Duration
			)
			var wg sync.WaitGroup
			for w := range parallel {
				wg.Go(func() {
					for range conns / parallel {
						c, _, err := p.dialer().Dial(p.url("/ws"), nil)
						if err != nil {
							t.Errorf("worker %d: Dial() = %v", w, err)
							return
						}
						// No close frame in answer: the end of the stream must
						// come from the backend's FIN alone.
						c.SetCloseHandler(func(int, string) error { return nil })
						_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
						_ = c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
						// Any masked frame starts the backend's script.
						if err := c.WriteMessage(websocket.BinaryMessage, []byte{1}); err != nil {
							t.Errorf("WriteMessage() = %v", err)
						}
						last, eof, err := tc.end(c)
						c.Close()
						if err != nil {
							t.Error(err)
							continue
						}
						mu.Lock()
						lags = append(lags, eof.Sub(last))
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.Sort(lags)
			if len(lags) == 0 {
				t.Fatal("no connection completed")
			}
			t.Logf("last bytes → end of stream over %d connections: median %v, max %v", len(lags), lags[len(lags)/2], lags[len(lags)-1])
			late := 0
			for _, l := range lags {
				if l > closeLag {
					late++
				}
			}
			if late > 0 {
				t.Errorf("%d of %d connections saw the end of the stream more than %v after the last bytes (max %v)", late, len(lags), closeLag, lags[len(lags)-1])
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func TestClientCloseReachesBackendAtOnce(t *testing.T) {
	closeMsg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	// The frame as the proxy relays it: masked, 2+4 header bytes.
	frameLen := 2 + 4 + len(closeMsg)
	lags := make(chan time.Duration, 100)
	b := newScriptedBackend(t, func(c net.Conn, br *bufio.Reader) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, frameLen)
		if _, err := io.ReadFull(br, buf); err != nil {
			lags <- -1
			return
		}
		last := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			lags <- -1
			return
		}
		lags <- time.Since(last)
	})
	p := startProxy(t, Options{}, backendSpec{addr: b.addr})
	const conns = 60
	var got []time.Duration
	for range conns {
		c, _, err := p.dialer().Dial(p.url("/ws"), nil)
		if err != nil {
			t.Fatalf("Dial() = %v", err)
		}
		if err := c.WriteControl(websocket.CloseMessage, closeMsg, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		// A FIN without close_notify, as many clients end TLS.
		_ = c.NetConn().(*tls.Conn).NetConn().(*net.TCPConn).CloseWrite()
		got = append(got, <-lags)
		c.Close()
	}
	slices.Sort(got)
	if got[0] < 0 {
		t.Fatal("a backend did not see the close frame and then EOF")
	}
	t.Logf("client's close frame → end of stream at the backend over %d connections: median %v, max %v", len(got), got[len(got)/2], got[len(got)-1])
	if max := got[len(got)-1]; max > closeLag {
		t.Errorf("end of stream reached the backend %v after the close frame, want at most %v", max, closeLag)
	}
}
