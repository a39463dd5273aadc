//go:build !linux || wsgate_portable

package sockio

import (
	"net"
	"time"
)

// Elsewhere every Conn is portable and nothing parks.

func newFast(net.Conn, time.Duration) Conn { return nil }

func acceptedTCP(*net.TCPConn) ClientConn { return nil }

// Dialer returns the backend dialer: connections time out after timeout
// and get TCP keep-alive with keepAlive of silence before the first probe
// (the net package's defaults for the rest).
func Dialer(timeout, keepAlive time.Duration) net.Dialer {
	return net.Dialer{Timeout: timeout, KeepAlive: keepAlive}
}

// HandshakeIO returns what to send c's upgrade request and read its answer
// through: c itself here.
func HandshakeIO(c net.Conn) Handshake { return &connHandshake{c: c} }

// ExpectHandshake: nothing here (see the Linux build).
func ExpectHandshake(ClientConn) {}
