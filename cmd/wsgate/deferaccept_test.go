package main

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/listener"
)

// A client that connects and sends nothing is still closed by
// limits.tls_handshake_timeout, and counted as a handshake timeout, when
// the listener defers accepting until the first bytes arrive (on Linux,
// TCP_DEFER_ACCEPT: the kernel hands the silent connection over after
// listener.DeferAccept, and the timeout runs from there). Elsewhere
// DeferAccept does not apply and the timeout runs from the connect.
func TestSilentClientMeetsHandshakeTimeout(t *testing.T) {
	_, b := startBackend(t, "b1")
	const timeout = 300 * time.Millisecond
	g := startGate(t, []string{b}, "limits:\n  tls_handshake_timeout: 300ms\n")

	start := time.Now()
	c, err := net.Dial("tcp", g.proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Bounded: the answer must come long before this.
	_ = c.SetReadDeadline(time.Now().Add(listener.DeferAccept + timeout + 10*time.Second))
	n, err := io.Copy(io.Discard, c)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the silent connection was still open after %v", elapsed)
	}
	if n != 0 {
		t.Errorf("the silent client was sent %d bytes, want none", n)
	}
	// Accepted after about DeferAccept (the kernel resends its SYN-ACK
	// then), closed a handshake timeout later; the rest is slack for a
	// busy machine.
	if limit := listener.DeferAccept + timeout + 4*time.Second; elapsed > limit {
		t.Errorf("the silent client was closed after %v, want within %v", elapsed, limit)
	}
	proctest.WaitFor(t, "the timeout counted", func() bool {
		return values(scrape(t, g.adminURL, ""), "wsgate_tls_handshake_errors_total", "reason")["timeout"] == 1
	})

	// A client that speaks at once is served as usual.
	ws, _ := g.dial(t, "/ws")
	echo(t, ws, "after the silent one")
}
