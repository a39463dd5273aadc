package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"syscall"
)

// Reading without holding a buffer while idle.
//
// A goroutine blocked in net.Conn.Read holds the buffer it reads into. A
// tunnel is idle most of its life, so each direction instead waits through
// the socket's syscall.RawConn: its callback borrows a pooled buffer, tries
// read(2), and on EAGAIN returns the buffer and lets the runtime's poller
// park the goroutine. That is as many system calls as net.Conn.Read makes
// (one failed read, then one that returns data), and no buffer is held
// while parked.
//
// A TLS client connection adds one wrinkle: crypto/tls may have read more
// from the socket than it has decrypted, and then a wait on the socket
// would hang with data already in hand. recordConn, the net.Conn under
// tls.Server (see NewListener), hands crypto/tls one TLS record at a time
// from its own pooled buffer, so the tunnel always knows whether a whole
// record is waiting.

const (
	// bufSize is the size of pooled buffers. 32 KiB holds two full TLS
	// records.
	bufSize = 32 << 10

	tlsRecordHeader = 5
	// maxRecordPlaintext is the most plaintext one TLS record carries.
	maxRecordPlaintext = 16 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// sockReader reads a socket through its RawConn into pooled buffers.
type sockReader struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // readFn, bound once: no allocation per read

	// Results of the last callback.
	bp  *[]byte
	n   int
	err error
}

func newSockReader(c net.Conn) *sockReader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &sockReader{raw: raw}
	r.fn = r.readFn
	return r
}

func (r *sockReader) readFn(fd uintptr) bool {
	bp := getBuf()
	for {
		n, err := syscall.Read(int(fd), *bp)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			putBuf(bp)
			return false // park until readable
		case err != nil:
			putBuf(bp)
			r.bp, r.n, r.err = nil, 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			putBuf(bp)
			r.bp, r.n, r.err = nil, 0, io.EOF
		default:
			r.bp, r.n, r.err = bp, n, nil
		}
		return true
	}
}

// next waits until the socket has data and returns it in a pooled buffer
// (the caller puts it back), or the error (EOF included) that ended it.
// A read deadline or Close ends the wait with its error.
func (r *sockReader) next() (*[]byte, int, error) {
	if err := r.raw.Read(r.fn); err != nil {
		return nil, 0, err
	}
	bp, n, err := r.bp, r.n, r.err
	r.bp = nil
	return bp, n, err
}

// NewListener wraps ln so that the TLS connections built on its
// connections can be tunnelled without a buffer held while idle. Serve the
// Handler's server on tls.NewListener(proxy.NewListener(ln), config). A
// Handler works on any listener; on others an idle tunnel's client side
// holds a 32 KiB buffer.
func NewListener(ln net.Listener) net.Listener { return &listener{ln} }

type listener struct{ net.Listener }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc := newRecordConn(tc); rc != nil {
			return rc, nil
		}
	}
	return c, nil
}

// recordConn is the net.Conn under a tls.Conn. Its Read reads the socket
// into a pooled buffer and returns at most the rest of the current TLS
// record, so crypto/tls never holds more than the record it is working
// on: whatever else has arrived stays here, where pending can see it.
// It is used by one reader at a time (crypto/tls serialises reads).
type recordConn struct {
	*net.TCPConn
	sr *sockReader

	bp   *[]byte // buffered socket bytes buf[r:w], nil when empty
	r, w int

	// noWait makes Read fail with errWouldBlock instead of waiting for
	// the socket.
	noWait bool

	hdr    [tlsRecordHeader]byte
	hdrN   int // bytes of the current record header seen
	remain int // bytes of the current record body not yet returned
}

func newRecordConn(c *net.TCPConn) *recordConn {
	sr := newSockReader(c)
	if sr == nil {
		return nil
	}
	return &recordConn{TCPConn: c, sr: sr}
}

// NetConn-style access for the tunnel.
func recordConnOf(c net.Conn) *recordConn {
	if tc, ok := c.(*tls.Conn); ok {
		rc, _ := tc.NetConn().(*recordConn)
		return rc
	}
	return nil
}

// errWouldBlock is recordConn.Read's answer under noWait when nothing is
// buffered. It is a temporary net.Error, which crypto/tls does not keep as
// the connection's error.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "proxy: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// fill waits for socket data when nothing is buffered.
func (c *recordConn) fill() error {
	if c.bp != nil {
		return nil
	}
	if c.noWait {
		return errWouldBlock
	}
	bp, n, err := c.sr.next()
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
		if need := tlsRecordHeader - c.hdrN; len(buf) >= need {
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
			c.hdrN += k
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
	if c.hdrN+k < tlsRecordHeader {
		return false
	}
	return len(buf) >= tlsRecordHeader-c.hdrN+recordLen(hdr)
}
