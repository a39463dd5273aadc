package sockio

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	wstls "github.com/wsgate/wsgate/tls"
)

// These tests hold for every Conn the platform (or build: the
// wsgate_portable tag) gives: CI runs them with and without the tag.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair is a connected Conn (the proxy's side) and its peer.
type pair struct {
	conn Conn
	peer net.Conn
}

// kinds are the sockets a tunnel has: a plain TCP backend, and a TLS
// client accepted through Accepted.
var kinds = []string{"tcp", "tls"}

// newPair returns a Conn of kind with write timeout wt, and its peer.
func newPair(t testing.TB, kind string, wt time.Duration) pair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw := <-accepted
	if raw == nil {
		t.Fatal("accept failed")
	}
	var c net.Conn = raw
	if kind == "tls" {
		cfg, roots := tlsConfigs(t)
		srv := tls.Server(Accepted(raw), cfg)
		cli := tls.Client(peer, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		errc := make(chan error, 1)
		go func() { errc <- cli.Handshake() }()
		if err := srv.Handshake(); err != nil {
			t.Fatalf("server handshake: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("client handshake: %v", err)
		}
		c, peer = srv, cli
	}
	p := pair{conn: New(c, wt), peer: peer}
	t.Cleanup(func() { p.conn.Close(); p.peer.Close() })
	return p
}

var (
	tlsOnce  sync.Once
	tlsCfg   *tls.Config
	tlsRoots *x509.CertPool
	tlsErr   error
)

func tlsConfigs(t testing.TB) (*tls.Config, *x509.CertPool) {
	tlsOnce.Do(func() {
		certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost"}, time.Hour)
		if err != nil {
			tlsErr = err
			return
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			tlsErr = err
			return
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}}
		tlsRoots = x509.NewCertPool()
		tlsRoots.AppendCertsFromPEM(certPEM)
	})
	if tlsErr != nil {
		t.Fatal(tlsErr)
	}
	return tlsCfg, tlsRoots
}

var errStop = errors.New("stop")

func forKinds(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

func TestRelayKeepsWhatFnLeaves(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPair(t, kind, 0)
		if _, err := io.WriteString(p.peer, "hello world"); err != nil {
			t.Fatal(err)
		}
		_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		err := p.conn.Relay(func(b []byte) (int, error) {
			k := min(5, len(b))
			got = append(got, b[:k]...)
			return k, errStop
		})
		if !errors.Is(err, errStop) || string(got) != "hello" {
			t.Fatalf("first Relay = %q, %v; want %q, errStop", got, err, "hello")
		}
		got = nil
		err = p.conn.Relay(func(b []byte) (int, error) {
			got = append(got, b...)
			if bytes.HasSuffix(got, []byte("world")) {
				return len(b), errStop
			}
			return len(b), nil
		})
		if !errors.Is(err, errStop) || string(got) != " world" {
			t.Fatalf("second Relay = %q, %v; want %q first", got, err, " world")
		}
	})
}

// The end of the stream that comes with the last bytes is seen at once.
func TestRelayEndsWithTheLastBytes(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		for range 20 {
			p := newPair(t, kind, 0)
			_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(p.peer, "last words"); err != nil {
				t.Fatal(err)
			}
			// A FIN right behind them (without close_notify for TLS, as many
			// clients end).
			raw := p.peer
			if tc, ok := raw.(*tls.Conn); ok {
				raw = tc.NetConn()
			}
			_ = raw.(*net.TCPConn).CloseWrite()
			var got []byte
			start := time.Now()
			err := p.conn.Relay(func(b []byte) (int, error) {
				got = append(got, b...)
				return len(b), nil
			})
			if string(got) != "last words" || !errors.Is(err, io.EOF) {
				t.Fatalf("Relay = %q, %v; want %q, io.EOF", got, err, "last words")
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				t.Fatalf("Relay saw the end %v after the last bytes", d)
			}
		}
	})
}

func TestRelayWokenByDeadline(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPair(t, kind, 0)
		done := make(chan error, 1)
		go func() { done <- p.conn.Relay(func(b []byte) (int, error) { return len(b), nil }) }()
		time.Sleep(20 * time.Millisecond) // let it wait; the deadline wakes it either way
		_ = p.conn.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Relay woken by a past deadline = %v, want os.ErrDeadlineExceeded", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a past read deadline did not wake Relay")
		}
	})
}

// fill writes to c until a write fails, from a goroutine; it returns the
// error and how long the failing write took.
func fill(c Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

func TestWriteTimeout(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		const wt = 200 * time.Millisecond
		p := newPair(t, kind, wt) // the peer never reads
		start := time.Now()
		select {
		case err := <-fill(p.conn):
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write to a peer that stopped reading = %v, want os.ErrDeadlineExceeded", err)
			}
			t.Logf("write failed %v after the first write began (write timeout %v)", time.Since(start).Round(time.Millisecond), wt)
		case <-time.After(10 * time.Second):
			t.Fatal("Write to a peer that stopped reading never failed")
		}
	})
}

// A slow reader that keeps taking bytes is not cut: each byte it takes
// starts the write timeout again.
//
// Only the fast path can tell: a socket becomes writable again only when a
// good part of its send buffer is free, so a slow reader may take bytes
// for long without a write moving on; the fast path asks the kernel how
// much of the send queue the peer took (SIOCOUTQ). The portable Conn
// counts the timeout per write call (documented in the README).
func TestWriteTimeoutSparesSlowReaders(t *testing.T) {
	if !fastPath {
		t.Skip("the portable Conn measures the write timeout per write call")
	}
	forKinds(t, func(t *testing.T, kind string) {
		const wt = 300 * time.Millisecond
		p := newPair(t, kind, wt)
		stop := make(chan struct{})
		defer close(stop)
		// 128 KiB every 100 ms: over two of loopback's 64 KiB segments per
		// round, so that the receive window opens within the timeout (a
		// receiver announces a window only once a segment's worth is free).
		go func() {
			buf := make([]byte, 128<<10)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := io.ReadFull(p.peer, buf); err != nil {
					return
				}
			}
		}()
		// Far more than the socket buffers hold: it takes many of the
		// reader's rounds, each within the write timeout of the last.
		data := make([]byte, 16<<20)
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			if _, err := p.conn.Write(data[:1<<20]); err != nil {
				t.Fatalf("Write to a slow but steady reader after %v = %v", time.Since(start), err)
			}
		}
	})
}

// Closing never waits for a peer: a write waiting for one fails at once,
// and so does everything after.
func TestLimitWritesInThePastAborts(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPair(t, kind, 0) // no write timeout: only the abort ends it
		done := fill(p.conn)
		time.Sleep(100 * time.Millisecond) // the buffers fill in far less
		start := time.Now()
		p.conn.LimitWrites(time.Unix(1, 0))
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a waiting Write succeeded after LimitWrites in the past")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a waiting Write did not fail after LimitWrites in the past")
		}
		cw := make(chan error, 1)
		go func() { cw <- p.conn.CloseWrite() }()
		select {
		case err := <-cw:
			_ = err // it may fail (the abort); it must not wait
		case <-time.After(2 * time.Second):
			t.Fatal("CloseWrite waited for a peer after the abort")
		}
		if _, err := p.conn.Write([]byte("more")); err == nil {
			// Accepted at once is allowed only if the socket had room; it
			// has none here.
			t.Error("Write after the abort to a full socket succeeded")
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("abort, CloseWrite and Write took %v", d)
		}
	})
}

func TestPeekAndDiscardBeforeTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, roots := tlsConfigs(t)
	errc := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		if _, err := io.WriteString(c, "PREFIX 198.51.100.9:1234\n"); err != nil {
			errc <- err
			return
		}
		tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if _, err := io.WriteString(tc, "through TLS"); err != nil {
			errc <- err
			return
		}
		_, err = io.Copy(io.Discard, tc)
		errc <- err
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := Accepted(raw)
	defer cc.Close()
	_ = cc.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := cc.Peek(25)
	if err != nil || string(b) != "PREFIX 198.51.100.9:1234\n" {
		t.Fatalf("Peek(25) = %q, %v", b, err)
	}
	cc.Discard(25)
	cc.SetRemoteAddr(&net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 1234})
	srv := tls.Server(cc, cfg)
	if err := srv.Handshake(); err != nil {
		t.Fatalf("TLS handshake after Discard: %v", err)
	}
	if got := srv.RemoteAddr().String(); got != "198.51.100.9:1234" {
		t.Errorf("RemoteAddr() through TLS = %s, want the address set", got)
	}
	c := New(srv, 0)
	var got []byte
	err = c.Relay(func(b []byte) (int, error) {
		got = append(got, b...)
		if len(got) >= len("through TLS") {
			return len(b), errStop
		}
		return len(b), nil
	})
	if !errors.Is(err, errStop) || string(got) != "through TLS" {
		t.Fatalf("Relay after the prefix = %q, %v", got, err)
	}
	c.Close()
	if err := <-errc; err != nil && !errors.Is(err, io.EOF) {
		t.Logf("client: %v", err)
	}
}
