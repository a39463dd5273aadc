package backend_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/backend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ioTimeout bounds every single read, write or HTTP request in these tests,
// so a broken server fails a test instead of hanging it.
const ioTimeout = 10 * time.Second

// testServer is a backend.Server serving on a real listener.
type testServer struct {
	addr     string // host:port for TCP, the socket path for unix
	cancel   context.CancelFunc
	done     chan struct{} // closed when Serve returned
	err      error         // Serve's result, valid once done is closed
	srv      *backend.Server
	canceled time.Time
}

// start serves opts on a fresh 127.0.0.1 port until the test ends.
func start(t *testing.T, opts backend.Options) *testServer {
	t.Helper()
	return startOn(t, listenTCP(t), opts)
}

func startOn(t *testing.T, ln net.Listener, opts backend.Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		addr:   ln.Addr().String(),
		cancel: cancel,
		done:   make(chan struct{}),
		srv:    backend.New(opts),
	}
	go func() {
		ts.err = ts.srv.Serve(ctx, ln)
		close(ts.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-ts.done
	})
	return ts
}

// stop cancels Serve's context.
func (ts *testServer) stop() {
	ts.canceled = time.Now()
	ts.cancel()
}

// wait waits for Serve to return and gives its result and how long after
// stop it returned.
func (ts *testServer) wait(t *testing.T, limit time.Duration) (time.Duration, error) {
	t.Helper()
	select {
	case <-ts.done:
		return time.Since(ts.canceled), ts.err
	case <-time.After(limit):
		t.Fatalf("Serve did not return within %s of cancel", limit)
		return 0, nil
	}
}

func (ts *testServer) url(scheme, path string) string {
	return scheme + "://" + ts.addr + path
}

// dial opens a WebSocket with a real gorilla client; the test's cleanup
// closes it.
func dial(t *testing.T, d *websocket.Dialer, url string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: ioTimeout}
	}
	conn, resp, err := d.Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("Dial(%s) = %v (status %d), want success", url, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, resp
}

// get does one GET without keep-alive, so no transport goroutine outlives it.
func get(t *testing.T, tr *http.Transport, url string) (int, string) {
	t.Helper()
	if tr == nil {
		tr = &http.Transport{}
	}
	tr.DisableKeepAlives = true
	c := &http.Client{Transport: tr, Timeout: ioTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// readMessage reads one message with a deadline.
func readMessage(t *testing.T, conn *websocket.Conn) (int, []byte, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	return conn.ReadMessage()
}

func writeMessage(t *testing.T, conn *websocket.Conn, typ int, data []byte) {
	t.Helper()
	conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if err := conn.WriteMessage(typ, data); err != nil {
		t.Fatalf("WriteMessage(%d bytes) = %v, want nil", len(data), err)
	}
}

// closeCode is the code of a close error, or -1 for any other error.
func closeCode(err error) int {
	if ce, ok := err.(*websocket.CloseError); ok {
		return ce.Code
	}
	return -1
}

// eventHandler is a slog.Handler that closes fired the first time a record
// with message msg is logged, so tests can wait for a server-side event.
type eventHandler struct {
	msg   string
	once  *sync.Once
	fired chan struct{}
}

func newEventHandler(msg string) eventHandler {
	return eventHandler{msg: msg, once: new(sync.Once), fired: make(chan struct{})}
}

func (h eventHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h eventHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h eventHandler) WithGroup(string) slog.Handler            { return h }
func (h eventHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.fired) })
	}
	return nil
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
