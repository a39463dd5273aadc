package sockio

import (
	"bufio"
	"errors"
	"net"
)

// ClientConn is a client's connection as the accept path holds it before
// TLS: layers that run before the handshake (a PROXY protocol header, say)
// may Peek at and Discard its first bytes, and establish the client's
// address with SetRemoteAddr; what they leave is what TLS reads, and the
// connection keeps the fast path (see Accepted).
type ClientConn interface {
	net.Conn
	// Peek returns the next n bytes without consuming them, waiting for
	// them within the read deadline; with an error it returns what is
	// there. n is at most BufSize.
	Peek(n int) ([]byte, error)
	// Discard drops the next n bytes, of those Peek has returned.
	Discard(n int)
	// SetRemoteAddr makes RemoteAddr return a; call it before the
	// connection is handed on.
	SetRemoteAddr(a net.Addr)
}

// errPeekTooLong is Peek's answer past BufSize.
var errPeekTooLong = errors.New("sockio: peek longer than the buffer")

// Accepted returns c, just accepted, as a ClientConn. On Linux a TCP
// connection gets the record-aware conn that a tunnel reads without
// holding a buffer while idle; anything else is buffered plainly.
func Accepted(c net.Conn) ClientConn {
	if tc, ok := c.(*net.TCPConn); ok {
		if cc := acceptedTCP(tc); cc != nil {
			return cc
		}
	}
	return &bufConn{Conn: c}
}

// bufConn is the portable ClientConn: a bufio.Reader in front of Read
// while Peek has left bytes, dropped once they are read.
type bufConn struct {
	net.Conn
	br     *bufio.Reader // nil unless Peek has buffered bytes
	remote net.Addr
}

func (c *bufConn) Peek(n int) ([]byte, error) {
	if n > BufSize {
		return nil, errPeekTooLong
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.Conn, BufSize)
	}
	return c.br.Peek(n)
}

func (c *bufConn) Discard(n int) {
	if c.br != nil {
		_, _ = c.br.Discard(n)
	}
}

func (c *bufConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

func (c *bufConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *bufConn) SetRemoteAddr(a net.Addr) { c.remote = a }
