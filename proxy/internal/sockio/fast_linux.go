//go:build linux && !wsgate_portable

package sockio

import (
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// newFast returns the raw Conn for a TCP or Unix socket, or for TLS over
// the accept path's recordConn; nil for anything else.
func newFast(c net.Conn, writeTimeout time.Duration) Conn {
	switch c := c.(type) {
	case *tls.Conn:
		rc, _ := c.NetConn().(*recordConn)
		if rc == nil {
			return nil
		}
		rc.sock.wtimeout = writeTimeout
		t := &tlsConn{Conn: c, rc: rc}
		t.relayFn = t.relayRound
		return t
	case *net.TCPConn, *net.UnixConn:
		s := newRawSock(c)
		if s == nil {
			return nil
		}
		s.enableInq()
		s.wtimeout = writeTimeout
		sc := &sockConn{Conn: c, s: s}
		sc.relayFn = sc.relayRound
		return sc
	}
	return nil
}

func acceptedTCP(c *net.TCPConn) ClientConn {
	if rc := newRecordConn(c); rc != nil {
		return rc
	}
	return nil
}

// sockConn is Conn for a plain TCP or Unix socket.
type sockConn struct {
	net.Conn
	s       *rawSock
	left    leftover
	fn      func([]byte) (int, error) // Relay's, during the call
	res     error                     // why relayRound stopped
	relayFn func(fd uintptr) bool     // relayRound, bound once
	follows bool                      // MoreFollows, during fn
}

// Relay relays the socket inside one RawConn.Read call for as long as data
// flows. Its callback reads and hands over until a read fails with EAGAIN,
// then returns false and the runtime waits for readiness: the readiness
// the poller records is reset only when a RawConn.Read call begins, never
// between the callback's rounds, so data that arrives meanwhile is not
// missed. It waits after a read only when the socket is known to be
// empty, its end included (see readInto: stopping at a short read once
// left a FIN that came with the last bytes unseen until the parking sweep
// came by, 0.5-1 s later).
func (c *sockConn) Relay(fn func([]byte) (int, error)) error {
	if stop, err := c.left.deliver(fn); stop {
		return err
	}
	c.fn, c.res = fn, nil
	err := c.s.raw.Read(c.relayFn)
	c.fn = nil
	if err != nil {
		return err
	}
	return c.res
}

func (c *sockConn) relayRound(fd uintptr) bool {
	for {
		bp, n, err, wait, more := c.s.readSock(fd)
		if wait {
			return false
		}
		if err != nil {
			c.res = err
			return true
		}
		c.follows = more
		stop, ferr := handOver(&c.left, c.fn, bp, 0, n)
		c.follows = false
		if stop {
			c.res = ferr
			return true
		}
		if !more {
			return false // drained: wait for the next burst
		}
	}
}

func (c *sockConn) Write(p []byte) (int, error)     { return c.s.Write(p) }
func (c *sockConn) WriteMore(p []byte) (int, error) { return c.s.writeMore(p) }
func (c *sockConn) Flush() error                    { return c.s.flush() }

// MoreFollows is true when TCP_INQ said, with the read that brought fn's
// bytes, that the socket holds more (see readInto).
func (c *sockConn) MoreFollows() bool              { return c.follows }
func (c *sockConn) CloseWrite() error              { return c.s.shutdownWrite() }
func (c *sockConn) LimitWrites(deadline time.Time) { c.s.limitWrites(deadline) }

func (c *sockConn) Parkable() (Pollable, bool) { return c.s, !c.left.pending() }

// tlsConn is Conn for TLS over the accept path's recordConn.
type tlsConn struct {
	*tls.Conn
	rc      *recordConn
	left    leftover
	primed  bool // the first Relay has taken what crypto/tls held already
	fn      func([]byte) (int, error)
	res     error
	relayFn func(fd uintptr) bool
}

// Relay reads the socket into the recordConn's buffer inside one
// RawConn.Read call, and has crypto/tls decrypt the whole records there
// (under noWait, so that crypto/tls never waits for the socket, whose read
// lock the callback holds). A record only partly here, or the end of the
// socket, is left to crypto/tls outside the callback.
func (c *tlsConn) Relay(fn func([]byte) (int, error)) error {
	if stop, err := c.left.deliver(fn); stop {
		return err
	}
	if !c.primed {
		// Plaintext crypto/tls decrypted before the tunnel began and nobody
		// read: a client that sends frames right behind its request (before
		// the 101, which RFC 6455 forbids but clients do) can leave the
		// rest of a record there.
		c.primed = true
		if stop, err := c.readAndHandOver(fn, false); stop {
			return err
		}
	}
	for {
		if c.rc.bp != nil || c.rc.err != nil {
			// Bytes, or the end of the socket, are here already: crypto/tls
			// reads them, waiting for the rest of a partial record.
			if stop, err := c.readAndHandOver(fn, true); stop {
				return err
			}
			continue
		}
		c.fn, c.res = fn, nil
		err := c.rc.sock.raw.Read(c.relayFn)
		c.fn = nil
		if err != nil {
			return err
		}
		if c.res != nil {
			return c.res
		}
		// The socket ended (rc.err): crypto/tls says how, after what came
		// before it.
	}
}

func (c *tlsConn) relayRound(fd uintptr) bool {
	rc := c.rc
	drained := false // the last read emptied the socket, end included
	for {
		if rc.bp == nil {
			if drained {
				return false // wait for the next burst
			}
			bp, n, err, wait, more := rc.sock.readSock(fd)
			if wait {
				return false
			}
			if err != nil {
				rc.err = err
				return true
			}
			rc.bp, rc.r, rc.w = bp, 0, n
			drained = !more
		}
		bp, n, err := c.readRecords(false)
		if n > 0 {
			if stop, ferr := handOver(&c.left, c.fn, bp, 0, n); stop {
				c.res = ferr
				return true
			}
		}
		if err != nil {
			c.res = err
			return true
		}
	}
}

// readAndHandOver reads plaintext from crypto/tls and hands it to fn; it
// reports whether Relay must return, and with what.
func (c *tlsConn) readAndHandOver(fn func([]byte) (int, error), wait bool) (bool, error) {
	bp, n, err := c.readRecords(wait)
	if n > 0 {
		if stop, ferr := handOver(&c.left, fn, bp, 0, n); stop {
			return true, ferr
		}
	}
	return err != nil, err
}

// readRecords reads plaintext into a pooled buffer (nil when n is 0). With
// wait, the first record may wait for the socket; after that (and always
// without wait) it reads only whole records that are already buffered, and
// returns n == 0 rather than wait.
//
// Over a recordConn each Read decrypts one record; when whole records are
// already waiting, read them too, so that one write relays them (a 16 KiB
// message spans two records). There must be room for a whole record, or
// crypto/tls would keep the rest of it where rc.pending cannot see it. A
// record without data (a TLS 1.3 KeyUpdate, say) makes crypto/tls read on:
// noWait turns that into a temporary error instead of a wait that would
// hold back the bytes already read.
func (c *tlsConn) readRecords(wait bool) (*[]byte, int, error) {
	bp := getBuf()
	var (
		n   int
		err error
	)
	if wait {
		n, err = c.Conn.Read(*bp)
	}
	for err == nil && (n == 0 || c.rc.pending()) && len(*bp)-n >= maxRecordPlaintext {
		var k int
		c.rc.noWait = true
		k, err = c.Conn.Read((*bp)[n:])
		c.rc.noWait = false
		n += k
		if errors.Is(err, ErrWouldBlock) {
			err = nil
			break
		}
	}
	if n == 0 {
		putBuf(bp)
		bp = nil
	}
	return bp, n, err
}

// Write writes p through crypto/tls. More than one record's worth is sent
// as a batch: one system call for all its records.
func (c *tlsConn) Write(p []byte) (int, error) {
	if len(p) <= maxRecordPlaintext {
		return c.Conn.Write(p)
	}
	c.rc.beginBatch()
	n, err := c.Conn.Write(p)
	if ferr := c.rc.endBatch(); err == nil {
		err = ferr
	}
	return n, err
}

// WriteMore is Write with MSG_MORE for the records it makes.
func (c *tlsConn) WriteMore(p []byte) (int, error) {
	c.rc.setMore(true)
	defer c.rc.setMore(false)
	return c.Write(p)
}

func (c *tlsConn) Flush() error { return c.rc.sock.flush() }

// MoreFollows: not tracked for TLS sources.
func (c *tlsConn) MoreFollows() bool { return false }

// CloseWrite sends close_notify, then the FIN (the FIN even when
// close_notify could not go out), in one segment (see closeWrite).
func (c *tlsConn) CloseWrite() error { return c.rc.closeWrite(c.Conn) }

func (c *tlsConn) LimitWrites(deadline time.Time) { c.rc.sock.limitWrites(deadline) }

func (c *tlsConn) Parkable() (Pollable, bool) {
	return c.rc.sock, !c.left.pending() && c.rc.bp == nil && c.rc.err == nil
}
