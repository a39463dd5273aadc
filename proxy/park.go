package proxy

import (
	"errors"
	"os"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// Parking idle tunnels.
//
// A copier waiting for data is a goroutine parked in the runtime's poller,
// and its stack (a few KiB) is most of what an idle tunnel costs. Handler.Run
// sweeps the tunnels once per parkSweep; a copier that has waited for
// parkAfter is woken (an expired read deadline), registers its socket with
// the parker's own epoll instance and ends its goroutine. When the socket
// becomes readable — data, EOF or error — the parker starts a new goroutine
// that carries on where the old one stopped. Closing or shutting a tunnel
// down resumes its parked copiers first. Busy tunnels never park: the
// sweep only looks at copiers that have been waiting for a while, and costs
// them nothing per message beyond one atomic store.

const (
	defaultParkAfter = time.Second
	parkSweep        = 500 * time.Millisecond
)

// errParked ends a copier goroutine whose copier is now parked.
var errParked = errors.New("proxy: copier parked")

// Copier wait states.
const (
	stateRunning int32 = iota
	stateWaiting       // in the runtime poller, since waitSince
	stateParked        // in the parker's epoll set, no goroutine
)

// beginWait marks the copier as waiting in the poller. Its waitSince is
// the epoch of src's last bytes (relayBytes keeps it), so a copier woken
// for a ping or a park that did not happen parks again a sweep later.
func (c *copier) beginWait() {
	c.state.Store(stateWaiting)
}

func (c *copier) endWait() { c.state.CompareAndSwap(stateWaiting, stateRunning) }

// requestPark wakes a copier that has waited long enough so that it parks.
func (c *copier) requestPark() {
	if c.state.Load() != stateWaiting {
		return
	}
	c.parkReq.Store(true)
	_ = c.src.SetReadDeadline(aLongTimeAgo)
}

// wake makes a waiting copier's Relay return (an expired read deadline)
// and gives a parked one a goroutine, so that it looks at its requests.
// The request's flag must be set before.
func (c *copier) wake() {
	switch c.state.Load() {
	case stateWaiting:
		_ = c.src.SetReadDeadline(aLongTimeAgo)
	case stateParked:
		c.resume()
	}
}

// woken reports whether err is the expired deadline of a wake-up (park or
// ping), and if so undoes that deadline. A wake-up's flag is set before its
// deadline, and the deadline is undone here before the flags are read:
// whatever wake-up comes after this either sets a flag that is seen now,
// or expires the next Relay's deadline again.
func (c *copier) woken(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.t.stopping.Load() || (!c.parkReq.Load() && !c.pingDue.Load()) {
		return false
	}
	// If goAway expired it meanwhile, its stopping flag, checked next
	// round, tells.
	_ = c.src.SetReadDeadline(time.Time{})
	return true
}

// tryPark hands the copier to the parker; it reports whether it did (the
// goroutine must then end with errParked).
func (c *copier) tryPark() bool {
	p := c.t.h.parker.Load()
	if p == nil || c.t.stopping.Load() {
		return false
	}
	sock, ok := c.src.Parkable()
	if !ok {
		return false // bytes are waiting already
	}
	c.parkedOn = p
	c.parkTok.Store(0)
	// Parked before the socket is armed: an event may fire at once.
	c.state.Store(stateParked)
	tok, parked := p.Park(sock, c)
	if !parked {
		// Not parked after all, unless someone resumed it meanwhile (then
		// a new goroutine runs it and this one must end).
		return !c.state.CompareAndSwap(stateParked, stateRunning)
	}
	c.parkTok.Store(tok)
	if c.state.Load() != stateParked {
		// Resumed between marking and arming: its Forget had no token to
		// delete yet.
		p.Forget(sock, c.parkTok.Swap(0))
	}
	return true
}

// Wake is the parker's call when the parked socket becomes readable.
func (c *copier) Wake() { c.resume() }

var _ sockio.Waker = (*copier)(nil)

// resume gives a parked copier a goroutine again. Exactly one caller wins
// (the parker on readiness, or close/goAway); the others do nothing.
func (c *copier) resume() {
	if c != nil && c.state.CompareAndSwap(stateParked, stateRunning) {
		sock, _ := c.src.Parkable()
		c.parkedOn.Forget(sock, c.parkTok.Swap(0))
		go c.run()
	}
}
