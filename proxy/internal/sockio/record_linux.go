//go:build linux && !wsgate_portable

package sockio

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// recordConn is the accept path's ClientConn on Linux: the net.Conn under a
// tls.Conn. Its Read reads the socket into a pooled buffer and returns at
// most the rest of the current TLS record, so crypto/tls never holds more
// than the record it is working on: whatever else has arrived stays here,
// where pending can see it. It is used by one reader at a time (crypto/tls
// serialises reads).
//
// Before TLS starts, the accept path may Peek at and Discard bytes (a PROXY
// protocol header); the record tracking starts with the first byte Read
// returns.
type recordConn struct {
	*net.TCPConn
	sock   *rawSock
	remote net.Addr // SetRemoteAddr's, nil for the socket's own

	bp   *[]byte // buffered socket bytes buf[r:w], nil when empty
	r, w int

	// err is how the socket ended, seen by a tunnel's relay before
	// crypto/tls has read what came before it; Read returns it once the
	// buffer is empty.
	err error

	remain int // bytes of the current record body not yet returned
	hdr    [tlsRecordHeader]byte
	hdrN   uint8 // bytes of the current record header seen

	// noWait makes Read fail with ErrWouldBlock instead of waiting for
	// the socket.
	noWait bool

	// awaitReply: the next Write, if it is a TLS handshake flight, also
	// waits for the client's answer and reads it (see ExpectHandshake).
	awaitReply bool

	// Between beginBatch and endBatch, Write collects the records
	// crypto/tls writes in batch, so that one write(2) sends them all.
	bmu    sync.Mutex
	batch  *[]byte // guarded by bmu
	batchN int     // guarded by bmu
	more   bool    // writes go with MSG_MORE (see setMore); guarded by bmu
}

var _ ClientConn = (*recordConn)(nil)

func newRecordConn(c *net.TCPConn) *recordConn {
	sock := newRawSock(c)
	if sock == nil {
		return nil
	}
	sock.enableInq()
	return &recordConn{TCPConn: c, sock: sock}
}

// RemoteAddr is the client's address: SetRemoteAddr's, or the socket's.
func (c *recordConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.TCPConn.RemoteAddr()
}

func (c *recordConn) SetRemoteAddr(a net.Addr) { c.remote = a }

// SetWriteDeadline and SetDeadline keep an aborted socket's deadline (see
// rawSock.setWriteDeadline).
func (c *recordConn) SetWriteDeadline(t time.Time) error { return c.sock.setWriteDeadline(t) }

func (c *recordConn) SetDeadline(t time.Time) error {
	if err := c.TCPConn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.sock.setWriteDeadline(t)
}

// Peek returns the next n bytes without consuming them, reading the socket
// (and waiting, within the read deadline) until they are here. n is at
// most BufSize.
func (c *recordConn) Peek(n int) ([]byte, error) {
	if n > BufSize {
		return nil, errPeekTooLong
	}
	for c.buffered() < n {
		if err := c.readMore(); err != nil {
			return c.buffer(), err
		}
	}
	return c.buffer()[:n], nil
}

// Discard drops the next n buffered bytes (at most those Peek returned).
func (c *recordConn) Discard(n int) {
	c.r += min(n, c.buffered())
	if c.r == c.w && c.bp != nil {
		putBuf(c.bp)
		c.bp = nil
	}
}

func (c *recordConn) buffered() int {
	if c.bp == nil {
		return 0
	}
	return c.w - c.r
}

func (c *recordConn) buffer() []byte {
	if c.bp == nil {
		return nil
	}
	return (*c.bp)[c.r:c.w]
}

// readMore appends what the socket has (waiting for it) to the buffer,
// moving what is buffered to the front first.
func (c *recordConn) readMore() error {
	if c.bp == nil {
		bp, n, err := c.sock.next()
		if err != nil {
			return err
		}
		c.bp, c.r, c.w = bp, 0, n
		return nil
	}
	if c.r > 0 {
		c.w = copy(*c.bp, (*c.bp)[c.r:c.w])
		c.r = 0
	}
	n, err := c.sock.Read((*c.bp)[c.w:])
	c.w += n
	return err
}

// Write writes p with raw system calls (see sysWrite). crypto/tls writes
// each record, or a flight of them, with one call; in a batch the records
// are collected and sent together by endBatch.
func (c *recordConn) Write(p []byte) (int, error) {
	if c.awaitReply {
		c.awaitReply = false
		if len(p) > 0 && p[0] == recordTypeHandshake && c.bp == nil && c.err == nil {
			return c.writeAwaitReply(p)
		}
	}
	c.bmu.Lock()
	if c.batch == nil {
		more := c.more
		c.bmu.Unlock()
		return c.sock.write(p, more)
	}
	defer c.bmu.Unlock()
	if c.batchN+len(p) > len(*c.batch) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > len(*c.batch) {
			return c.sock.write(p, c.more)
		}
	}
	c.batchN += copy((*c.batch)[c.batchN:], p)
	return len(p), nil
}

// recordTypeHandshake is the content type of TLS handshake records.
const recordTypeHandshake = 22

// ExpectHandshake tells cc, a ClientConn from Accepted, that a TLS server
// handshake is about to run on it. The server's first flight (the
// ServerHello and what goes with it, a HelloRetryRequest, or a TLS 1.2
// ServerHelloDone flight: every one of them is answered by the client
// before the handshake can go on) is then written from inside the read
// that waits for the client's answer, so that the first read after it
// does not fail with EAGAIN (see sendThenRead). The Write that sends it
// returns once the answer, or the end of the connection, is here, or the
// read deadline has passed; only that Write, and only when it begins with
// a handshake record (an alert does not wait). Elsewhere it does nothing.
func ExpectHandshake(cc ClientConn) {
	if c, ok := cc.(*recordConn); ok {
		c.awaitReply = true
	}
}

// writeAwaitReply writes p, the server's first flight, and reads the
// client's answer into the buffer (see ExpectHandshake). Whatever ends the
// wait (a deadline, a close) is for the next Read to find again; the write
// itself has succeeded.
func (c *recordConn) writeAwaitReply(p []byte) (int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	written, werr, _ := c.sock.sendThenRead(p, func(fd uintptr) bool {
		var wait bool
		bp, n, rerr, wait, _ = c.sock.readSock(fd)
		return !wait
	})
	switch {
	case werr != nil:
		return written, werr
	case written < len(p):
		k, err := c.sock.Write(p[written:])
		return written + k, err
	case n > 0:
		c.bp, c.r, c.w = bp, 0, n
	case rerr != nil:
		c.err = rerr
	}
	return len(p), nil
}

// closeWrite has tc, the TLS connection over c, send its close_notify,
// then sends the FIN. The close_notify goes with MSG_MORE, so that the
// kernel holds it for the FIN that follows at once: one segment for both
// instead of two, each of which costs both ends a trip through the TCP
// stack. The FIN is sent even when close_notify could not be.
func (c *recordConn) closeWrite(tc *tls.Conn) error {
	c.setMore(true)
	err := tc.CloseWrite()
	c.setMore(false)
	if serr := c.sock.shutdownWrite(); err == nil {
		err = serr
	}
	return err
}

// setMore makes the writes from now on go with MSG_MORE, or not.
func (c *recordConn) setMore(more bool) {
	c.bmu.Lock()
	c.more = more
	c.bmu.Unlock()
}

// batchSize holds the records of one BufSize write: the plaintext, and a
// TLS header, content type and AEAD tag (at most 5+1+16 bytes) for each.
const batchSize = BufSize + 1024

var batchPool = sync.Pool{New: func() any { b := make([]byte, batchSize); return &b }}

// beginBatch starts collecting written records. A tls.Conn.Write of more
// than one record's plaintext would otherwise make one system call per
// record: two for a 16 KiB WebSocket message.
func (c *recordConn) beginBatch() {
	c.bmu.Lock()
	c.batch, c.batchN = batchPool.Get().(*[]byte), 0
	c.bmu.Unlock()
}

// endBatch sends the collected records and stops collecting.
func (c *recordConn) endBatch() error {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	err := c.flushLocked()
	batchPool.Put(c.batch)
	c.batch = nil
	return err
}

func (c *recordConn) flushLocked() error {
	if c.batchN == 0 {
		return nil
	}
	_, err := c.sock.write((*c.batch)[:c.batchN], c.more)
	c.batchN = 0
	return err
}

// fill waits for socket data when nothing is buffered.
func (c *recordConn) fill() error {
	if c.bp != nil {
		return nil
	}
	if c.err != nil {
		return c.err
	}
	if c.noWait {
		return ErrWouldBlock
	}
	bp, n, err := c.sock.next()
	if err != nil {
		return err
	}
	c.bp, c.r, c.w = bp, 0, n
	return nil
}

// Read returns buffered bytes up to the end of the current TLS record,
// reading the socket (and waiting) only when nothing is buffered. A whole
// record (header and body) comes back from one call when it is here, so
// crypto/tls reads each record with one call.
func (c *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.fill(); err != nil {
		return 0, err
	}
	buf := (*c.bp)[c.r:c.w]
	limit := len(buf) // a partial header: all of buf belongs to it
	if c.hdrN < tlsRecordHeader {
		if need := tlsRecordHeader - int(c.hdrN); len(buf) >= need {
			var hdr [tlsRecordHeader]byte
			copy(hdr[:], c.hdr[:c.hdrN])
			copy(hdr[c.hdrN:], buf[:need])
			limit = min(len(buf), need+recordLen(hdr))
		}
	} else {
		limit = min(len(buf), c.remain)
	}
	n := copy(p, buf[:limit])
	c.advance(buf[:n])
	c.r += n
	if c.r == c.w {
		putBuf(c.bp)
		c.bp = nil
	}
	return n, nil
}

// advance moves the record state over b, which ends at or before the end
// of the current record.
func (c *recordConn) advance(b []byte) {
	for len(b) > 0 {
		if c.hdrN < tlsRecordHeader {
			k := copy(c.hdr[c.hdrN:], b)
			c.hdrN += uint8(k)
			b = b[k:]
			if c.hdrN == tlsRecordHeader {
				c.remain = recordLen(c.hdr)
				if c.remain == 0 {
					c.hdrN = 0
				}
			}
			continue
		}
		k := min(len(b), c.remain)
		c.remain -= k
		b = b[k:]
		if c.remain == 0 {
			c.hdrN = 0
		}
	}
}

func recordLen(hdr [tlsRecordHeader]byte) int { return int(hdr[3])<<8 | int(hdr[4]) }

// pending reports whether a whole TLS record is buffered, so that
// tls.Conn.Read will not have to wait for the socket.
func (c *recordConn) pending() bool {
	if c.bp == nil {
		return false
	}
	buf := (*c.bp)[c.r:c.w]
	if c.hdrN == tlsRecordHeader {
		return len(buf) >= c.remain
	}
	// At or inside a header: need the rest of it and the body.
	var hdr [tlsRecordHeader]byte
	copy(hdr[:], c.hdr[:c.hdrN])
	k := copy(hdr[c.hdrN:], buf)
	if int(c.hdrN)+k < tlsRecordHeader {
		return false
	}
	return len(buf) >= tlsRecordHeader-int(c.hdrN)+recordLen(hdr)
}
