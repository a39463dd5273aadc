package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/proxy/internal/sockio"
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

// aLongTimeAgo is a deadline in the past: it wakes a waiting read, and
// aborts writes (sockio.Conn.LimitWrites).
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
// backend's side and the lease that counts it. An idle proxy holds one per
// connection, so its fields are kept small (see docs/benchmarks.md, the
// idle memory profile).
type tunnel struct {
	h          *Handler
	pool       string
	remoteAddr string
	host, path string   // of the upgrade request, for the access log
	ip         *ipState // counted in Handler.perIP; nil when not
	begun      int64    // Handler.since at the start
	lease      balancer.Lease

	client, backend sockio.Conn
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
	// firstEnd is whose end ended the first direction to end, packed by
	// packClose without a code; 0 until one has.
	firstEnd atomic.Uint32
	// byProxy is set when wsgate itself ends the tunnel (Handler.Close, a
	// stalled peer), before it closes anything.
	byProxy atomic.Bool
	// reason says why the proxy ended the tunnel (Reason*), when it did;
	// the first reason set stays.
	reason atomic.Pointer[string]

	pingSent   atomic.Int64 // the epoch of the unanswered ping to the client; 0: none
	lifeFactor float32      // the tunnel's share of Limits.MaxLifetime

	mu     sync.Mutex
	ended  int32       // directions that have ended; guarded by mu
	linger *time.Timer // guarded by mu
}

// attach pairs the connections. The bytes that pass before run (sent
// along with the 101, or by the client right after its request) must be
// reported to the copiers' relayed.
func (t *tunnel) attach(client, backend net.Conn) {
	wt := t.h.limits.Load().WriteTimeout
	t.client = sockio.New(client, wt)
	t.backend = sockio.New(backend, wt)
	t.up = newCopier(t, t.client, t.backend, true)
	t.down = newCopier(t, t.backend, t.client, false)
	// Set before conns.add publishes the tunnel to the sweep, which reads
	// them (a zero begun once expired a new tunnel under max_lifetime).
	t.begun = t.h.since()
	t.lifeFactor = lifeFactor()
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
		Duration:   t.age(),
		BytesUp:    t.up.n.Load(),
		BytesDown:  t.down.n.Load(),
	}
	ev.ClosedBy, ev.CloseCode = t.closedBy()
	if r := t.reason.Load(); r != nil && ev.ClosedBy == ClosedByProxy {
		ev.Reason = *r
	}
	t.h.conns.remove(t, ev.BytesUp, ev.BytesDown)
	t.h.inUse.Add(-1)
	t.h.perIP.release(t.ip, time.Now())
	t.h.obs.TunnelClosed(&ev)
	t.h.logTunnel(&ev, t)
}

// age is how long the tunnel has been open.
func (t *tunnel) age() time.Duration { return time.Duration(t.h.since() - t.begun) }

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

// noteEnd records whose end ended a direction, if it is the first.
func (t *tunnel) noteEnd(by Initiator) {
	t.firstEnd.CompareAndSwap(0, packClose(by, 0))
}

// closedBy says who ended the tunnel, and with which close code: the
// first close frame's sender and code, or else whoever ended the first
// direction to end.
func (t *tunnel) closedBy() (Initiator, int) {
	initiator := func(v uint32) Initiator {
		return [...]Initiator{1: ClosedByClient, 2: ClosedByBackend, 3: ClosedByProxy}[v>>16]
	}
	if v := t.firstClose.Load(); v != 0 {
		return initiator(v), int(v & 0xffff)
	}
	if v := t.firstEnd.Load(); v != 0 {
		return initiator(v), CloseCodeNone
	}
	return ClosedByProxy, CloseCodeNone
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
		c.dst.LimitWrites(deadline)
		_ = c.src.SetReadDeadline(aLongTimeAgo)
	}
	t.up.resume()
	t.down.resume()
}

// close closes both connections, unblocking both copiers, without ever
// waiting for a peer: writes in progress are aborted first, and the
// close_notify and FIN that end each side (as Close would) are sent only
// if the socket takes them at once. Safe to call from any goroutine, more
// than once.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		conns := [...]sockio.Conn{t.client, t.backend}
		for _, c := range conns {
			if c != nil {
				c.LimitWrites(aLongTimeAgo)
			}
		}
		for _, c := range conns {
			if c != nil {
				_ = c.CloseWrite()
				_ = c.Close()
			}
		}
	})
	// A parked copier has no goroutine to notice the close: give it one.
	t.up.resume()
	t.down.resume()
}

// closeByProxy closes the tunnel as wsgate's own decision (Handler.Close,
// the drain deadline): the tunnel's record says so.
func (t *tunnel) closeByProxy() {
	t.setReason(ReasonClosed)
	t.byProxy.Store(true)
	t.close()
}

// setReason records why the proxy ends the tunnel, unless a reason is
// recorded already.
func (t *tunnel) setReason(r string) {
	t.reason.CompareAndSwap(nil, &r)
}

// quiet maps the errors of an ordinary close to nil for logging.
func quiet(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errGoneAway) {
		return nil
	}
	return err
}
