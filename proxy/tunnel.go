package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

const (
	// bufSize is the copy buffer borrowed while data flows. 32 KiB holds
	// two full TLS records.
	bufSize = 32 << 10
	// defaultHalfCloseLinger bounds how long one direction may stay open
	// after the other ended cleanly and was passed on as a half-close: the
	// time a peer gets to finish its side (normally it closes at once).
	defaultHalfCloseLinger = 3 * time.Second
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// aLongTimeAgo is a deadline in the past, for a read that must not block.
var aLongTimeAgo = time.Unix(1, 0)

// tunnel is one established WebSocket connection: the client's side, the
// backend's side and the lease that counts it.
type tunnel struct {
	h          *Handler
	pool       string
	remoteAddr string
	start      time.Time
	lease      balancer.Lease

	client, backend net.Conn

	closeOnce sync.Once

	mu     sync.Mutex
	ended  int         // directions that have ended; guarded by mu
	linger *time.Timer // guarded by mu
}

// run relays bytes both ways until both directions have ended, then
// closes both connections and releases the lease. It runs on the handler's
// goroutine, which copies client→backend; one more goroutine copies
// backend→client.
func (t *tunnel) run() {
	if !t.h.conns.add(t) {
		t.close()
		t.lease.Release()
		return
	}
	up := newCopier(t.client, t.backend)   // client → backend
	down := newCopier(t.backend, t.client) // backend → client

	downDone := make(chan error, 1)
	go down.run(t, downDone)
	upErr := up.copy()
	t.directionEnded(up, upErr)
	downErr := <-downDone

	t.close()
	t.lease.Release()
	t.h.conns.remove(t)
	t.h.log.Debug("tunnel closed",
		slog.String(keyPool, t.pool),
		slog.String(keyBackend, t.lease.Address),
		slog.String(keyRemoteAddr, t.remoteAddr),
		slog.Duration(keyDuration, time.Since(t.start)),
		slog.Int64(keyBytesUp, up.n.Load()),
		slog.Int64(keyBytesDown, down.n.Load()),
		slog.Any("up_err", quiet(upErr)),
		slog.Any("down_err", quiet(downErr)))
}

// directionEnded is called by each copier when it ends. For the first to
// end: a clean EOF is passed on as a half-close and the other direction
// gets halfCloseLinger to finish; anything else closes both at once. The
// second to end closes both.
func (t *tunnel) directionEnded(c *copier, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended++
	if t.ended == 2 {
		if t.linger != nil {
			t.linger.Stop()
		}
		t.close()
		return
	}
	if errors.Is(err, io.EOF) && closeWrite(c.dst) == nil {
		t.linger = time.AfterFunc(t.h.halfCloseLinger, t.close)
		return
	}
	t.close()
}

// closeWrite half-closes c after everything written so far: for TLS a
// close_notify alert and then the TCP FIN, so the peer sees the end after
// the last frame (closing outright could reset the connection and lose it).
func closeWrite(c net.Conn) error {
	type closeWriter interface{ CloseWrite() error }
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		c = tc.NetConn()
	}
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// close closes both connections, unblocking both copiers.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		if t.client != nil {
			_ = t.client.Close()
		}
		if t.backend != nil {
			_ = t.backend.Close()
		}
	})
}

// quiet maps the errors of an ordinary close to nil for logging.
func quiet(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// copier copies one direction of a tunnel. It is the only reader of src and
// the only writer of dst. It holds a pooled buffer only while data flows:
// between bursts it waits for src to become readable without one.
type copier struct {
	src, dst net.Conn
	n        atomic.Int64

	// raw is src's socket, for waiting until it is readable; nil when src
	// is not a socket (then reads block holding a buffer).
	raw    syscall.RawConn
	isTLS  bool
	peek   [1]byte
	peekFn func(fd uintptr) bool
}

func newCopier(src, dst net.Conn) *copier {
	c := &copier{src: src, dst: dst}
	sock := src
	if tc, ok := src.(*tls.Conn); ok {
		c.isTLS = true
		sock = tc.NetConn()
	}
	if sc, ok := sock.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peekFn = c.peekReadable
		}
	}
	return c
}

// run is copy on its own goroutine: its name in stack dumps says which
// goroutine this is.
func (c *copier) run(t *tunnel, done chan<- error) {
	err := c.copy()
	t.directionEnded(c, err)
	done <- err
}

// copy relays src to dst until an error or EOF, which it returns.
func (c *copier) copy() error {
	var bp *[]byte
	defer func() {
		if bp != nil {
			bufPool.Put(bp)
		}
	}()
	for {
		if bp == nil {
			if c.raw != nil {
				if err := c.waitReadable(); err != nil {
					return err
				}
			}
			bp = bufPool.Get().(*[]byte)
		}
		buf := *bp
		n, err := c.src.Read(buf)
		if n > 0 {
			if _, werr := c.dst.Write(buf[:n]); werr != nil {
				return werr
			}
			c.n.Add(int64(n))
		}
		if err != nil {
			return err
		}
		if c.raw == nil || n == len(buf) {
			continue // more is probably waiting: keep the buffer
		}
		if c.isTLS {
			// crypto/tls may already hold the next records it read from
			// the socket; ask without blocking before waiting on the socket.
			more, err := c.readNoWait(buf)
			if err != nil {
				return err
			}
			if more {
				continue
			}
		}
		bufPool.Put(bp)
		bp = nil
	}
}

// readNoWait relays what a TLS source can deliver without touching the
// socket, and reports whether it delivered anything.
func (c *copier) readNoWait(buf []byte) (bool, error) {
	_ = c.src.SetReadDeadline(aLongTimeAgo)
	n, err := c.src.Read(buf)
	_ = c.src.SetReadDeadline(time.Time{})
	if n > 0 {
		if _, werr := c.dst.Write(buf[:n]); werr != nil {
			return false, werr
		}
		c.n.Add(int64(n))
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return false, err
	}
	return n > 0, nil
}

// waitReadable blocks until src's socket has data or an end to report.
func (c *copier) waitReadable() error {
	return c.raw.Read(c.peekFn)
}
