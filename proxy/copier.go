package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// errStopping ends a Relay whose tunnel began going away: the bytes it
// holds are kept for goAway, which relays them only to a frame boundary.
var errStopping = errors.New("proxy: tunnel going away")

// errAtBoundary ends goAway's Relay once the frame in flight has passed.
var errAtBoundary = errors.New("proxy: at a frame boundary")

// copier copies one direction of a tunnel. It is the only reader of src and
// the only writer of dst. Every idle tunnel holds two: the fields are
// ordered so that the struct packs into the 208-byte size class. How it waits and moves bytes is sockio's (no
// buffer held while idle, where the platform allows); its frame tracker
// follows the frames that pass, so that a close frame can be put between
// two of them, and it knows the first close frame's code.
type copier struct {
	t        *tunnel
	src, dst sockio.Conn
	n        atomic.Int64
	tr       frameTracker
	err      error // why copy ended; guarded by t.mu

	// relayFn is relayBytes, bound once: Relay's function on the data
	// path, without an allocation per call.
	relayFn func([]byte) (int, error)

	// Parking (park.go).
	waitSince atomic.Int64 // Handler.epoch of src's last bytes
	parkedOn  *sockio.Parker
	parkTok   atomic.Uint64 // the parker's token of the registration; 0: none
	state     atomic.Int32  // stateRunning, stateWaiting, stateParking or stateParked
	pingDue   atomic.Bool   // down only: send the client a ping at the next frame boundary
	parkReq   atomic.Bool   // requestPark woke this copier to park

	// sendFn is send, bound on the first message under a size limit (most
	// tunnels never need it).
	sendFn func([]byte) error
	// cut: nothing more of src goes to dst, whose stream stands at a frame
	// boundary (a message over the limit was refused).
	cut atomic.Bool
	// goAwayCode is the code of the close frame goAway sends dst; 0 means
	// CloseGoingAway.
	goAwayCode atomic.Uint32
	dstStuck   atomic.Bool // dst accepted nothing for the write timeout
	srcStuck   atomic.Bool // src is the other direction's stuck dst

	// gate holds a frame header's first bytes while a message size limit
	// waits for the rest of it.
	gate limitGate

	toServer bool // dst is the backend: frames written to it are masked
	resumed  bool // resumed from parking, and no burst relayed since (see firstBurst)
	wfailed  bool // the last error came from writing dst
	sawClose bool // src's close frame has passed (and was noted)
}

// newCopier returns the copier from src to dst.
func newCopier(t *tunnel, src, dst sockio.Conn, toServer bool) *copier {
	c := &copier{t: t, src: src, dst: dst, toServer: toServer}
	c.relayFn = c.relayBytes
	c.waitSince.Store(t.h.epoch.Load())
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
	// Before the half-close, which lets the peer end its side too.
	c.t.noteEnd(c.endedBy(err))
	halfClosed := errors.Is(err, io.EOF) && !c.t.stopping.Load() && c.dst.CloseWrite() == nil
	c.t.directionEnded(c, err, halfClosed)
}

// copy relays src to dst until an error or EOF, which it returns.
func (c *copier) copy() error {
	for {
		if c.t.stopping.Load() {
			return c.goAway()
		}
		if c.pingDue.Load() {
			c.ping()
			// Resumed from parking for this ping alone: park again now,
			// not a second from now (see firstBurst).
			if c.resumed && !c.pingDue.Load() && c.tryPark() {
				return errParked
			}
		}
		c.beginWait()
		err := c.src.Relay(c.relayFn)
		c.endWait()
		c.resumed = false
		switch {
		case c.wfailed:
			return c.writeFailed(err)
		case errors.Is(err, errMessageTooBig):
			return c.refuseMessage()
		case errors.Is(err, errStopping), c.wokenForShutdown(err):
			continue
		case c.woken(err):
			if c.parkReq.Swap(false) && !c.pingDue.Load() && !c.t.stopping.Load() && c.tryPark() {
				return errParked
			}
			continue
		case errors.Is(err, errRepark):
			if !c.pingDue.Load() && !c.t.stopping.Load() && c.tryPark() {
				return errParked
			}
			continue
		case c.wokenForShutdown(err):
			continue // going away since the first look: the loop's top sees it
		}
		return err
	}
}

// relayBytes is Relay's function while the tunnel runs: it relays p, or
// leaves it to goAway once the tunnel is going away.
func (c *copier) relayBytes(p []byte) (int, error) {
	if c.t.stopping.Load() {
		return 0, errStopping
	}
	n := len(p)
	if c.toServer {
		if limit := c.t.h.limits.Load().MaxMessageBytes; limit > 0 || c.gate.heldN > 0 {
			var err error
			if n, err = c.writeLimited(p, uint64(max(0, limit))); err != nil {
				return n, err
			}
		} else if err := c.write(p); err != nil {
			return n, err
		}
	} else if err := c.write(p); err != nil {
		return n, err
	}
	// Busy, not idle: keep the sweep away (and count as the client's
	// answer to a ping).
	c.waitSince.Store(c.t.h.epoch.Load())
	if c.pingDue.Load() {
		c.ping()
	}
	if c.resumed {
		return n, c.firstBurst(p[:n])
	}
	return n, nil
}

// write relays p to dst and advances the frame tracker over it: first, so
// that a close frame is noted before its answer can come back. If the
// write fails, dst is gone either way, and the tracker still follows src
// (whose frames are read on to its close frame if dst is only stuck).
//
// When src is known to go on right behind p (sockio.Conn.MoreFollows),
// p goes with WriteMore: Relay passes what follows before it waits, and
// that is a write, or the end of src and so dst's CloseWrite or the
// tunnel's close. A backend's close frame and its FIN, say, reach the
// client in one segment with the close_notify.
func (c *copier) write(p []byte) error {
	c.track(p)
	var err error
	if c.src.MoreFollows() {
		_, err = c.dst.WriteMore(p)
	} else {
		_, err = c.dst.Write(p)
	}
	if err != nil {
		c.wfailed = true
		return err
	}
	c.n.Add(int64(len(p)))
	return nil
}

// errMessageTooBig ends a direction at a message over the size limit.
var errMessageTooBig = errors.New("proxy: message over the size limit")

// writeLimited is write under a message size limit (see limitGate): it
// stops at a header over the limit with nothing of its frame relayed, and
// returns how many bytes of p the tracker took: the rest (the refused
// frame's payload and what follows) is left for goAway to read and drop.
func (c *copier) writeLimited(p []byte, limit uint64) (int, error) {
	if c.sendFn == nil {
		c.sendFn = c.send
	}
	n, over, err := c.gate.feed(&c.tr, p, limit, c.sendFn)
	if err != nil {
		c.wfailed = true
		return n, err
	}
	c.noteClose()
	if over {
		return n, errMessageTooBig
	}
	return n, nil
}

// send relays p to dst, for bytes the tracker has already seen.
func (c *copier) send(p []byte) error {
	if _, err := c.dst.Write(p); err != nil {
		return err
	}
	c.n.Add(int64(len(p)))
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
	t.setReason(ReasonWriteTimeout)
	c.dstStuck.Store(true)
	other.srcStuck.Store(true)
	t.h.log.LogAttrs(context.Background(), slog.LevelInfo, "peer stopped reading; tunnel closed",
		slog.String(keyPool, t.pool),
		slog.String(keyBackend, t.lease.Address),
		slog.String(keyRemoteAddr, t.remoteAddr),
		slog.String(keyPeer, string(c.dstSide())),
		slog.Duration(keyWriteTimeout, t.h.limits.Load().WriteTimeout))
	t.goAway(time.Now().Add(abandonGrace))
	return c.goAway()
}

// refuseMessage ends the tunnel after a client's message over the size
// limit: the client gets close 1009 at the next frame boundary of the
// backend's stream, the backend close 1001 now (its stream stands at a
// frame boundary: nothing of the refused frame went to it).
func (c *copier) refuseMessage() error {
	t := c.t
	limit := t.h.limits.Load().MaxMessageBytes
	t.h.refuse(RefusedMaxMessageBytes, t.remoteAddr, slog.String(keyPool, t.pool), slog.Int64(keyMaxMessageBytes, limit))
	t.setReason(ReasonMaxMessageBytes)
	t.noteClose(ClosedByProxy, CloseMessageTooBig)
	c.cut.Store(true)
	t.down.goAwayCode.Store(CloseMessageTooBig)
	t.goAway(time.Now().Add(abandonGrace))
	return c.goAway()
}

// wokenForShutdown reports whether err is the expired deadline with which
// goAway wakes a waiting copier.
func (c *copier) wokenForShutdown(err error) bool {
	return c.t.stopping.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}

// goAway finishes this direction when the tunnel goes away. It relays the
// rest of the frame in flight, sends dst a close frame with code 1001
// unless src already sent dst one, then reads and discards src's frames
// until src's own close frame arrives (the answer to the close the other
// direction sent), all before the drain deadline. When dst is stuck
// nothing more goes to it; when src is, no answer is awaited.
func (c *copier) goAway() error {
	// What the last Relay left waiting for more (see write) goes now: this
	// may send nothing more.
	_ = c.dst.Flush()
	deadline := time.Unix(0, c.t.drainDeadline.Load())
	_ = c.src.SetReadDeadline(deadline)
	if !c.dstStuck.Load() {
		if !c.cut.Load() && !c.tr.atBoundary() {
			if c.tr.broken {
				return errNotWebSocket
			}
			if err := c.relayUntil(deadline, c.toBoundary); !errors.Is(err, errAtBoundary) {
				return err
			}
		}
		if !c.tr.closed || c.cut.Load() {
			code, reason := uint16(CloseGoingAway), goAwayReason
			if cc := c.goAwayCode.Load(); cc != 0 {
				code, reason = uint16(cc), "message too big"
			}
			c.t.noteClose(ClosedByProxy, code)
			if err := c.send(closeFrame(code, reason, c.toServer)); err != nil {
				return err
			}
		}
		if c.srcStuck.Load() {
			return errGoneAway // src stopped reading: no close frame will come
		}
	}
	// From here on nothing more goes to dst: it has its close frame.
	if c.tr.closed {
		return errGoneAway
	}
	return c.relayUntil(deadline, c.discard)
}

// relayUntil is Relay for goAway, whose deadline a park request from a
// sweep that looked before the shutdown began may still have overwritten.
func (c *copier) relayUntil(deadline time.Time, fn func([]byte) (int, error)) error {
	for {
		err := c.src.Relay(fn)
		if errors.Is(err, os.ErrDeadlineExceeded) && c.parkReq.Swap(false) {
			_ = c.src.SetReadDeadline(deadline)
			continue
		}
		return err
	}
}

// toBoundary relays p up to the end of the frame in flight.
func (c *copier) toBoundary(p []byte) (int, error) {
	k := c.tr.toBoundary(p)
	if err := c.send(p[:k]); err != nil {
		return k, err
	}
	c.noteClose()
	switch {
	case c.tr.atBoundary():
		return k, errAtBoundary
	case c.tr.broken:
		return len(p), errNotWebSocket
	}
	return k, nil
}

// discard drops src's frames until src's close frame has passed.
func (c *copier) discard(p []byte) (int, error) {
	c.tr.advance(p)
	c.noteClose()
	switch {
	case c.tr.closed:
		return len(p), errGoneAway
	case c.tr.broken:
		return len(p), errNotWebSocket
	}
	return len(p), nil
}
