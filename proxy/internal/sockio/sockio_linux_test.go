//go:build linux && !wsgate_portable

package sockio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
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
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// record returns a TLS record header for a body of n bytes, then the body.
func record(typ byte, n int) []byte {
	return append([]byte{typ, 3, 3, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{typ}, n)...)
}

func TestRecordConn(t *testing.T) {
	client, server := tcpPair(t)
	rc := newRecordConn(server)
	if rc == nil {
		t.Fatal("newRecordConn() = nil for a TCP connection")
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))

	if rc.pending() {
		t.Error("pending() with nothing received = true")
	}
	// Two whole records and the first 3 bytes of a third, in one write.
	r1, r2, r3 := record(23, 10), record(23, 300), record(21, 2)
	stream := append(append(append([]byte{}, r1...), r2...), r3[:3]...)
	if _, err := client.Write(stream); err != nil {
		t.Fatal(err)
	}
	// Reads never cross a record boundary, and return a whole record at
	// once when it is here.
	p := make([]byte, 4096)
	for _, want := range [][]byte{r1, r2} {
		n, err := rc.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p[:n], want) {
			t.Fatalf("Read() = %d bytes %v..., want %d bytes", n, p[:min(n, 6)], len(want))
		}
	}
	// Only a partial header of the third record is left: not pending.
	if rc.pending() {
		t.Error("pending() with a partial record header = true")
	}
	n, err := rc.Read(p)
	if err != nil || !bytes.Equal(p[:n], r3[:3]) {
		t.Fatalf("Read() = %v, %v; want the 3 header bytes", p[:n], err)
	}
	if rc.bp != nil {
		t.Error("buffer still held after everything was read")
	}
	// The rest arrives.
	if _, err := client.Write(r3[3:]); err != nil {
		t.Fatal(err)
	}
	if err := rc.fill(); err != nil {
		t.Fatal(err)
	}
	if !rc.pending() {
		t.Error("pending() with the rest of the record buffered = false")
	}
	got, err := io.ReadAll(io.LimitReader(rc, int64(len(r3)-3)))
	if err != nil || !bytes.Equal(got, r3[3:]) {
		t.Fatalf("rest = %v, %v; want %v", got, err, r3[3:])
	}
	client.Close()
	if _, err := rc.Read(p); err != io.EOF {
		t.Errorf("Read() after the peer closed = %v, want io.EOF", err)
	}
}

func TestRawSockNext(t *testing.T) {
	client, server := tcpPair(t)
	sr := newRawSock(server)
	_ = server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := sr.next(); err == nil {
		t.Fatal("next() with no data returned before the deadline")
	}
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	bp, n, err := sr.next()
	if err != nil || string((*bp)[:n]) != "hello" {
		t.Fatalf("next() = %q, %v; want hello", (*bp)[:n], err)
	}
	putBuf(bp)
	client.Close()
	if _, _, err := sr.next(); err != io.EOF {
		t.Errorf("next() after close = %v, want io.EOF", err)
	}
}

func TestRecordConnNoWait(t *testing.T) {
	_, server := tcpPair(t)
	rc := newRecordConn(server)
	rc.noWait = true
	_, err := rc.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || err != ErrWouldBlock {
		t.Fatalf("Read() under noWait with nothing buffered = %v, want ErrWouldBlock (a timeout net.Error)", err)
	}
}

func TestRawSockWrite(t *testing.T) {
	client, server := tcpPair(t)
	// Small buffers, so that a write to a peer that does not read fills
	// them (autotuning can grow them to megabytes).
	_ = client.SetReadBuffer(64 << 10)
	_ = server.SetWriteBuffer(64 << 10)
	w := newRawSock(server)
	if w == nil {
		t.Fatal("newRawSock() = nil for a TCP connection")
	}

	// More than the socket buffers hold: Write must wait for room while
	// the peer reads, and deliver every byte in order.
	want := make([]byte, 16<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(len(want))))
		got <- b
	}()
	if n, err := w.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write(16 MiB) = %d, %v", n, err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written", len(b), len(want))
	}

	// Nobody reads now: once the buffers are full, the write deadline ends
	// the wait, with the bytes that did go out counted.
	_ = server.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := w.Write(want)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == len(want) {
		t.Fatalf("Write() to a peer that does not read = %d, %v; want some bytes and a deadline error", n, err)
	}
	_ = server.SetWriteDeadline(time.Time{})

	server.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write() after Close = %v, want net.ErrClosed", err)
	}
}

func TestRawSockWriteAfterReset(t *testing.T) {
	client, server := tcpPair(t)
	w := newRawSock(server)
	_ = client.SetLinger(0)
	client.Close() // an RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = w.Write([]byte("after the reset"))
		time.Sleep(time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || (!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("Write() to a reset connection = %v, want a write error with EPIPE or ECONNRESET", err)
	}
}

func TestRecordConnBatch(t *testing.T) {
	client, server := tcpPair(t)
	rc := newRecordConn(server)
	a, b := record(23, 16000), record(23, 300)
	huge := bytes.Repeat([]byte{7}, batchSize+1) // more than a batch holds
	rc.beginBatch()
	for _, p := range [][]byte{a, b, huge, a} {
		if n, err := rc.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) in a batch = %d, %v", len(p), n, err)
		}
	}
	if err := rc.endBatch(); err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(a, b, huge, a)
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer read %v; want the writes in order", err)
	}
	// After the batch, writes go out at once.
	if _, err := rc.Write(b); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, got[:len(b)]); err != nil || !bytes.Equal(got[:len(b)], b) {
		t.Fatalf("write after the batch: %v", err)
	}
}

func TestRawConnect(t *testing.T) {
	d := net.Dialer{Timeout: 5 * time.Second, ControlContext: rawConnect}
	for _, network := range []string{"tcp4", "tcp6"} {
		host := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
		ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
		if err != nil {
			t.Logf("%s: %v (skipped)", network, err)
			continue
		}
		addr := ln.Addr().String()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = io.Copy(c, c)
				c.Close()
			}
		}()
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("%s: Dial(%s) = %v", network, addr, err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Fatalf("%s: echo = %q, %v", network, got, err)
		}
		c.Close()
		ln.Close()
		// Nobody listens there now: the refusal comes back as from net.
		if _, err := d.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: Dial(closed port) = %v, want ECONNREFUSED", network, err)
		}
	}
}

// A second half-close is not an error, also once the peer has closed too
// (when shutdown(2) itself would fail with ENOTCONN): a tunnel half-closes
// a direction when its source ends and again before it closes.
func TestShutdownWriteTwice(t *testing.T) {
	client, server := tcpPair(t)
	s := newRawSock(server)
	if err := s.shutdownWrite(); err != nil {
		t.Fatalf("first shutdownWrite: %v", err)
	}
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read after the half-close = %d, %v; want 0, EOF", n, err)
	}
	client.Close()
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer's close = %d, %v; want 0, EOF", n, err)
	}
	if err := s.shutdownWrite(); err != nil {
		t.Fatalf("second shutdownWrite: %v", err)
	}
}

// BenchmarkLoopbackFloor is not wsgate: it measures what this machine's
// kernel charges for one 64-byte write(2) and the read(2) that receives it
// over a loopback TCP connection, on one goroutine. A proxy makes two such
// pairs per echoed round trip (client to backend and back), so twice this
// figure is the floor under any proxy's CPU per round trip here; see
// docs/benchmarks.md.
func BenchmarkLoopbackFloor(b *testing.B) {
	client, server := tcpPair(b)
	p := make([]byte, 64)
	q := make([]byte, BufSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Write(p); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(server, q[:len(p)]); err != nil {
			b.Fatal(err)
		}
	}
}

// Once the peer has reset the connection, shutdown(2) fails with ENOTCONN;
// the tunnel's second half-close then makes no system call.
func TestShutdownWriteAfterReset(t *testing.T) {
	client, server := tcpPair(t)
	s := newRawSock(server)
	if err := client.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	client.Close() // a reset
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the peer's reset = %v, want ECONNRESET", err)
	}
	if err := s.shutdownWrite(); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("shutdownWrite after a reset = %v, want ENOTCONN", err)
	}
	if !s.wshut.Load() {
		t.Error("shutdownWrite after ENOTCONN: not marked done; the next call would try again")
	}
	if err := s.shutdownWrite(); err != nil {
		t.Errorf("second shutdownWrite = %v, want nil", err)
	}
}

// The upgrade request goes out from inside the read that waits for its
// answer: no read finds the socket empty, and the answer comes back whole.
func TestHandshakeIOSendThenRead(t *testing.T) {
	client, server := tcpPair(t)
	const req, answer = "GET /ws HTTP/1.1\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\n\r\n"
	served := make(chan error, 1)
	go func() {
		got := make([]byte, len(req))
		if _, err := io.ReadFull(server, got); err != nil || string(got) != req {
			served <- errors.New("server read " + strconv.Quote(string(got)))
			return
		}
		_, err := io.WriteString(server, answer)
		served <- err
	}()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	hs := HandshakeIO(client)
	rh, ok := hs.(*rawHandshake)
	if !ok {
		t.Fatalf("HandshakeIO(TCP) = %T, want *rawHandshake", hs)
	}
	if err := hs.Send([]byte(req)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(hs, int64(len(answer))))
	if err != nil || string(got) != answer {
		t.Fatalf("answer = %q, %v; want %q", got, err, answer)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n := rh.s.emptyReads; n != 0 {
		t.Errorf("%d reads found the socket empty, want 0", n)
	}

	// The peer gone before the request: the error comes from the Read.
	client2, server2 := tcpPair(t)
	if err := server2.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	server2.Close()
	_ = client2.SetDeadline(time.Now().Add(5 * time.Second))
	hs2 := HandshakeIO(client2)
	_ = hs2.Send([]byte(req))
	if _, err := io.ReadAll(hs2); err == nil {
		t.Error("Read after sending to a reset peer succeeded")
	}
}

// Under ExpectHandshake the server's first flight is written from inside
// the read that waits for the client's answer: after the ClientHello no
// read finds the socket empty during a whole TLS 1.3 handshake.
func TestExpectHandshakeWaitsForTheAnswer(t *testing.T) {
	cfg, roots := tlsConfigs(t)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client, server := tcpPair(t)
			cc := Accepted(server)
			rc, ok := cc.(*recordConn)
			if !ok {
				t.Fatalf("Accepted(TCP) = %T, want *recordConn", cc)
			}
			_ = cc.SetDeadline(time.Now().Add(5 * time.Second))
			cli := tls.Client(client, &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: version})
			errc := make(chan error, 1)
			go func() { errc <- cli.Handshake() }()
			if _, err := cc.Peek(tlsRecordHeader); err != nil { // the ClientHello is here
				t.Fatal(err)
			}
			before := rc.sock.emptyReads
			ExpectHandshake(cc)
			srv := tls.Server(cc, cfg)
			if err := srv.Handshake(); err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client handshake: %v", err)
			}
			if n := rc.sock.emptyReads - before; version == tls.VersionTLS13 && n != 0 {
				t.Errorf("%d reads found the socket empty during the handshake, want 0", n)
			}
			// The connection works as usual afterwards.
			go func() { _, _ = cli.Write([]byte("ping")) }()
			got := make([]byte, 4)
			if _, err := io.ReadFull(srv, got); err != nil || string(got) != "ping" {
				t.Fatalf("read after the handshake = %q, %v", got, err)
			}
		})
	}
}

// A first write that is an alert does not wait for an answer: a client
// whose ClientHello is refused gets the alert and the close at once.
func TestExpectHandshakeAlertDoesNotWait(t *testing.T) {
	cfg, _ := tlsConfigs(t)
	client, server := tcpPair(t)
	cc := Accepted(server)
	ExpectHandshake(cc)
	// A handshake record that is no ClientHello.
	if _, err := client.Write([]byte{22, 3, 1, 0, 4, 99, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		srv := tls.Server(cc, cfg)
		err := srv.Handshake()
		srv.Close()
		errc <- err
	}()
	// Bounded: a server waiting for an answer to its alert would hold the
	// connection open past this.
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("reading the refusal: %v (the server did not close)", err)
	}
	if len(got) == 0 || got[0] != 21 {
		t.Errorf("the server sent %v, want an alert record", got)
	}
	if err := <-errc; err == nil {
		t.Error("server handshake with a bad ClientHello succeeded")
	}
}

// segsOut is the number of TCP segments c's socket has sent.
func segsOut(t *testing.T, c *rawSock) uint32 {
	t.Helper()
	var (
		info *unix.TCPInfo
		gerr error
	)
	if err := c.raw.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return info.Segs_out
}

// A TLS half-close sends close_notify and the FIN in one segment.
func TestTLSCloseWriteOneSegment(t *testing.T) {
	p := newPair(t, "tls", 0)
	tc := p.conn.(*tlsConn)
	// Data from the server carries its acknowledgement of everything the
	// client sent, so no ACK of its own is due while we count.
	if _, err := p.conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = p.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(p.peer, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	before := segsOut(t, tc.rc.sock)
	if err := p.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n := segsOut(t, tc.rc.sock) - before; n != 1 {
		t.Errorf("CloseWrite sent %d segments, want 1 (close_notify with the FIN)", n)
	}
	if got, err := io.ReadAll(p.peer); err != nil || len(got) != 0 {
		t.Errorf("the peer read %q, %v after the half-close; want a clean end", got, err)
	}
}

// A plain socket's Relay says whether more follows the bytes it hands
// over: the end of the stream that came with them counts.
func TestMoreFollows(t *testing.T) {
	for _, end := range []bool{false, true} {
		p := newPair(t, "tcp", 0)
		if _, err := io.WriteString(p.peer, "abc"); err != nil {
			t.Fatal(err)
		}
		if end {
			if err := p.peer.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
		}
		var follows []bool
		err := p.conn.Relay(func(b []byte) (int, error) {
			follows = append(follows, p.conn.MoreFollows())
			if end {
				return len(b), nil
			}
			return len(b), errStop
		})
		want, wantErr := []bool{false}, errStop
		if end {
			want, wantErr = []bool{true}, io.EOF
		}
		if !errors.Is(err, wantErr) || !slices.Equal(follows, want) {
			t.Errorf("end %v: Relay = %v with MoreFollows %v; want %v with %v", end, err, follows, wantErr, want)
		}
		if p.conn.MoreFollows() {
			t.Errorf("end %v: MoreFollows true outside Relay", end)
		}
	}
}

// What WriteMore leaves waiting goes out with what follows: in one
// segment with CloseWrite's FIN (and a TLS close_notify), or at once on
// Flush.
func TestWriteMore(t *testing.T) {
	sock := func(c Conn) *rawSock {
		switch c := c.(type) {
		case *sockConn:
			return c.s
		case *tlsConn:
			return c.rc.sock
		}
		t.Fatalf("Conn %T has no rawSock", c)
		return nil
	}
	forKinds(t, func(t *testing.T, kind string) {
		p := newPair(t, kind, 0)
		s := sock(p.conn)
		// Data from this side acknowledges all the peer sent: no ACK of
		// its own is due while we count.
		if _, err := p.conn.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = p.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p.peer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}

		before := segsOut(t, s)
		if _, err := p.conn.WriteMore([]byte("held")); err != nil {
			t.Fatal(err)
		}
		if n := segsOut(t, s) - before; n != 0 {
			t.Fatalf("WriteMore sent %d segments at once, want 0", n)
		}
		if err := p.conn.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := segsOut(t, s) - before; n != 1 {
			t.Fatalf("Flush: %d segments sent, want 1", n)
		}
		if err := p.conn.Flush(); err != nil { // nothing left: no system call
			t.Fatal(err)
		}

		before = segsOut(t, s)
		if _, err := p.conn.WriteMore([]byte("last")); err != nil {
			t.Fatal(err)
		}
		if err := p.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if n := segsOut(t, s) - before; n != 1 {
			t.Errorf("WriteMore then CloseWrite: %d segments, want 1", n)
		}
		got, err := io.ReadAll(p.peer)
		if err != nil || string(got) != "heldlast" {
			t.Errorf("the peer read %q, %v; want heldlast and a clean end", got, err)
		}
	})
}
