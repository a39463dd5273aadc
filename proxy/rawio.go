package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	// bufSize is the size of pooled buffers: 64 KiB holds four full TLS
	// records, and one read(2) or write(2) moves that much when a stream
	// is busy. A waiting tunnel holds none (see above), so the size costs
	// nothing while idle. Against 32 KiB it saved 8-10% of the CPU per
	// 16 KiB message in the throughput16k scenario (8 of 8 alternating
	// A/B pairs); 128 KiB saved nothing more.
	bufSize = 64 << 10

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

// rawSock is a socket read and written through its RawConn with sysRead
// and sysWrite, waiting for readiness as net.Conn does; deadlines and
// Close apply. One reader and one writer at a time.
type rawSock struct {
	raw     syscall.RawConn
	network string
	conn    net.Conn // the socket's, for write deadlines

	// Reading: next reads into a pooled buffer, Read into the caller's.
	nextFn, readFn func(fd uintptr) bool // bound on first use
	rp             []byte                // Read's buffer
	bp             *[]byte               // next's buffer
	rn             int
	rerr           error

	// Writing.
	wmu     sync.Mutex // guards the fields below
	writeFn func(fd uintptr) bool
	wp      []byte
	wn      int
	werr    error
	stuckAt int // wn when the write deadline was last armed; -1 when not armed

	wshut atomic.Bool // shutdownWrite has succeeded

	// Write deadlines. A write that finds the socket full (EAGAIN) arms
	// the write timeout, and again each time the peer has taken bytes
	// since; the write that completes disarms it. So a flowing stream
	// never touches its deadline, and a peer that accepts nothing for
	// wtimeout fails the write with os.ErrDeadlineExceeded.
	dmu      sync.Mutex    // orders deadline changes; guards the fields below
	wtimeout time.Duration // 0: none; set before the first write
	limit    time.Time     // a bound on every write (the drain deadline); zero: none
	aborted  atomic.Bool   // abortWrites was called; written under dmu
}

// newRawSock returns c's rawSock, or nil if c has no RawConn.
func newRawSock(c net.Conn) *rawSock {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSock{raw: raw, network: c.LocalAddr().Network(), conn: c, stuckAt: -1}
}

// next waits until the socket has data and returns it in a pooled buffer
// (the caller puts it back), or the error (EOF included) that ended it.
func (s *rawSock) next() (*[]byte, int, error) {
	if s.nextFn == nil {
		s.nextFn = s.doNext
	}
	if err := s.raw.Read(s.nextFn); err != nil {
		return nil, 0, err
	}
	bp, n, err := s.bp, s.rn, s.rerr
	s.bp = nil
	return bp, n, err
}

func (s *rawSock) doNext(fd uintptr) bool {
	var wait bool
	s.bp, s.rn, s.rerr, wait = readSock(fd, s.network)
	return !wait
}

// Read is io.Reader's.
func (s *rawSock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.readFn == nil {
		s.readFn = s.doRead
	}
	s.rp = p
	err := s.raw.Read(s.readFn)
	s.rp = nil
	if err != nil {
		return 0, err
	}
	return s.rn, s.rerr
}

func (s *rawSock) doRead(fd uintptr) bool {
	var wait bool
	s.rn, s.rerr, wait = readInto(fd, s.rp, s.network)
	return !wait
}

// Write writes all of p unless an error (a deadline, Close, a reset, the
// write timeout) stops it. After abortWrites it writes what the socket
// takes at once and never waits.
func (s *rawSock) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.writeFn == nil {
		s.writeFn = s.doWrite
	}
	s.wp, s.wn, s.werr = p, 0, nil
	var err error
	if s.aborted.Load() {
		err = s.raw.Control(func(fd uintptr) {
			if !s.doWrite(fd) {
				s.werr = errWouldBlock
			}
		})
	} else {
		err = s.raw.Write(s.writeFn)
	}
	n := s.wn
	if err == nil {
		err = s.werr
	}
	s.wp, s.werr = nil, nil
	if s.stuckAt >= 0 {
		s.disarm()
	}
	return n, err
}

func (s *rawSock) doWrite(fd uintptr) bool {
	for s.wn < len(s.wp) {
		n, errno := sysWrite(fd, s.wp[s.wn:])
		switch errno {
		case 0:
			s.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.wtimeout > 0 && s.stuckAt != s.wn {
				s.arm()
			}
			return false // wait until writable
		default:
			s.werr = opError("write", s.network, errno)
			return true
		}
	}
	return true
}

// arm sets the write deadline wtimeout from now (or the limit, if that
// comes first): the peer has taken nothing since the last arm, or was
// never waited for. Called with wmu held, from inside the RawConn's
// write callback: a deadline change takes no lock the callback holds.
func (s *rawSock) arm() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.stuckAt = s.wn
	if s.aborted.Load() {
		return // its deadline is in the past already
	}
	d := time.Now().Add(s.wtimeout)
	if !s.limit.IsZero() && s.limit.Before(d) {
		d = s.limit
	}
	_ = s.conn.SetWriteDeadline(d)
}

// disarm puts the write deadline back once a write that armed it is done.
func (s *rawSock) disarm() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.stuckAt = -1
	if !s.aborted.Load() {
		_ = s.conn.SetWriteDeadline(s.limit)
	}
}

// limitWrites bounds every write, waiting or to come, by deadline.
func (s *rawSock) limitWrites(deadline time.Time) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.limit = deadline
	if !s.aborted.Load() {
		_ = s.conn.SetWriteDeadline(deadline)
	}
}

// setWriteDeadline is SetWriteDeadline for others than the tunnel (crypto/tls
// sets one around its close_notify): after abortWrites it does nothing,
// so that the deadline in the past that woke a waiting write stays until
// that write has seen it.
func (s *rawSock) setWriteDeadline(t time.Time) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() {
		return nil
	}
	return s.conn.SetWriteDeadline(t)
}

// abortWrites makes a write that waits for the peer fail now, and every
// later write take only what the socket accepts at once: closing must
// never wait for a peer. It returns without waiting for the writer.
func (s *rawSock) abortWrites() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.aborted.Store(true)
	_ = s.conn.SetWriteDeadline(aLongTimeAgo)
}

// shutdownWrite half-closes the socket (shutdown(2) with SHUT_WR); the FIN
// it sends runs, on loopback, the peer's side of it too.
//
// A call after one that succeeded does nothing: a tunnel half-closes a
// direction when its source ends and again before it closes. It does not
// take wmu: it must not wait for a write blocked on a slow peer, which the
// Close that follows it is there to end.
func (s *rawSock) shutdownWrite() error {
	if s.wshut.Load() {
		return nil
	}
	var errno syscall.Errno
	if err := s.raw.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall(syscall.SYS_SHUTDOWN, fd, syscall.SHUT_WR, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return opError("shutdown", s.network, errno)
	}
	s.wshut.Store(true)
	return nil
}

// readSock reads the socket fd into a pooled buffer. It returns the
// buffer and n > 0, or the error that ended the socket (io.EOF at its
// end), or wait when there is nothing to read yet.
func readSock(fd uintptr, network string) (bp *[]byte, n int, err error, wait bool) {
	bp = getBuf()
	n, err, wait = readInto(fd, *bp, network)
	if n == 0 {
		putBuf(bp)
		bp = nil
	}
	return bp, n, err, wait
}

// readInto reads the socket fd into p (len(p) > 0): n > 0 bytes, or the
// error that ended the socket (io.EOF at its end), or wait when there is
// nothing to read yet.
func readInto(fd uintptr, p []byte, network string) (n int, err error, wait bool) {
	for {
		n, errno := sysRead(fd, p)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return 0, nil, true
		case errno != 0:
			return 0, opError("read", network, errno), false
		case n == 0:
			return 0, io.EOF, false
		}
		return n, nil, false
	}
}

// NewListener wraps ln so that the TLS connections built on its
// connections can be tunnelled without a buffer held while idle. Serve the
// Handler's server on tls.NewListener(proxy.NewListener(ln), config). A
// Handler works on any listener; on others an idle tunnel's client side
// holds a 64 KiB buffer.
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
	sock *rawSock

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

	// Between beginBatch and endBatch, Write collects the records
	// crypto/tls writes in batch, so that one write(2) sends them all.
	bmu    sync.Mutex
	batch  *[]byte // guarded by bmu
	batchN int     // guarded by bmu
}

// SetWriteDeadline and SetDeadline keep an aborted socket's deadline (see
// rawSock.setWriteDeadline).
func (c *recordConn) SetWriteDeadline(t time.Time) error { return c.sock.setWriteDeadline(t) }

func (c *recordConn) SetDeadline(t time.Time) error {
	if err := c.TCPConn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.sock.setWriteDeadline(t)
}

func newRecordConn(c *net.TCPConn) *recordConn {
	sock := newRawSock(c)
	if sock == nil {
		return nil
	}
	return &recordConn{TCPConn: c, sock: sock}
}

// Write writes p with raw system calls (see sysWrite). crypto/tls writes
// each record, or a flight of them, with one call; in a batch the records
// are collected and sent together by endBatch.
func (c *recordConn) Write(p []byte) (int, error) {
	c.bmu.Lock()
	if c.batch == nil {
		c.bmu.Unlock()
		return c.sock.Write(p)
	}
	defer c.bmu.Unlock()
	if c.batchN+len(p) > len(*c.batch) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > len(*c.batch) {
			return c.sock.Write(p)
		}
	}
	c.batchN += copy((*c.batch)[c.batchN:], p)
	return len(p), nil
}

// batchSize holds the records of one bufSize write: the plaintext, and a
// TLS header, content type and AEAD tag (at most 5+1+16 bytes) for each.
const batchSize = bufSize + 1024

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
	_, err := c.sock.Write((*c.batch)[:c.batchN])
	c.batchN = 0
	return err
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
	if c.err != nil {
		return c.err
	}
	if c.noWait {
		return errWouldBlock
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

// rawConnect is the backend dialer's ControlContext. On loopback
// connect(2) runs the whole three-way handshake before it returns (about
// 60 µs here), long enough for sysmon to take the P from a goroutine in
// the net package's connect (see sysRead). So it starts the connect itself
// with a raw system call on the non-blocking socket; the net package's own
// connect then finds the socket connected (EISCONN, which it treats as
// success) or still connecting (EALREADY, and it waits for it as usual).
// Addresses it does not handle are left to the net package.
func rawConnect(_ context.Context, network, address string, c syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
	}
	var errno syscall.Errno
	if err := c.Control(func(fd uintptr) { errno = connectRaw(fd, network, ap) }); err != nil {
		return err
	}
	switch errno {
	case 0, syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
		return nil
	}
	return os.NewSyscallError("connect", errno)
}

// connectRaw is connect(2) to ap as a raw system call, for a socket of
// network's family.
func connectRaw(fd uintptr, network string, ap netip.AddrPort) syscall.Errno {
	var (
		ptr  unsafe.Pointer
		size uintptr
		sa4  syscall.RawSockaddrInet4
		sa6  syscall.RawSockaddrInet6
	)
	port := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	if network == "tcp4" {
		if !ap.Addr().Unmap().Is4() {
			return syscall.EAFNOSUPPORT
		}
		sa4.Family = syscall.AF_INET
		sa4.Addr = ap.Addr().Unmap().As4()
		ptr, size = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = syscall.AF_INET6
		sa6.Addr = ap.Addr().As16()
		port = (*[2]byte)(unsafe.Pointer(&sa6.Port))
		ptr, size = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port()) // network byte order
	for {
		_, _, errno := syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(ptr), size)
		if errno != syscall.EINTR {
			return errno
		}
	}
}
