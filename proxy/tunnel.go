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
	// abandonGrace bounds how long a tunnel whose peer stopped reading
	// waits for the other side's answer to the 1001 it was sent.
	abandonGrace = 2 * time.Second

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
	host, path string // of the upgrade request, for the access log
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

	// firstClose is the first close frame seen either way, packed by
	// packClose; 0 until one has passed. closeFrames counts the directions
	// in which a close frame has passed: at 2 the close handshake is done.
	firstClose  atomic.Uint32
	closeFrames atomic.Int32
	// byProxy is set when wsgate itself ends the tunnel (Handler.Close, a
	// stalled peer), before it closes anything.
	byProxy atomic.Bool

	mu         sync.Mutex
	ended      int         // directions that have ended; guarded by mu
	endedFirst Initiator   // whose end ended the first direction; guarded by mu
	linger     *time.Timer // guarded by mu
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
	for _, s := range [...]*rawSock{t.up.dstSock(), t.down.dstSock()} {
		if s != nil {
			s.wtimeout = t.h.writeTimeout
		}
	}
}

// start starts the tunnel's two copiers; it returns at once, so the
// net/http goroutine that served the upgrade ends and its request,
// buffers and (handshake-grown) stack are freed. The copier that ends
// second closes both connections, releases the lease, unregisters the
// tunnel and logs. The tunnel must have been registered (conns.add).
func (t *tunnel) start() {
	t.begun = time.Now()
	go t.up.run()
	go t.down.run()
}

// directionEnded is called by each copier when it ends; a clean EOF has
// already been passed on as a half-close (halfClosed). For the first to
// end: after a half-close the other direction gets the linger time to
// finish; the end of a going-away handshake waits for the other
// direction's (bounded by the drain deadline); anything else closes both
// at once. The second to end finishes the tunnel. Nothing here waits for
// a peer, and nothing is written or closed under t.mu.
func (t *tunnel) directionEnded(c *copier, err error, halfClosed bool) {
	t.mu.Lock()
	c.err = err
	t.ended++
	if t.ended == 2 {
		if t.linger != nil {
			t.linger.Stop()
		}
		t.mu.Unlock()
		t.finish()
		return
	}
	t.endedFirst = c.endedBy(err)
	switch {
	case errors.Is(err, errGoneAway):
		t.mu.Unlock()
		return
	case halfClosed && t.closeFrames.Load() < 2:
		// The peer that ended its side may still be owed bytes; after a
		// complete close handshake nothing more may pass, and waiting
		// would only hold the tunnel open.
		t.linger = time.AfterFunc(t.h.halfCloseLinger, t.close)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.close()
}

// finish closes both connections, releases the lease, unregisters the
// tunnel, tells the observer and writes the tunnel's access record.
// Called once, by the copier that ended second.
func (t *tunnel) finish() {
	t.close()
	t.lease.Release()
	ev := TunnelEvent{
		Pool:       t.pool,
		Backend:    t.lease.Address,
		RemoteAddr: t.remoteAddr,
		Host:       t.host,
		Path:       t.path,
		Duration:   time.Since(t.begun),
		BytesUp:    t.up.n.Load(),
		BytesDown:  t.down.n.Load(),
	}
	ev.ClosedBy, ev.CloseCode = t.closedBy()
	t.h.conns.remove(t, ev.BytesUp, ev.BytesDown)
	t.h.inUse.Add(-1)
	t.h.obs.TunnelClosed(&ev)
	t.h.logTunnel(&ev, t)
}

// packClose packs a close frame's initiator and code for firstClose.
func packClose(by Initiator, code uint16) uint32 {
	var who uint32
	switch by {
	case ClosedByClient:
		who = 1
	case ClosedByBackend:
		who = 2
	default:
		who = 3
	}
	return who<<16 | uint32(code)
}

// noteClose records a close frame sent by by, if it is the first.
func (t *tunnel) noteClose(by Initiator, code uint16) {
	t.firstClose.CompareAndSwap(0, packClose(by, code))
}

// closedBy says who ended the tunnel, and with which close code.
func (t *tunnel) closedBy() (Initiator, int) {
	if v := t.firstClose.Load(); v != 0 {
		by := [...]Initiator{1: ClosedByClient, 2: ClosedByBackend, 3: ClosedByProxy}[v>>16]
		return by, int(v & 0xffff)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endedFirst, CloseCodeNone
}

// goAway starts the going-away handshake: each copier, at its next frame
// boundary, sends a close frame with code 1001 to its destination and then
// waits for its source's close frame, until deadline. Blocked reads are
// woken by an expired read deadline; every write is bounded by deadline.
func (t *tunnel) goAway(deadline time.Time) {
	t.drainDeadline.Store(deadline.UnixNano())
	if !t.stopping.CompareAndSwap(false, true) {
		return
	}
	for _, c := range [...]*copier{t.up, t.down} {
		c.limitWrites(deadline)
		_ = c.src.SetReadDeadline(aLongTimeAgo)
	}
	t.up.resume()
	t.down.resume()
}

// closeWrite half-closes c.dst after everything written so far: for TLS a
// close_notify alert and then the TCP FIN, so the peer sees the end after
// the last frame (closing outright could reset the connection and lose
// it). The FIN goes out with a raw shutdown(2) (see sysRead): on loopback
// it runs the peer's side of the close too. It waits for the peer only as
// long as a write would (the write timeout), and not at all once the
// tunnel is closing.
func (c *copier) closeWrite() error {
	conn := c.dst
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		conn = tc.NetConn()
	}
	if s := c.dstSock(); s != nil {
		return s.shutdownWrite()
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// close closes both connections, unblocking both copiers, without ever
// waiting for a peer: writes in progress are aborted first, and the
// close_notify and FIN that end each side (as Close would) are sent only
// if the socket takes them at once. Safe to call from any goroutine, more
// than once.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		cs := [...]*copier{t.up, t.down}
		for _, c := range cs {
			if c != nil {
				c.abortWrites()
			}
		}
		for _, c := range cs {
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

// closeByProxy closes the tunnel as wsgate's own decision (Handler.Close,
// the drain deadline): the tunnel's record says so.
func (t *tunnel) closeByProxy() {
	t.byProxy.Store(true)
	t.close()
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

	wfailed  bool        // the last error came from writing dst
	sawClose bool        // src's close frame has passed (and was noted)
	dstStuck atomic.Bool // dst accepted nothing for the write timeout
	srcStuck atomic.Bool // src is the other direction's stuck dst
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
	c.track(p)
	c.n.Add(int64(len(p)))
}

// track advances the frame tracker over p, which has gone to dst, and
// notes src's close frame when it has passed.
func (c *copier) track(p []byte) {
	c.tr.advance(p)
	c.noteClose()
}

// noteClose tells the tunnel of src's close frame, once it has passed.
func (c *copier) noteClose() {
	if c.tr.closed && !c.sawClose {
		c.sawClose = true
		c.t.closeFrames.Add(1)
		c.t.noteClose(c.srcSide(), c.tr.closeCode)
	}
}

// srcSide and dstSide name the peers at either end of this direction.
func (c *copier) srcSide() Initiator {
	if c.toServer {
		return ClosedByClient
	}
	return ClosedByBackend
}

func (c *copier) dstSide() Initiator {
	if c.toServer {
		return ClosedByBackend
	}
	return ClosedByClient
}

// endedBy says whose doing err, the end of this direction, was.
func (c *copier) endedBy(err error) Initiator {
	switch {
	case c.t.byProxy.Load(), c.dstStuck.Load(), errors.Is(err, errGoneAway):
		return ClosedByProxy
	case c.wfailed:
		return c.dstSide()
	}
	return c.srcSide()
}

// dstSock is the raw socket under dst, nil when there is none.
func (c *copier) dstSock() *rawSock {
	switch {
	case c.w != nil:
		return c.w
	case c.dstRC != nil:
		return c.dstRC.sock
	}
	return nil
}

// limitWrites bounds every write to dst by deadline.
func (c *copier) limitWrites(deadline time.Time) {
	if s := c.dstSock(); s != nil {
		s.limitWrites(deadline)
		return
	}
	_ = c.dst.SetWriteDeadline(deadline)
}

// abortWrites ends a write to dst that waits for the peer, and makes later
// ones write only what fits at once (see rawSock.abortWrites).
func (c *copier) abortWrites() {
	if s := c.dstSock(); s != nil {
		s.abortWrites()
		return
	}
	_ = c.dst.SetWriteDeadline(aLongTimeAgo)
}

// run is copy on its own goroutine: its name in stack dumps says which
// goroutine this is. A copier that parks ends its goroutine and gets a new
// one when it resumes. A clean end of src is passed on to dst as a
// half-close here, on the copier's own goroutine, where waiting for a slow
// peer holds up nothing else.
func (c *copier) run() {
	err := c.copy()
	if errors.Is(err, errParked) {
		return
	}
	halfClosed := errors.Is(err, io.EOF) && !c.t.stopping.Load() && c.closeWrite() == nil
	c.t.directionEnded(c, err, halfClosed)
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
				return c.writeFailed(werr)
			}
		}
		if err != nil {
			if c.wfailed {
				return c.writeFailed(err)
			}
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
// flows. Its callback (relayFn) reads and relays until a read fails with
// EAGAIN, then returns false and the runtime waits for readiness: the
// readiness the poller records is reset only when a RawConn.Read call
// begins, never between the callback's rounds, so data that arrives
// meanwhile is not missed. (A short read is no proof that the socket is
// empty: a FIN that came with the last bytes is taken by the read that
// returns them and raises no readiness of its own, so stopping at a short
// read left such a FIN unseen until the parking sweep came by, 0.5-1 s
// later.) It returns like next: a pooled buffer of bytes read but not
// relayed (when stopping), or the error that ended the source or the
// relay.
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
		// A short read does not mean drained: the peer's FIN may have
		// come with the bytes just read, and it raises no new readiness.
		// Only EAGAIN says the socket is empty.
	}
}

// relayTLSRound is the relay callback for a TLS src over a recordConn. It
// reads the socket into the recordConn's buffer and has crypto/tls decrypt
// the whole records there (under noWait, so crypto/tls never waits for the
// socket, whose read lock this callback holds). How the socket ended is
// left in rc.err for crypto/tls to read after the callback.
func (c *copier) relayTLSRound(fd uintptr) bool {
	rc := c.rc
	for {
		if rc.bp == nil {
			// Read until EAGAIN, never stopping at a short read: see
			// relaySockRound.
			bp, n, err, wait := readSock(fd, rc.sock.network)
			if wait {
				return false
			}
			if err != nil {
				rc.err = err
				return true
			}
			rc.bp, rc.r, rc.w = bp, 0, n
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
		c.wfailed = true
		// dst is gone either way; the tracker still follows src, whose
		// frames are read on to its close frame if dst is only stuck.
		c.tr.advance(p)
		return err
	}
	c.track(p)
	return nil
}

// writeFailed ends the direction after a write to dst failed with err.
// When dst accepted nothing for the write timeout (and the tunnel is not
// going away already for another reason), the tunnel is abandoned: the
// other side gets a close frame with code 1001 at its stream's next frame
// boundary, and this direction reads src on to its answering close frame,
// all within abandonGrace.
func (c *copier) writeFailed(err error) error {
	t := c.t
	if !errors.Is(err, os.ErrDeadlineExceeded) || t.stopping.Load() || t.byProxy.Load() {
		return err
	}
	other := t.up
	if c == t.up {
		other = t.down
	}
	c.dstStuck.Store(true)
	other.srcStuck.Store(true)
	t.h.log.LogAttrs(context.Background(), slog.LevelInfo, "peer stopped reading; tunnel closed",
		slog.String(keyPool, t.pool),
		slog.String(keyBackend, t.lease.Address),
		slog.String(keyRemoteAddr, t.remoteAddr),
		slog.String("peer", string(c.dstSide())),
		slog.Duration("write_timeout", t.h.writeTimeout))
	t.goAway(time.Now().Add(abandonGrace))
	return c.goAway(nil, nil)
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
	// read replaces pending with src's next bytes.
	read := func() ([]byte, error) {
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
		if n > 0 {
			return (*bp)[:n], nil
		}
		return nil, err
	}
	if c.dstStuck.Load() {
		// Nothing more can go to dst: wait for src's close frame only.
		return c.discardToClose(nil, read)
	}
	for !c.tr.atBoundary() {
		if c.tr.broken {
			return errNotWebSocket
		}
		if len(pending) == 0 {
			var err error
			if pending, err = read(); err != nil {
				return err
			}
		}
		k := c.tr.toBoundary(pending)
		if err := c.send(pending[:k]); err != nil {
			return err
		}
		c.noteClose()
		pending = pending[k:]
	}
	if !c.tr.closed {
		c.t.noteClose(ClosedByProxy, CloseGoingAway)
		if _, err := c.writeDst(closeFrame(CloseGoingAway, goAwayReason, c.toServer)); err != nil {
			return err
		}
	}
	if c.srcStuck.Load() {
		return errGoneAway // src stopped reading: no close frame will come
	}
	// From here on nothing more goes to dst: it has its close frame.
	return c.discardToClose(pending, read)
}

// discardToClose reads src's frames, starting with pending, and drops
// them until src's close frame has passed.
func (c *copier) discardToClose(pending []byte, read func() ([]byte, error)) error {
	for {
		c.tr.advance(pending)
		c.noteClose()
		if c.tr.closed {
			return errGoneAway
		}
		if c.tr.broken {
			return errNotWebSocket
		}
		var err error
		if pending, err = read(); err != nil {
			return err
		}
	}
}
