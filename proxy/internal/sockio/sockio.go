// Package sockio moves a tunnel's bytes between its two sockets: it waits
// for data without holding a buffer, reads and writes with as few system
// calls as the platform allows, bounds how long a write may wait for a
// peer, and closes without ever waiting for one.
//
// The proxy sees one small interface, Conn, for each side of a tunnel, plus
// the accept path's ClientConn and the Parker that lets idle tunnels give
// up their goroutines. Everything that knows about system calls, epoll,
// the runtime poller or crypto/tls's record layer lives here, behind build
// tags:
//
//   - On Linux, a socket is read and written with raw read(2) and write(2)
//     inside its syscall.RawConn callbacks: a waiting Relay holds no
//     buffer, a burst is relayed inside one callback, and the goroutine
//     never leaves its P for a system call (see sysRead). A TLS client
//     connection is read through a record-aware conn (ClientConn) so that
//     the relay can tell whether a whole TLS record is already buffered.
//     Idle sockets can be parked in an epoll set of their own (Parker).
//   - Elsewhere, and for any net.Conn that is not a TCP or Unix socket (or
//     TLS over the record-aware conn), Conn is a portable copier on
//     net.Conn's Read and Write: it holds its buffer while it waits, and
//     nothing parks.
//
// Both behave the same as seen from the proxy; the tests run against both.
package sockio

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Conn is one socket of a tunnel, as the tunnel's two copiers use it: one
// copier reads it (Relay), the other writes it (Write, CloseWrite). Close,
// LimitWrites and SetReadDeadline may be called from any goroutine at any
// time.
type Conn interface {
	// Relay waits for bytes from the peer and passes them to fn, in
	// order, for as long as fn takes all of them and returns nil. fn may
	// take a prefix and return an error to stop: the bytes it left are
	// passed first by the next Relay. Relay returns fn's error, the error
	// that ended the stream (io.EOF at its clean end), or
	// os.ErrDeadlineExceeded once the read deadline has passed, which is
	// how a waiting Relay is woken. p is valid only during the call.
	Relay(fn func(p []byte) (int, error)) error
	// Write writes all of p. It waits for a peer that accepts nothing for
	// at most the write timeout (then it fails with
	// os.ErrDeadlineExceeded), and never past LimitWrites' deadline.
	Write(p []byte) (int, error)
	// MoreFollows reports, while Relay's fn runs, whether the peer's
	// stream is known to go on right behind the bytes fn was given (with
	// more bytes, or with its end), which Relay passes on before it
	// waits again: fn may then write them with WriteMore.
	MoreFollows() bool
	// WriteMore is Write for bytes that more follow at once: the last of
	// them may wait in the socket (MSG_MORE) to go out in one segment
	// with what follows, a Write, CloseWrite's FIN or Close's. One of
	// those must follow promptly; Linux would send what waits when its
	// probe timer fires, a fifth of a second or more later.
	WriteMore(p []byte) (int, error)
	// Flush sends at once what WriteMore left waiting, if anything (it
	// makes no system call otherwise): for a writer that stops short of
	// what it meant to write next.
	Flush() error
	// CloseWrite ends the stream towards the peer after what was written:
	// a TLS close_notify, then the FIN. It waits for the peer no longer
	// than Write does, and not at all after LimitWrites with a past time.
	CloseWrite() error
	// LimitWrites bounds every write, waiting or to come, by deadline. A
	// deadline in the past aborts: a waiting write fails at once and later
	// writes (CloseWrite's included) send only what the socket takes
	// without waiting. Closing a tunnel starts with that, so that it never
	// waits for a peer.
	LimitWrites(deadline time.Time)
	SetReadDeadline(t time.Time) error
	Close() error
	// Parkable reports whether nothing is buffered, so that waiting for
	// the socket to become readable is all Relay would do, and returns
	// the socket to wait on (see Parker). It is false on systems without
	// a Parker.
	Parkable() (Pollable, bool)
}

// Handshake is a backend connection during the upgrade handshake, as the
// proxy uses it: one request sent, then its answer read (see HandshakeIO).
type Handshake interface {
	// Send writes the whole request p, at once or as part of the first
	// Read (then p must stay unchanged until that Read returns, and an
	// error writing it is that Read's).
	Send(p []byte) error
	// Read reads the answer.
	Read(p []byte) (int, error)
}

// connHandshake is Handshake on net.Conn's own Write and Read.
type connHandshake struct{ c net.Conn }

func (h *connHandshake) Send(p []byte) error {
	_, err := h.c.Write(p)
	return err
}

func (h *connHandshake) Read(p []byte) (int, error) { return h.c.Read(p) }

// Pollable is a socket a Parker can wait on.
type Pollable interface {
	parkable()
}

// New returns c as a Conn. writeTimeout bounds how long a write waits for
// a peer that accepts no bytes (0: no bound). c must not be used directly
// afterwards, except for its addresses.
func New(c net.Conn, writeTimeout time.Duration) Conn {
	if sc := newFast(c, writeTimeout); sc != nil {
		return sc
	}
	return newPortable(c, writeTimeout)
}

// BufSize is the size of pooled buffers: 64 KiB holds four full TLS
// records, and one read(2) or write(2) moves that much when a stream is
// busy. A waiting Relay holds none on Linux, so the size costs nothing
// while idle. Against 32 KiB it saved 8-10% of the CPU per 16 KiB message
// in the throughput16k scenario (8 of 8 alternating A/B pairs); 128 KiB
// saved nothing more.
const BufSize = 64 << 10

const (
	tlsRecordHeader = 5
	// maxRecordPlaintext is the most plaintext one TLS record carries.
	maxRecordPlaintext = 16 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// aLongTimeAgo is a deadline in the past.
var aLongTimeAgo = time.Unix(1, 0)

// ErrWouldBlock is what a read that must not wait returns when nothing is
// buffered, and what a write after an abort returns when the socket takes
// nothing at once. It is a temporary net.Error, which crypto/tls does not
// keep as the connection's error.
var ErrWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "sockio: operation would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// errShortConsume is Relay's answer to an fn that took only part of its
// bytes and returned no error: a programming error in the caller.
var errShortConsume = errors.New("sockio: relay function took part of its bytes without an error")

// leftover holds bytes a Relay function did not take, in a pooled buffer.
type leftover struct {
	bp   *[]byte
	r, w int
}

// deliver passes the leftover bytes to fn; it reports whether Relay must
// return (err says why, nil when fn took everything and Relay goes on).
func (l *leftover) deliver(fn func([]byte) (int, error)) (stop bool, err error) {
	if l.bp == nil {
		return false, nil
	}
	bp, r, w := l.bp, l.r, l.w
	l.bp = nil
	return handOver(l, fn, bp, r, w)
}

// handOver passes (*bp)[r:w] to fn, keeping what fn leaves in l and
// returning the buffer to the pool otherwise.
func handOver(l *leftover, fn func([]byte) (int, error), bp *[]byte, r, w int) (stop bool, err error) {
	k, err := fn((*bp)[r:w])
	if k < w-r {
		l.bp, l.r, l.w = bp, r+k, w
		if err == nil {
			err = errShortConsume
		}
		return true, err
	}
	putBuf(bp)
	return err != nil, err
}

// pending reports whether leftover bytes wait.
func (l *leftover) pending() bool { return l.bp != nil }
