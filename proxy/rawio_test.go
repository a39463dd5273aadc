package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
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

func TestSockReader(t *testing.T) {
	client, server := tcpPair(t)
	sr := newSockReader(server)
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
	if !errors.As(err, &ne) || !ne.Timeout() || err != errWouldBlock {
		t.Fatalf("Read() under noWait with nothing buffered = %v, want errWouldBlock (a timeout net.Error)", err)
	}
}
