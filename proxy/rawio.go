package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
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

// System calls without the scheduler's involvement.
//
// syscall.Read and syscall.Write tell the runtime that the goroutine may
// block (entersyscall/exitsyscall). When such a call outlasts a sysmon
// tick (20 µs, which a loopback write that runs the receiver's TCP stack
// often does), sysmon takes the P away and hands it to another thread;
// with one P that is a thread switch, and a futex wake-up and sleep, per
// long write, and sysmon keeps waking every 20 µs to look. A read or
// write on a non-blocking socket never blocks, so the tunnel makes them
// as raw system calls: the goroutine keeps its P and sysmon backs off.

// sysRead is read(2) on a non-blocking descriptor.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

// sysWrite is write(2) on a non-blocking descriptor.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

// opError wraps a system call's error as net.Conn methods do.
func opError(op, network string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: network, Err: os.NewSyscallError(op, errno)}
}

// sockReader reads a socket through its RawConn into pooled buffers.
type sockReader struct {
	raw     syscall.RawConn
	network string
	fn      func(fd uintptr) bool // readFn, bound once: no allocation per read

	// Results of the last callback.
	bp  *[]byte
	n   int
	err error
}

// rawConnOf returns c's RawConn and network, or ok false if c has none.
func rawConnOf(c net.Conn) (raw syscall.RawConn, network string, ok bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, "", false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, "", false
	}
	return raw, c.LocalAddr().Network(), true
}

func newSockReader(c net.Conn) *sockReader {
	raw, network, ok := rawConnOf(c)
	if !ok {
		return nil
	}
	r := &sockReader{raw: raw, network: network}
	r.fn = r.readFn
	return r
}

func (r *sockReader) readFn(fd uintptr) bool {
	bp, n, err, wait := readSock(fd, r.network)
	if wait {
		return false // park until readable
	}
	r.bp, r.n, r.err = bp, n, err
	return true
}

// readSock reads the socket fd into a pooled buffer. It returns the
// buffer and n > 0, or the error that ended the socket (io.EOF at its
// end), or wait when there is nothing to read yet.
func readSock(fd uintptr, network string) (bp *[]byte, n int, err error, wait bool) {
	bp = getBuf()
	for {
		n, errno := sysRead(fd, *bp)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			putBuf(bp)
			return nil, 0, nil, true
		case errno != 0:
			putBuf(bp)
			return nil, 0, opError("read", network, errno), false
		case n == 0:
			putBuf(bp)
			return nil, 0, io.EOF, false
		}
		return bp, n, nil, false
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

// sockWriter writes to a socket through its RawConn with sysWrite,
// waiting for room as net.Conn.Write does; deadlines and Close apply.
type sockWriter struct {
	raw     syscall.RawConn
	network string
	fn      func(fd uintptr) bool // writeFn, bound once

	mu  sync.Mutex // one write at a time; guards the fields below
	p   []byte
	n   int
	err error
}

func newSockWriter(c net.Conn) *sockWriter {
	raw, network, ok := rawConnOf(c)
	if !ok {
		return nil
	}
	w := &sockWriter{raw: raw, network: network}
	w.fn = w.writeFn
	return w
}

// Write writes all of p unless an error (a deadline, Close, a reset)
// stops it.
func (w *sockWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.p, w.n, w.err = p, 0, nil
	err := w.raw.Write(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.p, w.err = nil, nil
	return n, err
}

func (w *sockWriter) writeFn(fd uintptr) bool {
	for w.n < len(w.p) {
		n, errno := sysWrite(fd, w.p[w.n:])
		switch errno {
		case 0:
			w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until writable
		default:
			w.err = opError("write", w.network, errno)
			return true
		}
	}
	return true
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
	sw *sockWriter

	bp   *[]byte // buffered socket bytes buf[r:w], nil when empty
	r, w int

	// noWait makes Read fail with errWouldBlock instead of waiting for
	// the socket.
	noWait bool

	// err is how the socket ended, seen by a tunnel's relay before
	// crypto/tls has read what came before it; Read returns it once the
	// buffer is empty.
	err error

	hdr    [tlsRecordHeader]byte
	hdrN   int // bytes of the current record header seen
	remain int // bytes of the current record body not yet returned
}

func newRecordConn(c *net.TCPConn) *recordConn {
	sr, sw := newSockReader(c), newSockWriter(c)
	if sr == nil || sw == nil {
		return nil
	}
	return &recordConn{TCPConn: c, sr: sr, sw: sw}
}

// Write writes p with raw system calls (see sysWrite). crypto/tls writes
// each record, or a flight of them, with one call.
func (c *recordConn) Write(p []byte) (int, error) { return c.sw.Write(p) }

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
	if c.err != nil {
		return c.err
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
