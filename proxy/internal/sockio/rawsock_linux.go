//go:build linux && !wsgate_portable

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

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

// sysSendMore is send(2) on a non-blocking socket with MSG_MORE: the
// kernel may hold a last partial segment back for what the caller sends
// next, or for the FIN of a shutdown(2) that follows at once.
func sysSendMore(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), syscall.MSG_MORE|syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), errno
}

// opError wraps a system call's error as net.Conn methods do.
func opError(op, network string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: network, Err: os.NewSyscallError(op, errno)}
}

// rawSock is a socket read and written through its RawConn with sysRead
// and sysWrite, waiting for readiness as net.Conn does; deadlines and
// Close apply. One reader and one writer at a time.
//
// Every idle tunnel holds two, so the struct is kept small: what a system
// call needs only during the call (recvmsg's header and control buffer)
// lives on the stack, the network's name is asked of the socket only for
// an error, and deadlines are unix nanoseconds.
type rawSock struct {
	raw  syscall.RawConn
	conn net.Conn // the socket's, for write deadlines and its network's name

	// inq: TCP_INQ is on, and reads are recvmsg(2) calls that say how many
	// bytes the receive queue still holds (see readInto).
	inq bool
	// emptyReads counts the reads that found nothing (EAGAIN): system
	// calls for nothing, which tests count. The reader's.
	emptyReads uint32

	// Reading: next reads into a pooled buffer (rp nil), Read into the
	// caller's (rp).
	readFn func(fd uintptr) bool // doRead, bound on first use
	rp     []byte                // Read's buffer
	bp     *[]byte               // next's buffer
	rn     int
	rerr   error

	// Writing.
	wmu     sync.Mutex // guards the fields below
	writeFn func(fd uintptr) bool
	wmore   bool // the write in progress goes with MSG_MORE (see writeMore)
	held    bool // the last write went with MSG_MORE (see flush)
	wp      []byte
	wn      int
	werr    error
	stuckAt int // wn when the write deadline was last armed; -1 when not armed

	wshut atomic.Bool // shutdownWrite has succeeded, or found nothing to shut down

	// Write deadlines. A write that finds the socket full (EAGAIN) arms
	// the write timeout, and again each time the peer has taken bytes
	// since; the write that completes disarms it. So a flowing stream
	// never touches its deadline, and a peer that accepts nothing for
	// wtimeout fails the write with os.ErrDeadlineExceeded.
	dmu      sync.Mutex    // orders deadline changes; guards the fields below
	wtimeout time.Duration // 0: none; set before the first write
	limit    int64         // a bound on every write (the drain deadline), unix nanoseconds; 0: none
	aborted  atomic.Bool   // abortWrites was called; written under dmu
	// queued is the send queue's length when the write timeout was last
	// armed (see progressed).
	queued int
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
	return &rawSock{raw: raw, conn: c, stuckAt: -1}
}

// network is the socket's network ("tcp", "unix"), for errors.
func (s *rawSock) network() string { return s.conn.LocalAddr().Network() }

// limitTime is limit as a time; zero when there is none.
func (s *rawSock) limitTime() time.Time {
	if s.limit == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.limit)
}

func (s *rawSock) parkable() {}

// next waits until the socket has data and returns it in a pooled buffer
// (the caller puts it back), or the error (EOF included) that ended it.
func (s *rawSock) next() (*[]byte, int, error) {
	if s.readFn == nil {
		s.readFn = s.doRead
	}
	if err := s.raw.Read(s.readFn); err != nil {
		return nil, 0, err
	}
	bp, n, err := s.bp, s.rn, s.rerr
	s.bp = nil
	return bp, n, err
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

// doRead is the read callback of both next (rp nil) and Read: one bound
// method value a socket, not two.
func (s *rawSock) doRead(fd uintptr) bool {
	var wait bool
	if s.rp == nil {
		s.bp, s.rn, s.rerr, wait, _ = s.readSock(fd)
	} else {
		s.rn, s.rerr, wait, _ = s.readInto(fd, s.rp)
	}
	return !wait
}

// Write writes all of p unless an error (a deadline, Close, a reset, the
// write timeout) stops it. After abortWrites it writes what the socket
// takes at once and never waits.
func (s *rawSock) Write(p []byte) (int, error) { return s.write(p, false) }

// writeMore is Write with MSG_MORE (see sysSendMore): the caller makes
// sure that a write without it, or a shutdown(2) or close(2), follows at
// once, or the last bytes may wait in the socket (Linux sends a held
// segment when its probe timer fires, a fifth of a second later).
func (s *rawSock) writeMore(p []byte) (int, error) { return s.write(p, true) }

func (s *rawSock) write(p []byte, more bool) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wmore = more
	if s.writeFn == nil {
		s.writeFn = s.doWrite
	}
	s.wp, s.wn, s.werr = p, 0, nil
	var err error
	if s.aborted.Load() {
		err = s.raw.Control(func(fd uintptr) {
			if !s.doWrite(fd) {
				s.werr = ErrWouldBlock
			}
		})
	} else {
		for {
			err = s.raw.Write(s.writeFn)
			if err == nil || s.stuckAt < 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !s.progressed() {
				break
			}
		}
	}
	n := s.wn
	if err == nil {
		err = s.werr
	}
	s.held = more
	s.wp, s.werr = nil, nil
	if s.stuckAt >= 0 {
		s.disarm()
	}
	return n, err
}

func (s *rawSock) doWrite(fd uintptr) bool {
	for s.wn < len(s.wp) {
		var (
			n     int
			errno syscall.Errno
		)
		if s.wmore {
			n, errno = sysSendMore(fd, s.wp[s.wn:])
		} else {
			n, errno = sysWrite(fd, s.wp[s.wn:])
		}
		switch errno {
		case 0:
			s.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.wtimeout > 0 && s.stuckAt != s.wn {
				s.arm(fd)
			}
			return false // wait until writable
		default:
			s.werr = opError("write", s.network(), errno)
			return true
		}
	}
	return true
}

// arm sets the write deadline wtimeout from now (or the limit, if that
// comes first): the write has made progress since the last arm, or was
// never waited for. Called with wmu held, from inside the RawConn's
// write callback: a deadline change takes no lock the callback holds.
func (s *rawSock) arm(fd uintptr) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.stuckAt = s.wn
	if s.aborted.Load() {
		return // its deadline is in the past already
	}
	s.queued = sendQueue(fd)
	s.setTimeoutLocked()
}

func (s *rawSock) setTimeoutLocked() {
	d := time.Now().Add(s.wtimeout)
	if s.limit != 0 && s.limit < d.UnixNano() {
		d = time.Unix(0, s.limit)
	}
	_ = s.conn.SetWriteDeadline(d)
}

// progressed reports, when the write timeout has passed, whether the peer
// took bytes all the same, and then arms the timeout again. The socket
// becomes writable only when a good part of its send buffer is free (a
// third, on Linux), so a slow reader can take bytes for a long time
// without the write moving on; the send queue's length says whether it
// did. Past the limit (the drain deadline), or once aborted, it is false.
func (s *rawSock) progressed() bool {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() || (s.limit != 0 && time.Now().UnixNano() >= s.limit) {
		return false
	}
	queued := -1
	if err := s.raw.Control(func(fd uintptr) { queued = sendQueue(fd) }); err != nil || queued < 0 || queued >= s.queued {
		return false
	}
	s.queued = queued
	s.setTimeoutLocked()
	return true
}

// sendQueue is the number of bytes in the socket's send queue that the
// peer has not yet taken (SIOCOUTQ), or -1 if it cannot say.
func sendQueue(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}

// disarm puts the write deadline back once a write that armed it is done.
func (s *rawSock) disarm() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.stuckAt = -1
	if !s.aborted.Load() {
		_ = s.conn.SetWriteDeadline(s.limitTime())
	}
}

// flush sends what a write with MSG_MORE left in the socket: turning
// TCP_NODELAY on (it is on already) pushes the pending segments out.
func (s *rawSock) flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.held {
		return nil
	}
	s.held = false
	var errno syscall.Errno
	if err := s.raw.Control(func(fd uintptr) {
		one := int32(1)
		_, _, errno = syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return opError("setsockopt", s.network(), errno)
	}
	return nil
}

// limitWrites bounds every write, waiting or to come, by deadline; a
// deadline in the past aborts (see Conn.LimitWrites).
func (s *rawSock) limitWrites(deadline time.Time) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() {
		return
	}
	if deadline.Before(time.Now()) {
		s.aborted.Store(true)
		deadline = aLongTimeAgo
	}
	s.limit = deadline.UnixNano()
	_ = s.conn.SetWriteDeadline(deadline)
}

// setWriteDeadline is SetWriteDeadline for others than the tunnel
// (crypto/tls sets one around its close_notify): after an abort it does
// nothing, so that the deadline in the past that woke a waiting write
// stays until that write has seen it.
func (s *rawSock) setWriteDeadline(t time.Time) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() {
		return nil
	}
	return s.conn.SetWriteDeadline(t)
}

// shutdownWrite half-closes the socket (shutdown(2) with SHUT_WR); the FIN
// it sends runs, on loopback, the peer's side of it too.
//
// A call after one that succeeded does nothing: a tunnel half-closes a
// direction when its source ends and again before it closes. So does a
// call after one that failed with ENOTCONN: the peer reset the connection
// (a client that closes as soon as it has its close frame does), and there
// is nothing left to shut down. It does not take wmu: it must not wait for
// a write blocked on a slow peer, which the Close that follows it is there
// to end.
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
	if errno == syscall.ENOTCONN {
		s.wshut.Store(true)
	}
	if errno != 0 {
		return opError("shutdown", s.network(), errno)
	}
	s.wshut.Store(true)
	return nil
}

// sendThenRead writes req and then reads the answer with read, all inside
// one RawConn.Read call: the first call of the callback writes, and
// returns to the poller without trying to read; read is called only once
// the socket has become readable (it returns false to wait for more).
//
// Trying a read right after writing a request fails with EAGAIN almost
// always, the peer not having answered yet: a system call for nothing.
// Waiting first is safe only inside the same RawConn.Read call: each call
// begins by forgetting the readiness the poller recorded before it, so an
// answer that came between a Write and a later Read could be forgotten
// and never read. Here the readiness is reset before the request goes out,
// and no answer can come before it.
//
// It returns how much of req it wrote, and with werr why it stopped
// writing. Less than all of req without werr means the socket took no
// more without waiting: nothing was read then, and the caller finishes
// with Write and Read. err is the wait's (a deadline, a close). It holds
// wmu throughout: no other write may come between.
func (s *rawSock) sendThenRead(req []byte, read func(fd uintptr) bool) (written int, werr, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	full := false
	err = s.raw.Read(func(fd uintptr) bool {
		if written == len(req) {
			return read(fd)
		}
		for written < len(req) {
			n, errno := sysWrite(fd, req[written:])
			switch errno {
			case 0:
				written += n
			case syscall.EINTR:
			case syscall.EAGAIN:
				full = true
				return true
			default:
				werr = opError("write", s.network(), errno)
				return true
			}
		}
		return false // wait for the answer
	})
	if werr != nil || full {
		err = nil
	}
	return written, werr, err
}

// exchange writes req and reads the first bytes of its answer into p, as
// a Write and then a Read would, with one system call fewer (see
// sendThenRead).
func (s *rawSock) exchange(req, p []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	written, werr, err := s.sendThenRead(req, func(fd uintptr) bool {
		var wait bool
		n, rerr, wait, _ = s.readInto(fd, p)
		return !wait
	})
	switch {
	case werr != nil:
		return 0, werr
	case err != nil:
		return 0, err
	case written < len(req):
		if _, err := s.Write(req[written:]); err != nil {
			return 0, err
		}
		return s.Read(p)
	}
	return n, rerr
}

// readSock reads the socket fd into a pooled buffer. It returns the
// buffer and n > 0, or the error that ended the socket (io.EOF at its
// end), or wait when there is nothing to read yet; more as readInto.
//
//nolint:staticcheck // ST1008: wait and more say what the socket holds after the read whose result bp, n and err are
func (s *rawSock) readSock(fd uintptr) (bp *[]byte, n int, err error, wait, more bool) {
	bp = getBuf()
	n, err, wait, more = s.readInto(fd, *bp)
	if n == 0 {
		putBuf(bp)
		bp = nil
	}
	return bp, n, err, wait, more
}

// readInto reads the socket fd into p (len(p) > 0): n > 0 bytes, or the
// error that ended the socket (io.EOF at its end), or wait when there is
// nothing to read yet.
//
// more reports whether the socket may hold more after the n bytes: more
// bytes, or its end. A short read does not tell: a FIN that came with the
// last bytes is taken by the read that returns them, raises no readiness
// of its own, and only the next read says EOF. With TCP_INQ the kernel
// answers the question with each read (it counts a FIN already taken as
// one byte still to read), so a relay waits for readiness right after the
// read that drained the socket; without it, more is always true and the
// relay reads until EAGAIN, one system call more per burst.
//
//nolint:staticcheck // ST1008: as readSock
func (s *rawSock) readInto(fd uintptr, p []byte) (n int, err error, wait, more bool) {
	for {
		var (
			errno syscall.Errno
			inq   = -1
		)
		if s.inq {
			n, inq, errno = s.recvInq(fd, p)
		} else {
			n, errno = sysRead(fd, p)
		}
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			s.emptyReads++
			return 0, nil, true, false
		case errno != 0:
			return 0, opError("read", s.network(), errno), false, false
		case n == 0:
			return 0, io.EOF, false, false
		}
		return n, nil, false, inq != 0
	}
}

// tcpInq is TCP_INQ, the socket option and its control message's type.
const tcpInq = 36

// enableInq turns TCP_INQ on for a TCP socket (see readInto).
func (s *rawSock) enableInq() {
	if _, ok := s.conn.(*net.TCPConn); !ok {
		return
	}
	var errno syscall.Errno
	err := s.raw.Control(func(fd uintptr) {
		one := int32(1)
		_, _, errno = syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.IPPROTO_TCP, tcpInq, uintptr(unsafe.Pointer(&one)), 4, 0)
	})
	s.inq = err == nil && errno == 0
}

// recvInq is recvmsg(2) into p with the TCP_INQ control message: the bytes
// read, and the receive queue's length after them (-1 when the message
// did not come). The message header and control buffer are the call's
// own, on its stack (the kernel is done with them when it returns).
func (s *rawSock) recvInq(fd uintptr, p []byte) (n, inq int, errno syscall.Errno) {
	var (
		cbuf [32]byte
		iov  = syscall.Iovec{Base: unsafe.SliceData(p)}
		msg  = syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: &cbuf[0]}
	)
	iov.SetLen(len(p))
	msg.SetControllen(len(cbuf))
	r, _, errno := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
	if errno != 0 {
		return 0, -1, errno
	}
	inq = -1
	if msg.Controllen >= uint64(syscall.CmsgLen(4)) {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&cbuf[0]))
		if h.Level == syscall.IPPROTO_TCP && h.Type == tcpInq {
			inq = int(*(*int32)(unsafe.Pointer(&cbuf[syscall.CmsgLen(0)])))
		}
	}
	return int(r), inq, 0
}
