//go:build !linux || wsgate_portable

package sockio

import (
	"context"
	"net"
	"syscall"
	"time"
)

// Elsewhere every Conn is portable and nothing parks.

func newFast(net.Conn, time.Duration) Conn { return nil }

func acceptedTCP(*net.TCPConn) ClientConn { return nil }

// DialControl is the backend dialer's ControlContext; nil here.
var DialControl func(ctx context.Context, network, address string, c syscall.RawConn) error

// HandshakeIO returns what to send c's upgrade request and read its answer
// through: c itself here.
func HandshakeIO(c net.Conn) Handshake { return &connHandshake{c: c} }

// ExpectHandshake: nothing here (see the Linux build).
func ExpectHandshake(ClientConn) {}
