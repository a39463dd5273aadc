package proxy

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// rawEchoBackend accepts WebSocket upgrades and then echoes raw bytes, so
// a benchmark measures the proxy, not a WebSocket library.
func rawEchoBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
				fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
					base64.StdEncoding.EncodeToString(h[:]))
				buf := make([]byte, 64<<10)
				_, _ = io.CopyBuffer(c, br, buf)
			}()
		}
	}()
	return ln.Addr().String()
}

// rawClient performs the opening handshake over TLS and returns the
// connection, ready for raw frames.
func rawClient(tb testing.TB, p *testProxy) *tls.Conn {
	tb.Helper()
	conn, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: p.roots, ServerName: "localhost"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || br.Buffered() != 0 {
		tb.Fatalf("upgrade: %v, %v", resp, err)
	}
	return conn
}

// BenchmarkTunnelEcho sends one masked binary frame at a time through the
// proxy (TLS client side, TCP backend side) to a raw echo backend and
// reads it back: one op is one message each way. allocs/op counts the
// whole process; the raw client and backend allocate nothing per message,
// so it is the proxy's (plus crypto/tls's on both ends).
func BenchmarkTunnelEcho(b *testing.B) {
	benchTunnelEcho(b, Options{})
}

// benchTunnelEcho is BenchmarkTunnelEcho through a proxy with opts.
func benchTunnelEcho(b *testing.B, opts Options) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			p := startProxy(b, opts, backendSpec{addr: rawEchoBackend(b)})
			conn := rawClient(b, p)
			msg := frame(true, 2, size, true)
			got := make([]byte, len(msg))
			_ = conn.SetDeadline(time.Now().Add(time.Minute))
			// Warm up the pools and the TLS record buffers.
			for range 10 {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, got); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFrameTracker measures following frame headers across a 32 KiB
// chunk of 64-byte frames (the worst case: a header every 70 bytes).
func BenchmarkFrameTracker(b *testing.B) {
	var chunk []byte
	for len(chunk) < 32<<10 {
		chunk = append(chunk, frame(true, 2, 64, true)...)
	}
	var tr frameTracker
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		tr.advance(chunk)
	}
}
