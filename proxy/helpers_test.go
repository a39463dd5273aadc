package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

// testBackend is a scripted loopback WebSocket backend: /ws echoes, every
// 101 carries X-Backend-Id, and the last upgrade request is recorded.
type testBackend struct {
	id   string
	addr string // host:port or unix:/path
	srv  *httptest.Server

	mu       sync.Mutex
	lastReq  http.Header
	conns    map[*websocket.Conn]bool
	upgrades int
	status   int // if not 0, answer upgrades with this status
	// closeCodes receives the close code of each connection that ended
	// with a close frame from the proxy (or -1 without one).
	closeCodes chan int
}

func newTestBackend(t *testing.T, id string) *testBackend {
	t.Helper()
	return startTestBackend(t, id, nil)
}

func newUnixTestBackend(t *testing.T, id string) *testBackend {
	t.Helper()
	dir := proctest.SocketDir(t)
	sock := filepath.Join(dir, "b.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return startTestBackend(t, id, ln)
}

func startTestBackend(t *testing.T, id string, ln net.Listener) *testBackend {
	tb := &testBackend{id: id, conns: map[*websocket.Conn]bool{}, closeCodes: make(chan int, 1000)}
	up := websocket.Upgrader{
		CheckOrigin:  func(*http.Request) bool { return true }, // the proxy under test checks Origin
		Subprotocols: []string{"chat.v1"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		tb.mu.Lock()
		tb.lastReq = r.Header.Clone()
		tb.lastReq.Set("Host", r.Host)
		status := tb.status
		tb.mu.Unlock()
		if !websocket.IsWebSocketUpgrade(r) {
			w.Header().Set("X-Backend-Id", id)
			fmt.Fprintf(w, "plain %s %s", id, r.URL.Path)
			return
		}
		if status != 0 {
			http.Error(w, "unavailable", status)
			return
		}
		c, err := up.Upgrade(w, r, http.Header{"X-Backend-Id": {id}})
		if err != nil {
			return
		}
		tb.mu.Lock()
		tb.conns[c] = true
		tb.upgrades++
		tb.mu.Unlock()
		defer func() {
			tb.mu.Lock()
			delete(tb.conns, c)
			tb.mu.Unlock()
			c.Close()
		}()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				code := -1
				if testing.Verbose() {
					println("test backend read error:", err.Error())
				}
				if ce, ok := err.(*websocket.CloseError); ok {
					code = ce.Code
				}
				select {
				case tb.closeCodes <- code:
				default:
				}
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	if ln == nil {
		tb.srv = httptest.NewServer(mux)
		tb.addr = tb.srv.Listener.Addr().String()
	} else {
		tb.srv = httptest.NewUnstartedServer(mux)
		tb.srv.Listener = ln
		tb.srv.Start()
		tb.addr = "unix:" + ln.Addr().String()
	}
	t.Cleanup(tb.close)
	return tb
}

func (tb *testBackend) close() {
	tb.dropAll()
	tb.srv.CloseClientConnections()
	tb.srv.Close()
}

// dropAll closes every WebSocket connection's TCP connection abruptly.
func (tb *testBackend) dropAll() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for c := range tb.conns {
		c.NetConn().Close()
	}
}

func (tb *testBackend) open() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.conns)
}

func (tb *testBackend) setStatus(s int) {
	tb.mu.Lock()
	tb.status = s
	tb.mu.Unlock()
}

func (tb *testBackend) header() http.Header {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.lastReq
}

// refusingAddr returns a loopback address where nothing listens.
func refusingAddr(t *testing.T) string { return proctest.UnusedAddr(t) }

// testProxy is a Handler served over real TLS on 127.0.0.1.
type testProxy struct {
	h     *Handler
	bal   *balancer.Balancer
	store *registry.Store
	addr  string
	roots *x509.CertPool

	listener *Listener
}

type backendSpec struct {
	addr   string
	weight int
}

func startProxy(t testing.TB, opts Options, backends ...backendSpec) *testProxy {
	return startProxyWith(t, opts, nil, backends...)
}

// startProxyWith is startProxy with a hook that adjusts the Handler before
// it starts serving.
func startProxyWith(t testing.TB, opts Options, adjust func(*Handler), backends ...backendSpec) *testProxy {
	t.Helper()
	return startProxyLayers(t, opts, adjust, nil, backends...)
}

// startProxyLayers is startProxyWith with accept layers.
func startProxyLayers(t testing.TB, opts Options, adjust func(*Handler), layers []AcceptLayer, backends ...backendSpec) *testProxy {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	ps := registry.PoolSpec{Name: "app"}
	for _, b := range backends {
		ps.Backends = append(ps.Backends, registry.BackendSpec{Address: b.addr, Weight: max(b.weight, 1)})
	}
	if _, err := store.Apply([]registry.PoolSpec{ps}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	bal := balancer.New(store, balancer.Options{Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	balDone := make(chan struct{})
	go func() { defer close(balDone); _ = bal.Run(ctx) }()

	opts.Balancer = bal
	opts.Logger = logger
	if opts.Routes == nil {
		opts.Routes = []Route{{Pool: "app"}}
	}
	h := New(opts)
	if adjust != nil {
		adjust(h)
	}
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = h.Run(ctx) }()

	certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := wstls.NewProvider(wstls.Options{Certs: []tls.Certificate{pair}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h.Server()
	pl := NewListener(ln, ListenerOptions{TLS: prov.TLSConfig(), HandshakeTimeout: opts.HeaderTimeout, Layers: layers, Observer: opts.Observer, Logger: logger})
	srvDone, lnDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(lnDone); _ = pl.Run(ctx) }()
	go func() { defer close(srvDone); _ = srv.Serve(pl) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-srvDone
		h.Close()
		cancel()
		<-lnDone
		<-balDone
		<-runDone
	})
	return &testProxy{h: h, bal: bal, store: store, addr: ln.Addr().String(), roots: roots, listener: pl}
}

func (p *testProxy) url(path string) string { return "wss://" + p.addr + path }

func (p *testProxy) dialer() *websocket.Dialer {
	return &websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: p.roots, ServerName: "localhost"},
		HandshakeTimeout: 5 * time.Second,
	}
}

// dial opens a WebSocket through the proxy and returns it with the id of
// the backend that took it.
func (p *testProxy) dial(t *testing.T, path string, hdr http.Header) (*websocket.Conn, string) {
	t.Helper()
	c, resp, err := p.dialer().Dial(p.url(path), hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("Dial(%s) error = %v (status %d)", path, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp.Header.Get("X-Backend-Id")
}

func (p *testProxy) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots, ServerName: "localhost"}},
		Timeout:   5 * time.Second,
	}
}

// rawRequest sends req verbatim over TLS and returns the response.
func (p *testProxy) rawRequest(t *testing.T, req string) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: p.roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("ReadResponse() error = %v", err)
	}
	return resp
}

// waitFor polls cond until it holds, failing the test after a while.
var waitFor = proctest.WaitFor
