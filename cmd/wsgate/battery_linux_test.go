package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/proctest"
)

// The battery (issue 12, item 7): one running wsgate is attacked in the
// ways a proxy on the internet is — bytes that are not TLS, TLS handshakes
// that stop half-way, broken and oversized upgrade requests, hundreds of
// connections dribbling their headers, broken frames, a client that never
// reads — with one ordinary connection open throughout. Afterwards it must
// be the same process, still echo, and be back to the goroutines and file
// descriptors it had before, and near its memory. Linux only: the figures
// come from /proc.

const (
	// batteryHandshakeTimeout is limits.tls_handshake_timeout: the time a
	// client has for its TLS handshake.
	batteryHandshakeTimeout = 1500 * time.Millisecond
	// batteryHeaderTimeout is limits.header_timeout: the time a client has
	// for its request headers, after the handshake.
	batteryHeaderTimeout = 1500 * time.Millisecond
	// batteryWriteTimeout is tunnels.write_timeout.
	batteryWriteTimeout = time.Second
	// closeSlack is how long after its deadline a connection may still be
	// seen open: scheduling on a loaded machine.
	closeSlack = 1500 * time.Millisecond
	// slowlorisConns is how many connections dribble their headers at once.
	slowlorisConns = 300
	// rssTolerance is how far above its baseline wsgate's resident memory
	// may stay after the battery (and a garbage collection). The Go
	// runtime keeps some of what it grew to — goroutine stacks, span and
	// page caches — and returns the rest to the kernel gradually: we have
	// seen 4–6 MiB kept, of the 12 MiB the 300 slowloris connections
	// added at their peak.
	rssTolerance = 8 << 20
	// heapTolerance is how far above its baseline the live heap may be
	// after a garbage collection: what wsgate still references.
	heapTolerance = 1 << 20
	// settleTimeout bounds every wait for figures to settle or come back.
	settleTimeout = 15 * time.Second
)

// figures are a process's resource counts.
type figures struct {
	goroutines int   // from the admin listener's /debug/pprof/goroutine
	fds        int   // entries in /proc/PID/fd
	rss        int64 // VmRSS from /proc/PID/status, in bytes
	heap       int64 // HeapAlloc from /debug/pprof/heap: live heap bytes
}

func (f figures) String() string {
	return fmt.Sprintf("%d goroutines, %d open fds, RSS %.1f MiB, heap %.1f MiB",
		f.goroutines, f.fds, float64(f.rss)/(1<<20), float64(f.heap)/(1<<20))
}

// watcher reads a running wsgate's figures. Its admin client keeps one
// connection open throughout, so that every reading counts the same one
// connection (and goroutine) of its own.
type watcher struct {
	g      *gate
	pid    int
	client *http.Client
}

func newWatcher(g *gate) *watcher {
	return &watcher{g: g, pid: g.Cmd.Process.Pid, client: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxConnsPerHost: 1},
	}}
}

// get returns the body of the admin listener's path.
func (w *watcher) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := w.client.Get(w.g.adminURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
	}
	return string(b)
}

// figures reads wsgate's figures; with gc, after a garbage collection
// (pprof's heap profile with gc=1), so that the heap and memory figures
// show what wsgate holds rather than garbage an idle process may not
// collect for minutes.
func (w *watcher) figures(t *testing.T, gc bool) figures {
	t.Helper()
	var f figures
	heap := "/debug/pprof/heap?debug=1"
	if gc {
		heap += "&gc=1"
	}
	for line := range strings.Lines(w.get(t, heap)) {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			f.heap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	goroutines := w.get(t, "/debug/pprof/goroutine?debug=1")
	if _, err := fmt.Sscanf(goroutines, "goroutine profile: total %d", &f.goroutines); err != nil {
		t.Fatalf("goroutine profile: %v; want it to begin \"goroutine profile: total N\"", err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w.pid))
	if err != nil {
		t.Fatal(err)
	}
	f.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			f.rss = kb << 10
		}
	}
	if f.heap == 0 || f.rss == 0 {
		t.Fatalf("no HeapAlloc or VmRSS figure: %v", f)
	}
	return f
}

// dump logs wsgate's goroutines and open files, to show what is left.
func (w *watcher) dump(t *testing.T) {
	t.Helper()
	t.Logf("wsgate's goroutines:\n%s", w.get(t, "/debug/pprof/goroutine?debug=1"))
	dir := fmt.Sprintf("/proc/%d/fd", w.pid)
	fds, _ := os.ReadDir(dir)
	var files []string
	for _, fd := range fds {
		target, _ := os.Readlink(dir + "/" + fd.Name())
		files = append(files, fd.Name()+" → "+target)
	}
	t.Logf("wsgate's open files: %s", strings.Join(files, ", "))
}

// settled returns the figures once goroutines and file descriptors have
// stayed the same for 2 s, longer than an idle tunnel takes to park (and
// end its goroutines), read after a garbage collection.
func (w *watcher) settled(t *testing.T) figures {
	t.Helper()
	prev, since := w.figures(t, false), time.Now()
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); {
		<-time.After(200 * time.Millisecond)
		f := w.figures(t, false)
		if f.goroutines != prev.goroutines || f.fds != prev.fds {
			prev, since = f, time.Now()
		} else if time.Since(since) >= 2*time.Second {
			return w.figures(t, true)
		}
	}
	t.Fatalf("wsgate's figures did not settle within %v; last %v", settleTimeout, prev)
	return prev
}

// backTo polls until the goroutines and file descriptors are back to
// base's (or fewer), and the live heap and resident memory within their
// tolerances of it; it returns the figures then and how long that took.
func (w *watcher) backTo(t *testing.T, base figures) (figures, time.Duration) {
	t.Helper()
	start := time.Now()
	var f figures
	for time.Since(start) < settleTimeout {
		f = w.figures(t, true)
		if f.goroutines <= base.goroutines && f.fds <= base.fds &&
			f.heap <= base.heap+heapTolerance && f.rss <= base.rss+rssTolerance {
			return f, time.Since(start)
		}
		<-time.After(200 * time.Millisecond)
	}
	t.Errorf("after the battery: %v; want the baseline's goroutines and fds or fewer, heap within %d MiB, RSS within %d MiB (%v) within %v",
		f, heapTolerance>>20, rssTolerance>>20, base, settleTimeout)
	w.dump(t)
	return f, time.Since(start)
}

func TestBattery(t *testing.T) {
	// wsgate as users run it: without the race detector, whose runtime
	// never gives memory back.
	began := time.Now()
	bins, err := proctest.BuildPlain(t.TempDir(), ".")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built wsgate without -race in %v", time.Since(began).Round(time.Millisecond))

	_, echoAddr := startBackend(t, "echo")
	flood := newToggleBackend(t, "flood")
	g := startGateWith(t, gateConfig{
		bin:       bins[0],
		backends:  []string{echoAddr},
		adminKeys: "  pprof: true\n",
		pools:     fmt.Sprintf("  - name: flood\n    backends:\n      - address: %s\n", flood.addr()),
		routes:    "  - path_prefix: /flood\n    pool: flood\n",
		extra: fmt.Sprintf("limits:\n  tls_handshake_timeout: %v\n  header_timeout: %v\ntunnels:\n  write_timeout: %v\n",
			batteryHandshakeTimeout, batteryHeaderTimeout, batteryWriteTimeout),
	})
	w := newWatcher(g)

	// Warm up: WebSocket connections, and a plain request, after which
	// wsgate keeps an idle connection to the backend for the next one.
	for i := range 5 {
		c, _ := g.dial(t, "/ws")
		echo(t, c, fmt.Sprintf("warm-up %d", i))
		c.Close()
	}
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: g.roots, ServerName: "localhost"},
		DisableKeepAlives: true,
	}}
	resp, err := plain.Get("https://" + g.proxyAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// And one ordinary connection, open throughout.
	bystander, _ := g.dial(t, "/ws")
	echo(t, bystander, "before the battery")
	base := w.settled(t)
	t.Logf("wsgate pid %d, baseline: %v", w.pid, base)

	t.Run("not TLS", func(t *testing.T) { notTLS(t, g) })
	t.Run("half TLS handshakes", func(t *testing.T) { halfHandshakes(t, g) })
	t.Run("bad upgrades", func(t *testing.T) { badUpgrades(t, g) })
	t.Run("huge headers", func(t *testing.T) { hugeHeaders(t, g) })
	var peak figures
	t.Run("slowloris", func(t *testing.T) { peak = slowloris(t, g, w) })
	t.Run("bad frames", func(t *testing.T) { badFrames(t, g, bystander) })
	t.Run("stalled reader", func(t *testing.T) { stalledReader(t, g, flood) })

	if !g.Running() {
		t.Fatalf("wsgate (pid %d) exited during the battery", w.pid)
	}
	echo(t, bystander, "after the battery")
	c, _ := g.dial(t, "/ws")
	echo(t, c, "a new connection after the battery")
	c.Close()
	// The admin API calls above (getBackends) keep a connection to the
	// admin listener: closed, to count only what wsgate holds of its own.
	http.DefaultClient.CloseIdleConnections()
	after, took := w.backTo(t, base)
	t.Logf("wsgate pid %d: baseline %v", w.pid, base)
	t.Logf("wsgate pid %d: at the slowloris peak %v", w.pid, peak)
	t.Logf("wsgate pid %d: after the battery (same process, echo works) %v, %v later", w.pid, after, took.Round(time.Millisecond))
}

// sendRaw opens a TCP connection to wsgate's TLS port, sends b, and
// waits for wsgate to close the connection, within the handshake deadline
// (plus closeSlack). It returns how long that took and what wsgate sent.
// It may be called from any goroutine.
func (g *gate) sendRaw(b []byte) (time.Duration, []byte, error) {
	c, err := net.DialTimeout("tcp", g.proxyAddr, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		return 0, nil, err
	}
	return closedWithin(c, batteryHandshakeTimeout+closeSlack)
}

// dialTLS opens a connection to wsgate's TLS port and completes the
// handshake. The test's cleanup closes it.
func (g *gate) dialTLS(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := g.tlsConn(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tlsConn is dialTLS for any goroutine: the caller closes the connection.
// With sessions, the handshake resumes a session from it when it can (and
// so costs both sides much less).
func (g *gate) tlsConn(sessions tls.ClientSessionCache) (*tls.Conn, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{RootCAs: g.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"},
			ClientSessionCache: sessions},
	}
	c, err := d.Dial("tcp", g.proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("TLS dial %s: %w", g.proxyAddr, err)
	}
	return c.(*tls.Conn), nil
}

// closedWithin reads c until wsgate closes it, for at most d. It returns
// how long that took and what was read, or an error if c was still open.
func closedWithin(c net.Conn, d time.Duration) (time.Duration, []byte, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	got, err := io.ReadAll(c)
	took := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return took, got, fmt.Errorf("still open after %v", d)
	}
	return took, got, nil // EOF, or reset: closed either way
}

// rawCase is bytes to send on a TCP connection to the TLS port.
type rawCase struct {
	name string
	send []byte
}

// sendRawAll sends each case's bytes on 20 connections, all cases at
// once, and checks that wsgate closes every connection within the
// handshake deadline (plus closeSlack). It logs how long that took.
func sendRawAll(t *testing.T, g *gate, cases []rawCase) {
	const per = 20
	type result struct {
		took     []time.Duration
		answered atomic.Int64 // bytes wsgate sent
		open     atomic.Int64 // connections wsgate left open
		err      atomic.Value // the first error
	}
	results := make([]result, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		r := &results[i]
		r.took = make([]time.Duration, per)
		for j := range per {
			wg.Go(func() {
				d, got, err := g.sendRaw(tc.send)
				if err != nil {
					r.open.Add(1)
					r.err.CompareAndSwap(nil, err)
				}
				r.took[j] = d
				r.answered.Add(int64(len(got)))
			})
		}
	}
	wg.Wait()
	for i, tc := range cases {
		r := &results[i]
		if n := r.open.Load(); n > 0 {
			t.Errorf("%s: %d of %d connections not closed: %v; want each closed within the handshake deadline (%v)", tc.name, n, per, r.err.Load(), batteryHandshakeTimeout)
			continue
		}
		slices.Sort(r.took)
		t.Logf("%s: %d connections closed after %v–%v (handshake deadline %v), %d bytes answered in all",
			tc.name, per, r.took[0].Round(time.Millisecond), r.took[per-1].Round(time.Millisecond), batteryHandshakeTimeout, r.answered.Load())
	}
}

// notTLS: random bytes and plain HTTP on the TLS port are closed (plain
// HTTP after a 400 that names the mistake).
func notTLS(t *testing.T, g *gate) {
	garbage := make([]byte, 4096)
	_, _ = rand.NewChaCha8([32]byte{'w', 's', 'g', 'a', 't', 'e'}).Read(garbage)
	sendRawAll(t, g, []rawCase{
		{"garbage", garbage},
		{"plain HTTP", []byte("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")},
	})
}

// clientHello returns a real TLS ClientHello record for localhost.
func clientHello(t *testing.T) []byte {
	t.Helper()
	ours, theirs := net.Pipe()
	defer ours.Close()
	go func() {
		defer theirs.Close()
		_ = tls.Client(theirs, &tls.Config{ServerName: "localhost"}).Handshake()
	}()
	_ = ours.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(ours, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:5]))
	if _, err := io.ReadFull(ours, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// halfHandshakes: TLS handshakes that stop half-way are closed at the
// handshake deadline (limits.tls_handshake_timeout).
func halfHandshakes(t *testing.T, g *gate) {
	hello := clientHello(t)
	sendRawAll(t, g, []rawCase{
		{"a record header", hello[:5]},
		{"half a ClientHello", hello[:len(hello)/2]},
		{"a ClientHello, then nothing", hello},
	})
}

// upgradeHeaders are the headers of a valid upgrade request for /ws.
var upgradeHeaders = []string{
	"Host: localhost",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Sec-WebSocket-Version: 13",
}

// upgradeRequest is the request line and upgradeHeaders, without the
// header named drop and with more headers added.
func upgradeRequest(line, drop string, more ...string) string {
	var b strings.Builder
	b.WriteString(line + "\r\n")
	for _, h := range upgradeHeaders {
		if drop == "" || !strings.HasPrefix(h, drop+":") {
			b.WriteString(h + "\r\n")
		}
	}
	for _, h := range more {
		b.WriteString(h + "\r\n")
	}
	return b.String() + "\r\n"
}

// roundTrip sends a raw request over a new TLS connection and reads the
// answer.
func (g *gate) roundTrip(t *testing.T, req string) (*http.Response, error) {
	t.Helper()
	c := g.dialTLS(t)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// badUpgrades: upgrade requests with required headers missing or doubled
// get 400.
func badUpgrades(t *testing.T, g *gate) {
	const get = "GET /ws HTTP/1.1"
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"no Host", upgradeRequest(get, "Host")},
		{"no Upgrade", upgradeRequest(get, "Upgrade")},
		{"no Connection", upgradeRequest(get, "Connection")},
		{"no Sec-WebSocket-Key", upgradeRequest(get, "Sec-WebSocket-Key")},
		{"no Sec-WebSocket-Version", upgradeRequest(get, "Sec-WebSocket-Version")},
		{"two Hosts", upgradeRequest(get, "", "Host: example.com")},
		{"two Sec-WebSocket-Keys", upgradeRequest(get, "", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==")},
		{"the same Sec-WebSocket-Key twice", upgradeRequest(get, "", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")},
		{"two Sec-WebSocket-Versions", upgradeRequest(get, "", "Sec-WebSocket-Version: 8")},
		{"a short Sec-WebSocket-Key", upgradeRequest(get, "Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=")},
		{"POST", upgradeRequest("POST /ws HTTP/1.1", "")},
		{"HTTP/1.0", upgradeRequest("GET /ws HTTP/1.0", "")},
	} {
		resp, err := g.roundTrip(t, tc.req)
		switch {
		case err != nil:
			t.Errorf("%s: %v; want 400", tc.name, err)
		case resp.StatusCode != http.StatusBadRequest:
			t.Errorf("%s: %s; want 400", tc.name, resp.Status)
		}
	}
}

// hugeHeaders: headers over limits.max_header_bytes (16 KiB) get 431;
// 1 MiB of them gets 431, or the connection closed.
func hugeHeaders(t *testing.T, g *gate) {
	resp, err := g.roundTrip(t, upgradeRequest("GET /ws HTTP/1.1", "", "X-Big: "+strings.Repeat("a", 18<<10)))
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("18 KiB of headers: %v, %v; want 431", resp, err)
	}

	c := g.dialTLS(t)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	big := upgradeRequest("GET /ws HTTP/1.1", "", "X-Big: "+strings.Repeat("a", 1<<20))
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, big)
		wrote <- err
	}()
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	switch {
	case err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge:
		t.Errorf("1 MiB of headers: %s; want 431 or the connection closed", resp.Status)
	case err == nil:
		t.Logf("1 MiB of headers: %s", resp.Status)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("1 MiB of headers: no answer and still open after 5s; want 431 or the connection closed")
	default:
		t.Logf("1 MiB of headers: closed without an answer (%v)", err)
	}
	c.Close()
	<-wrote //nolint:errcheck // the write may fail once wsgate answers or closes; only the answer counts
}

// lorisConn is one slowloris connection.
type lorisConn struct {
	c      *tls.Conn
	began  time.Time    // its request began (the TLS handshake was done)
	closed atomic.Int64 // when wsgate closed it, unix nanoseconds; 0 while open
}

// slowloris: hundreds of connections dribble their header bytes; each is
// closed at the header deadline (limits.header_timeout), and an ordinary
// client gets through while they do.
func slowloris(t *testing.T, g *gate, w *watcher) (peak figures) {
	// The connections resume one TLS session, so that opening hundreds
	// takes well under the header timeout even on a loaded machine: one
	// request and its answer get the session ticket.
	sessions := tls.NewLRUClientSessionCache(1)
	first, err := g.tlsConn(sessions)
	if err != nil {
		t.Fatal(err)
	}
	_ = first.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(first, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(first); err != nil {
		t.Fatal(err)
	}
	first.Close()

	// Opened 8 at a time, each read by a goroutine of its own that notes
	// when wsgate closes it.
	opened := time.Now()
	conns := make([]*lorisConn, slowlorisConns)
	var readers sync.WaitGroup
	defer readers.Wait()
	var opening sync.WaitGroup
	next := make(chan int)
	for range 8 {
		opening.Go(func() {
			for i := range next {
				c, err := g.tlsConn(sessions)
				if err == nil {
					_, err = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\n")
				}
				if err != nil {
					t.Errorf("slowloris connection %d: %v", i, err)
					continue
				}
				l := &lorisConn{c: c, began: time.Now()}
				conns[i] = l
				readers.Go(func() {
					if _, _, err := closedWithin(c, batteryHeaderTimeout+closeSlack+5*time.Second); err == nil {
						l.closed.Store(time.Now().UnixNano())
					}
				})
			}
		})
	}
	for i := range conns {
		next <- i
	}
	close(next)
	opening.Wait()
	conns = slices.DeleteFunc(conns, func(l *lorisConn) bool { return l == nil })
	openedIn := time.Since(opened)
	defer func() {
		for _, l := range conns {
			l.c.Close()
		}
	}()
	open := func() int {
		n := 0
		for _, l := range conns {
			if l.closed.Load() == 0 {
				n++
			}
		}
		return n
	}
	peakOpen := open()

	// Ordinary clients while the attack lasts: each is a dial, an echo
	// and a close.
	var ordinary, ordinaryFailed, duringPeak atomic.Int64
	var slowest atomic.Int64
	stop := make(chan struct{})
	var clients sync.WaitGroup
	clients.Go(func() {
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: g.roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second}
		for range 200 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			atAttack := open()
			began := time.Now()
			c, _, err := d.Dial("wss://"+g.proxyAddr+"/ws", nil)
			if err == nil {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if err = c.WriteMessage(websocket.TextMessage, []byte("ordinary")); err == nil {
					_, _, err = c.ReadMessage()
				}
				c.Close()
			}
			ordinary.Add(1)
			if err != nil {
				ordinaryFailed.Add(1)
				t.Errorf("ordinary client during slowloris (%d connections dribbling): %v", atAttack, err)
				continue
			}
			took := time.Since(began)
			if took > time.Duration(slowest.Load()) {
				slowest.Store(int64(took))
			}
			if atAttack >= slowlorisConns/2 {
				duringPeak.Add(1)
			}
		}
	})

	// Dribble: a byte every 100 ms on every open connection.
	header := []byte("X-Dribble: " + strings.Repeat("a", 100))
	sampled := false
	deadline := time.Now().Add(batteryHeaderTimeout + closeSlack + 5*time.Second)
	for k := 0; open() > 0 && time.Now().Before(deadline); k++ {
		<-time.After(100 * time.Millisecond)
		for _, l := range conns {
			if l.closed.Load() == 0 {
				_ = l.c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = l.c.Write(header[k%len(header) : k%len(header)+1])
			}
		}
		if n := open(); n > peakOpen {
			peakOpen = n
		}
		if !sampled && time.Since(conns[len(conns)-1].began) > batteryHeaderTimeout/2 {
			peak, sampled = w.figures(t, false), true
		}
	}
	close(stop)
	clients.Wait()

	var lifetimes []time.Duration
	for _, l := range conns {
		if closed := l.closed.Load(); closed != 0 {
			lifetimes = append(lifetimes, time.Unix(0, closed).Sub(l.began))
		}
	}
	if n := len(conns) - len(lifetimes); n > 0 {
		t.Errorf("%d slowloris connections still open %v after the first request began; want each closed at the header deadline (%v)",
			n, time.Since(conns[0].began).Round(time.Millisecond), batteryHeaderTimeout)
	}
	if len(lifetimes) == 0 {
		t.Fatal("no slowloris connection was closed")
	}
	slices.Sort(lifetimes)
	if slowest := lifetimes[len(lifetimes)-1]; slowest > batteryHeaderTimeout+closeSlack {
		t.Errorf("slowest slowloris connection closed %v after its request began; want within the header deadline (%v) + %v", slowest, batteryHeaderTimeout, closeSlack)
	}
	if peakOpen < slowlorisConns/2 {
		t.Errorf("at most %d slowloris connections were open at once; the attack needs %d", peakOpen, slowlorisConns/2)
	}
	if duringPeak.Load() == 0 {
		t.Errorf("no ordinary client got through while %d or more connections dribbled", slowlorisConns/2)
	}
	t.Logf("slowloris: %d connections opened in %v, %d at once at most, closed %v–%v after their requests began (header deadline %v); wsgate meanwhile: %v",
		slowlorisConns, openedIn.Round(time.Millisecond), peakOpen, lifetimes[0].Round(time.Millisecond), lifetimes[len(lifetimes)-1].Round(time.Millisecond), batteryHeaderTimeout, peak)
	t.Logf("slowloris: %d ordinary clients meanwhile (%d while half or more of the attack was on), %d failed, slowest dial+echo %v",
		ordinary.Load(), duringPeak.Load(), ordinaryFailed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	return peak
}

// maskedFrame returns a client frame: the first header byte b0, a payload
// length field for n (7 bits, 16 or 64), a masking key and payload masked
// with it.
func maskedFrame(b0 byte, n uint64, payload []byte) []byte {
	f := []byte{b0}
	switch {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, n)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// badFrames: frames with reserved bits, reserved opcodes, impossible
// lengths. wsgate relays bytes, not messages: the reference backend
// (gorilla) answers them as it sees fit and its close code reaches the
// client unchanged, or the tunnel ends; wsgate and its other tunnels go
// on.
func badFrames(t *testing.T, g *gate, bystander *websocket.Conn) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  int // the close code the client must get; 0: any, as long as the tunnel ends
	}{
		{"reserved bits", maskedFrame(0x80|0x70|0x1, 2, []byte("hi")), websocket.CloseProtocolError},
		{"reserved opcode", maskedFrame(0x80|0x3, 2, []byte("hi")), websocket.CloseProtocolError},
		{"a 200-byte ping", maskedFrame(0x80|0x9, 200, make([]byte, 200)), websocket.CloseProtocolError},
		{"a 2^62-byte message", maskedFrame(0x80|0x2, 1<<62, make([]byte, 64<<10)), websocket.CloseMessageTooBig},
		{"a length with the top bit set", maskedFrame(0x80|0x2, 1<<63|1, make([]byte, 1024)), 0},
	} {
		c, _ := g.dial(t, "/ws")
		echo(t, c, "before "+tc.name)
		began := time.Now()
		if _, err := c.NetConn().Write(tc.frame); err != nil {
			t.Errorf("%s: write: %v", tc.name, err)
			continue
		}
		code := closeCode(t, c)
		took := time.Since(began).Round(time.Millisecond)
		switch {
		case code == -1:
			t.Errorf("%s: the tunnel did not end with a close frame or EOF within 10s", tc.name)
		case tc.want != 0 && code != tc.want:
			t.Errorf("%s: close code %d, want %d (the backend's)", tc.name, code, tc.want)
		default:
			t.Logf("%s: the client got close code %d after %v", tc.name, code, took)
		}
		c.Close()
		echo(t, bystander, "after "+tc.name)
	}
}

// stalledReader: a client that never reads while its backend floods it is
// cut after tunnels.write_timeout, and the backend gets close 1001.
func stalledReader(t *testing.T, g *gate, flood *toggleBackend) {
	began := time.Now()
	g.dial(t, "/flood") // never read
	select {
	case code := <-flood.floodEnds:
		took := time.Since(began)
		if code != websocket.CloseGoingAway {
			t.Errorf("the flooding backend got close code %d, want 1001", code)
		}
		if took < batteryWriteTimeout {
			t.Errorf("the stalled client was cut %v after it connected, before the write timeout (%v)", took, batteryWriteTimeout)
		}
		t.Logf("stalled reader: cut %v after it connected (write timeout %v), %.1f MiB flooded; the backend got close %d",
			took.Round(time.Millisecond), batteryWriteTimeout, float64(flood.flooded.Load())/(1<<20), code)
	case <-time.After(batteryWriteTimeout + 10*time.Second):
		t.Fatalf("the flooding backend's connection still open %v after its client stopped reading (write timeout %v)", time.Since(began), batteryWriteTimeout)
	}
	waitFor(t, "the stalled tunnel to be released", func() bool { return backendState(t, g, flood.addr()).ActiveConnections == 0 })
	if !strings.Contains(g.Stderr.String(), "peer stopped reading; tunnel closed") {
		t.Error(`wsgate logged no "peer stopped reading; tunnel closed"`)
	}
}
