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

// errGoneAway ends a copier that finished the going-away handshake: it
// sent its close frame and its source answered with one.
var errGoneAway = errors.New("proxy: close handshake done")

// errNotWebSocket ends a copier at shutdown whose stream is not WebSocket
// framing, so no close frame can be placed in it.
var errNotWebSocket = errors.New("proxy: stream is not websocket framing")

// goAwayReason is the reason text of the close frames sent at shutdown.
const goAwayReason = "proxy shutting down"

// tunnel is one established WebSocket connection: the client's side, the
// backend's side and the lease that counts it.
type tunnel struct {
	h          *Handler
	pool       string
	remoteAddr string
	begun      time.Time
	lease      balancer.Lease

	client, backend net.Conn
	up, down        *copier // client→backend, backend→client

	closeOnce sync.Once

	// stopping is set when the proxy shuts down; drainDeadline (unix nanos)
	// is when the close handshakes must be done. drainDeadline is stored
	// before stopping is set.
	stopping      atomic.Bool
	drainDeadline atomic.Int64

	mu     sync.Mutex
	ended  int         // directions that have ended; guarded by mu
	linger *time.Timer // guarded by mu
}

// attach pairs the connections. The bytes that pass before run (sent
// along with the 101, or by the client right after its request) must be
// reported to the copiers' relayed.
func (t *tunnel) attach(client, backend net.Conn) {
	t.client, t.backend = client, backend
	t.up = newCopier(t, client, backend, true)
	t.down = newCopier(t, backend, client, false)
}

// start starts the tunnel's two copiers; it returns at once, so the
// net/http goroutine that served the upgrade ends and its request,
// buffers and (handshake-grown) stack are freed. The copier that ends
// second closes both connections, releases the lease, unregisters the
// tunnel and logs. The tunnel must have been registered (conns.add).
func (t *tunnel) start() {
	go t.up.run()
	go t.down.run()
}

// directionEnded is called by each copier when it ends. For the first to
// end: a clean EOF is passed on as a half-close and the other direction
// gets the linger time to finish; the end of a going-away handshake waits
// for the other direction's (bounded by the drain deadline); anything else
// closes both at once. The second to end finishes the tunnel.
func (t *tunnel) directionEnded(c *copier, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.err = err
	t.ended++
	if t.ended == 2 {
		if t.linger != nil {
			t.linger.Stop()
		}
		t.finish()
		return
	}
	switch {
	case errors.Is(err, errGoneAway):
		return
	case errors.Is(err, io.EOF) && !t.stopping.Load() && closeWrite(c.dst) == nil:
		t.linger = time.AfterFunc(t.h.halfCloseLinger, t.close)
		return
	}
	t.close()
}

// finish closes both connections, releases the lease, unregisters the
// tunnel and logs its end. Called once, with t.mu held.
func (t *tunnel) finish() {
	t.close()
	t.lease.Release()
	t.h.conns.remove(t)
	t.h.log.Debug("tunnel closed",
		slog.String(keyPool, t.pool),
		slog.String(keyBackend, t.lease.Address),
		slog.String(keyRemoteAddr, t.remoteAddr),
		slog.Duration(keyDuration, time.Since(t.begun)),
		slog.Int64(keyBytesUp, t.up.n.Load()),
		slog.Int64(keyBytesDown, t.down.n.Load()),
		slog.Bool("going_away", t.stopping.Load()),
		slog.Any("up_err", quiet(t.up.err)),
		slog.Any("down_err", quiet(t.down.err)))
}

// goAway starts the going-away handshake: each copier, at its next frame
// boundary, sends a close frame with code 1001 to its destination and then
// waits for its source's close frame, until deadline. Blocked reads are
// woken by an expired read deadline.
func (t *tunnel) goAway(deadline time.Time) {
	t.drainDeadline.Store(deadline.UnixNano())
	if !t.stopping.CompareAndSwap(false, true) {
		return
	}
	for _, c := range []net.Conn{t.client, t.backend} {
		_ = c.SetWriteDeadline(deadline)
		_ = c.SetReadDeadline(aLongTimeAgo)
	}
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
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errGoneAway) {
		return nil
	}
	return err
}

// copier copies one direction of a tunnel. It is the only reader of src and
// the only writer of dst. It holds a pooled buffer only while data flows:
// between bursts it waits for src to become readable without one. Its frame
// tracker follows the frames that pass, so that at shutdown a close frame
// can be put between two of them.
type copier struct {
	t        *tunnel
	src, dst net.Conn
	toServer bool // dst is the backend: frames written to it are masked
	n        atomic.Int64
	tr       frameTracker
	err      error // why copy ended; guarded by t.mu

	// raw is src's socket, for waiting until it is readable; nil when src
	// is not a socket (then reads block holding a buffer).
	raw    syscall.RawConn
	isTLS  bool
	peek   [1]byte
	peekFn func(fd uintptr) bool
}

func newCopier(t *tunnel, src, dst net.Conn, toServer bool) *copier {
	c := &copier{t: t, src: src, dst: dst, toServer: toServer}
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

// relayed records bytes that reached dst outside copy (before the tunnel
// started).
func (c *copier) relayed(p []byte) {
	c.tr.advance(p)
	c.n.Add(int64(len(p)))
}

// run is copy on its own goroutine: its name in stack dumps says which
// goroutine this is.
func (c *copier) run() {
	c.t.directionEnded(c, c.copy())
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
		if c.t.stopping.Load() {
			if bp == nil {
				bp = bufPool.Get().(*[]byte)
			}
			return c.goAway(*bp, nil)
		}
		if bp == nil {
			if c.raw != nil {
				if err := c.waitReadable(); err != nil {
					if c.wokenForShutdown(err) {
						continue
					}
					return err
				}
			}
			bp = bufPool.Get().(*[]byte)
		}
		buf := *bp
		n, err := c.src.Read(buf)
		if n > 0 {
			if c.t.stopping.Load() {
				return c.goAway(buf, buf[:n])
			}
			if err := c.write(buf[:n]); err != nil {
				return err
			}
		}
		if err != nil {
			if c.wokenForShutdown(err) {
				continue
			}
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

// write relays p to dst and advances the frame tracker over it.
func (c *copier) write(p []byte) error {
	if err := c.send(p); err != nil {
		return err
	}
	c.tr.advance(p)
	return nil
}

// send relays p to dst, for bytes the tracker has already seen.
func (c *copier) send(p []byte) error {
	if _, err := c.dst.Write(p); err != nil {
		return err
	}
	c.n.Add(int64(len(p)))
	return nil
}

// wokenForShutdown reports whether err is the expired deadline with which
// goAway wakes a blocked copier.
func (c *copier) wokenForShutdown(err error) bool {
	return c.t.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}

// readNoWait relays what a TLS source can deliver without touching the
// socket, and reports whether it delivered anything.
func (c *copier) readNoWait(buf []byte) (bool, error) {
	_ = c.src.SetReadDeadline(aLongTimeAgo)
	n, err := c.src.Read(buf)
	// goAway sets stopping before it expires the deadline, so either this
	// reset comes first and goAway's deadline wakes the next wait, or
	// stopping is already visible at the top of copy's loop.
	_ = c.src.SetReadDeadline(time.Time{})
	if n > 0 {
		// Relayed even when stopping: the tracker then knows where the
		// next boundary is, and copy's loop hands over to goAway.
		if err := c.write(buf[:n]); err != nil {
			return false, err
		}
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return false, err
	}
	return n > 0, nil
}

// goAway finishes this direction at shutdown. It relays the rest of the
// frame in flight (pending holds bytes read but not yet relayed), sends
// dst a close frame with code 1001 unless src already sent dst one, then
// reads and discards src's frames until src's own close frame arrives (the
// answer to the close the other direction sent), all before the drain
// deadline.
func (c *copier) goAway(buf, pending []byte) error {
	deadline := time.Unix(0, c.t.drainDeadline.Load())
	_ = c.src.SetReadDeadline(deadline)
	read := func() error {
		n, err := c.src.Read(buf)
		pending = buf[:n]
		if n > 0 {
			return nil
		}
		return err
	}
	for !c.tr.atBoundary() {
		if c.tr.broken {
			return errNotWebSocket
		}
		if len(pending) == 0 {
			if err := read(); err != nil {
				return err
			}
		}
		k := c.tr.toBoundary(pending)
		if err := c.send(pending[:k]); err != nil {
			return err
		}
		pending = pending[k:]
	}
	if !c.tr.closed {
		if _, err := c.dst.Write(closeFrame(CloseGoingAway, goAwayReason, c.toServer)); err != nil {
			return err
		}
	}
	// From here on nothing more goes to dst: it has its close frame.
	for {
		c.tr.advance(pending)
		pending = nil
		if c.tr.closed {
			return errGoneAway
		}
		if c.tr.broken {
			return errNotWebSocket
		}
		if err := read(); err != nil {
			return err
		}
	}
}

// waitReadable blocks until src's socket has data or an end to report.
func (c *copier) waitReadable() error {
	return c.raw.Read(c.peekFn)
}
