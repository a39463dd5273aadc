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

// errRepark ends a Relay whose first burst after parking was a heartbeat
// (see firstBurst): the copier parks again.
var errRepark = errors.New("proxy: heartbeat relayed; park again")

// maxControlFrame is the longest control frame: a 2-byte header, a 4-byte
// mask and 125 bytes of payload (RFC 6455 5.5).
const maxControlFrame = 2 + 4 + 125

// firstBurst looks at the first burst p a copier relayed after it was
// resumed from parking. If it was one ping or pong and nothing follows
// it, the copier parks again at once (errRepark): a heartbeat, the
// proxy's own pings' answers or a backend's or client's, wakes a parked
// tunnel for a moment, not for the parkAfter of an ordinary idle wait.
// Keeping it awake that second would hold a goroutine and its stack per
// heartbeat in flight: with 9,900 tunnels pinged every 5 s, some 4,000
// goroutines at any time, and 14% more memory per idle tunnel.
func (c *copier) firstBurst(p []byte) error {
	c.resumed = false
	if len(p) > maxControlFrame || !c.tr.atBoundary() || c.tr.opcode < opPing || c.src.MoreFollows() {
		return nil
	}
	return errRepark
}

// Copier wait states.
const (
	stateRunning int32 = iota
	stateWaiting       // in the runtime poller, since waitSince
	stateParking       // its goroutine is handing it to the parker
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
	case stateParking, stateParked:
		c.resume()
	}
}

// woken reports whether err is an expired read deadline that woke the
// copier while the tunnel is not going away, and if so undoes it.
//
// Every read deadline on a tunnel's source is a wake-up (a park request,
// a ping due, goAway's), and its flag says what for; but a flag may be
// handled before its deadline comes (a ping is sent as soon as a burst
// ends, say, and two sweeps may ask the same copier to park), so a
// deadline may come with no flag left. That one is spurious, and the
// copier carries on: taking it for a timeout once ended tunnels with
// "i/o timeout" (TestParkAndWakeStorm). Undoing it cannot hide goAway's:
// goAway sets stopping before its deadline, and the copy loop looks at
// stopping after this.
func (c *copier) woken(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.t.stopping.Load() {
		return false
	}
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
	// Marked before the socket is armed, as an event may fire at once.
	// While the mark says parking, this goroutine still owns the copier:
	// a resume meanwhile (the event, a ping, a shutdown) only takes the
	// mark away, and this goroutine carries on instead of a new one. So
	// two goroutines never run one copier, and the registration undone
	// below is always this call's own.
	c.state.Store(stateParking)
	tok, parked := p.Park(sock, c)
	if !parked {
		c.state.CompareAndSwap(stateParking, stateRunning)
		return false
	}
	c.parkTok.Store(tok) // before the mark says parked: resume reads it
	if c.state.CompareAndSwap(stateParking, stateParked) {
		return true // from now on a resume starts a goroutine
	}
	p.Forget(sock, c.parkTok.Swap(0))
	return false
}

// Wake is the parker's call when the parked socket becomes readable.
func (c *copier) Wake() { c.resume() }

var _ sockio.Waker = (*copier)(nil)

// resume gives a parked copier a goroutine again. Exactly one caller wins
// (the parker on readiness, or close/goAway); the others do nothing. A
// copier still parking has its goroutine: resume only stops the parking
// (see tryPark).
func (c *copier) resume() {
	if c == nil {
		return
	}
	for {
		switch c.state.Load() {
		case stateParking:
			if c.state.CompareAndSwap(stateParking, stateRunning) {
				return
			}
		case stateParked:
			if c.state.CompareAndSwap(stateParked, stateRunning) {
				sock, _ := c.src.Parkable()
				c.parkedOn.Forget(sock, c.parkTok.Swap(0))
				c.resumed = true // the new goroutine's: go orders it
				go c.run()
				return
			}
		default:
			return
		}
	}
}
