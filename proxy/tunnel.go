package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
)

const (
	// defaultHalfCloseLinger bounds how long one direction may stay open
	// after the other ended cleanly and was passed on as a half-close: the
	// time a peer gets to finish its side (normally it closes at once).
	defaultHalfCloseLinger = 3 * time.Second
)

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
	// Each plain socket gets one rawSock: one copier reads it, the other
	// writes it. A TLS side goes through its recordConn instead.
	var cs, bs *rawSock
	if _, isTLS := client.(*tls.Conn); !isTLS {
		cs = newRawSock(client)
	}
	if _, isTLS := backend.(*tls.Conn); !isTLS {
		bs = newRawSock(backend)
	}
	t.up = newCopier(t, client, backend, true, cs, bs)
	t.down = newCopier(t, backend, client, false, bs, cs)
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
	case errors.Is(err, io.EOF) && !t.stopping.Load() && c.closeWrite() == nil:
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
	t.h.inUse.Add(-1)
	// LogAttrs checks the level before anything is boxed: this runs once
	// per connection, usually with debug logging off.
	t.h.log.LogAttrs(context.Background(), slog.LevelDebug, "tunnel closed",
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
	t.up.resume()
	t.down.resume()
}

// closeWrite half-closes c.dst after everything written so far: for TLS a
// close_notify alert and then the TCP FIN, so the peer sees the end after
// the last frame (closing outright could reset the connection and lose
// it). The FIN goes out with a raw shutdown(2) (see sysRead): on loopback
// it runs the peer's side of the close too.
func (c *copier) closeWrite() error {
	conn := c.dst
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		conn = tc.NetConn()
	}
	switch {
	case c.w != nil:
		return c.w.shutdownWrite()
	case c.dstRC != nil:
		return c.dstRC.sock.shutdownWrite()
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// close closes both connections, unblocking both copiers. Each is
// half-closed first (closeWrite), as Close would end it, so that close(2)
// has no FIN left to send.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		for _, c := range [...]*copier{t.up, t.down} {
			if c != nil {
				_ = c.closeWrite()
			}
		}
		if t.client != nil {
			_ = t.client.Close()
		}
		if t.backend != nil {
			_ = t.backend.Close()
		}
	})
	// A parked copier has no goroutine to notice the close: give it one.
	t.up.resume()
	t.down.resume()
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
// between bursts it waits for src without one (see rawio.go). Its frame
// tracker follows the frames that pass, so that at shutdown a close frame
// can be put between two of them.
type copier struct {
	t        *tunnel
	src, dst net.Conn
	toServer bool // dst is the backend: frames written to it are masked
	n        atomic.Int64
	tr       frameTracker
	err      error // why copy ended; guarded by t.mu

	// Parking (park.go).
	state     atomic.Int32 // stateRunning, stateWaiting or stateParked
	waitSince atomic.Int64 // Handler.epoch when the current wait began
	parkReq   atomic.Bool  // requestPark woke this copier to park
	parkToken uint64       // the parker's token while parked
	parkedOn  *parker      // the parker it parked on

	// How src is read: a plain socket through sock, TLS over a recordConn
	// through rc, or else a blocking Read that holds its buffer.
	sock    *rawSock
	rc      *recordConn
	relayFn func(fd uintptr) bool // relaySockRound or relayTLSRound, bound once
	res     relayResult           // what relayFn stopped with

	// w writes to a plain socket dst with raw system calls, nil otherwise
	// (a TLS dst writes through its recordConn, which is dstRC).
	w     *rawSock
	dstRC *recordConn
}

// relayResult is how a relay callback ended: bytes read but not relayed
// (when stopping), in a pooled buffer, or the error that ended src or the
// relay.
type relayResult struct {
	bp  *[]byte
	n   int
	err error
}

// newCopier returns the copier from src to dst; srcSock and dstSock are
// their rawSocks when they are plain sockets, else nil.
func newCopier(t *tunnel, src, dst net.Conn, toServer bool, srcSock, dstSock *rawSock) *copier {
	c := &copier{t: t, src: src, dst: dst, toServer: toServer, sock: srcSock, w: dstSock}
	if c.sock != nil {
		c.relayFn = c.relaySockRound
	} else if c.rc = recordConnOf(src); c.rc != nil {
		c.relayFn = c.relayTLSRound
	}
	c.dstRC = recordConnOf(dst)
	return c
}

// relayed records bytes that reached dst outside copy (before the tunnel
// started).
func (c *copier) relayed(p []byte) {
	c.tr.advance(p)
	c.n.Add(int64(len(p)))
}

// run is copy on its own goroutine: its name in stack dumps says which
// goroutine this is. A copier that parks ends its goroutine and gets a new
// one when it resumes.
func (c *copier) run() {
	err := c.copy()
	if errors.Is(err, errParked) {
		return
	}
	c.t.directionEnded(c, err)
}

// next waits for the next bytes from src and returns them in a pooled
// buffer (nil when n is 0), or the error that ended src.
func (c *copier) next() (*[]byte, int, error) {
	switch {
	case c.sock != nil:
		c.beginWait()
		bp, n, err := c.sock.next()
		c.endWait()
		return bp, n, err
	case c.rc != nil && c.rc.bp == nil:
		// Wait for socket data holding no plaintext buffer. A record that
		// is only partly here is read to its end by tls.Conn.Read below.
		c.beginWait()
		err := c.rc.fill()
		c.endWait()
		if err != nil {
			return nil, 0, err
		}
	}
	return c.readRecords(true)
}

// readRecords reads from the TLS src into a pooled buffer (nil when n is
// 0). With wait, the first record may wait for the socket; after that (and
// always without wait) it reads only whole records that are already
// buffered, and returns n == 0 rather than wait.
//
// Over a recordConn each Read decrypts one record; when whole records
// are already waiting, read them too, so that one write relays them (a
// 16 KiB message spans two records). There must be room for a whole
// record, or crypto/tls would keep the rest of it where rc.pending
// cannot see it. A record without data (a TLS 1.3 KeyUpdate, say) makes
// crypto/tls read on: noWait turns that into a temporary error instead
// of a wait that would hold back the bytes already read.
func (c *copier) readRecords(wait bool) (*[]byte, int, error) {
	bp := getBuf()
	var (
		n   int
		err error
	)
	if wait || c.rc == nil {
		n, err = c.src.Read(*bp)
	}
	for err == nil && c.rc != nil && (n == 0 || c.rc.pending()) && len(*bp)-n >= maxRecordPlaintext {
		var k int
		c.rc.noWait = true
		k, err = c.src.Read((*bp)[n:])
		c.rc.noWait = false
		n += k
		if errors.Is(err, errWouldBlock) {
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

// copy relays src to dst until an error or EOF, which it returns.
func (c *copier) copy() error {
	for {
		if c.t.stopping.Load() {
			return c.goAway(nil, nil)
		}
		var (
			bp  *[]byte
			n   int
			err error
		)
		if c.relayFn != nil {
			bp, n, err = c.relay()
		} else {
			bp, n, err = c.next()
		}
		if n > 0 {
			if c.t.stopping.Load() {
				return c.goAway(bp, (*bp)[:n])
			}
			werr := c.write((*bp)[:n])
			putBuf(bp)
			if werr != nil {
				return werr
			}
		}
		if err != nil {
			if c.wokenForShutdown(err) {
				continue
			}
			if c.wokenToPark(err) {
				if !c.t.stopping.Load() && c.tryPark() {
					return errParked
				}
				continue
			}
			return err
		}
	}
}

// relay relays src inside one RawConn.Read call for as long as data
// flows. Its callback (relayFn) reads, relays, and after a short read
// returns false, so the runtime waits for readiness without first trying
// a read that would fail with EAGAIN: the readiness the poller records is
// reset only when a RawConn.Read call begins, never between the
// callback's rounds, so data that arrives meanwhile is not missed. That
// saves one system call per burst. It returns like next: a pooled buffer
// of bytes read but not relayed (when stopping), or the error that ended
// the source or the relay.
func (c *copier) relay() (*[]byte, int, error) {
	if c.rc != nil && (c.rc.bp != nil || c.rc.err != nil) {
		// Bytes, or the end of the socket, are here already: crypto/tls
		// reads them without waiting.
		return c.next()
	}
	c.beginWait()
	err := c.parkConn().Read(c.relayFn)
	c.endWait()
	if err != nil {
		return nil, 0, err
	}
	res := c.res
	c.res = relayResult{}
	if res.bp == nil && res.err == nil && c.rc != nil {
		return c.next() // the socket ended: crypto/tls says how
	}
	return res.bp, res.n, res.err
}

// relaySockRound is the relay callback for a plain socket src.
func (c *copier) relaySockRound(fd uintptr) bool {
	for {
		bp, n, err, wait := readSock(fd, c.sock.network)
		if wait {
			return false
		}
		if err != nil {
			c.res = relayResult{err: err}
			return true
		}
		if c.relayed1(bp, n, nil) {
			return true
		}
		if n < bufSize {
			return false // drained: wait for the next burst
		}
	}
}

// relayTLSRound is the relay callback for a TLS src over a recordConn. It
// reads the socket into the recordConn's buffer and has crypto/tls decrypt
// the whole records there (under noWait, so crypto/tls never waits for the
// socket, whose read lock this callback holds). How the socket ended is
// left in rc.err for crypto/tls to read after the callback.
func (c *copier) relayTLSRound(fd uintptr) bool {
	rc := c.rc
	drained := false // the last read emptied the socket
	for {
		if rc.bp == nil {
			if drained {
				return false // wait for the next burst
			}
			bp, n, err, wait := readSock(fd, rc.sock.network)
			if wait {
				return false
			}
			if err != nil {
				rc.err = err
				return true
			}
			rc.bp, rc.r, rc.w = bp, 0, n
			drained = n < bufSize
		}
		bp, n, err := c.readRecords(false)
		if n > 0 && c.relayed1(bp, n, err) {
			return true
		}
		if err != nil {
			c.res = relayResult{err: err}
			return true
		}
	}
}

// relayed1 relays n bytes of the pooled buffer bp read by a relay
// callback, or keeps them in c.res for goAway when the tunnel is
// stopping; it reports whether the callback must end (c.res says why).
func (c *copier) relayed1(bp *[]byte, n int, rerr error) bool {
	if c.t.stopping.Load() {
		c.res = relayResult{bp: bp, n: n, err: rerr}
		return true
	}
	werr := c.write((*bp)[:n])
	putBuf(bp)
	if werr != nil {
		c.res = relayResult{err: werr}
		return true
	}
	// Busy, not idle: keep the parking sweep away.
	c.waitSince.Store(c.t.h.epoch.Load())
	return false
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
	if _, err := c.writeDst(p); err != nil {
		return err
	}
	c.n.Add(int64(len(p)))
	return nil
}

// writeDst writes p to dst. More than one TLS record's worth is sent as a
// batch: one system call for all its records.
func (c *copier) writeDst(p []byte) (int, error) {
	switch {
	case c.w != nil:
		return c.w.Write(p)
	case c.dstRC != nil && len(p) > maxRecordPlaintext:
		c.dstRC.beginBatch()
		n, err := c.dst.Write(p)
		if ferr := c.dstRC.endBatch(); err == nil {
			err = ferr
		}
		return n, err
	}
	return c.dst.Write(p)
}

// wokenForShutdown reports whether err is the expired deadline with which
// goAway wakes a blocked copier.
func (c *copier) wokenForShutdown(err error) bool {
	return c.t.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}

// goAway finishes this direction at shutdown. It relays the rest of the
// frame in flight (pending, in the pooled buffer bp, holds bytes read but
// not yet relayed), sends dst a close frame with code 1001 unless src
// already sent dst one, then reads and discards src's frames until src's
// own close frame arrives (the answer to the close the other direction
// sent), all before the drain deadline.
func (c *copier) goAway(bp *[]byte, pending []byte) error {
	defer func() {
		if bp != nil {
			putBuf(bp)
		}
	}()
	deadline := time.Unix(0, c.t.drainDeadline.Load())
	_ = c.src.SetReadDeadline(deadline)
	read := func() error {
		if bp != nil {
			putBuf(bp)
		}
		var (
			n   int
			err error
		)
		for {
			bp, n, err = c.next()
			// A sweep that looked before the shutdown began may still
			// wake this copier to park: restore the drain deadline.
			if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.parkReq.Swap(false) {
				_ = c.src.SetReadDeadline(deadline)
				continue
			}
			break
		}
		pending = nil
		if n > 0 {
			pending = (*bp)[:n]
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
		if _, err := c.writeDst(closeFrame(CloseGoingAway, goAwayReason, c.toServer)); err != nil {
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
