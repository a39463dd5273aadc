package proxy

import (
	"context"
	"errors"
	"log/slog"
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

// beginWait marks the copier as waiting in the poller.
func (c *copier) beginWait() {
	c.waitSince.Store(c.t.h.epoch.Load())
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

// wokenToPark reports whether err is the wake-up of requestPark, and clears
// the request.
func (c *copier) wokenToPark(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || !c.parkReq.Swap(false) {
		return false
	}
	// Undo requestPark's deadline. If goAway expired it meanwhile, its
	// stopping flag, checked after this, tells.
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
	c.parkedOn, c.parkedSock = p, sock
	// Parked before the socket is armed: an event may fire at once.
	c.state.Store(stateParked)
	if !p.Park(sock, c) {
		// Not parked after all, unless someone resumed it meanwhile (then
		// a new goroutine runs it and this one must end).
		return !c.state.CompareAndSwap(stateParked, stateRunning)
	}
	if c.state.Load() != stateParked {
		// Resumed between marking and arming: its Forget may have found
		// nothing to delete yet.
		p.Forget(sock, c)
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
		c.parkedOn.Forget(c.parkedSock, c)
		go c.run()
	}
}

// Run does the Handler's background work until ctx is done: it parks
// idle tunnels (see park.go) on systems that support it. A Handler works
// without Run; its idle tunnels then keep their goroutines.
func (h *Handler) Run(ctx context.Context) error {
	p, err := sockio.NewParker()
	if err != nil {
		// No parker on this system: idle tunnels keep their goroutines.
		h.log.Debug("idle tunnels will not be parked", slog.Any(keyErr, err))
		<-ctx.Done()
		return nil
	}
	h.parker.Store(p)

	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Wait()
	}()
	t := time.NewTicker(h.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Refuse new parking first, then resume every parked copier,
			// so that nothing is left without a goroutine.
			h.parker.Store(nil)
			p.Stop()
			for _, w := range p.Parked() {
				w.(*copier).resume()
			}
			<-done
			p.Close()
			return nil
		case <-t.C:
			h.sweep()
		}
	}
}

// sweep asks every copier that has waited for parkAfter to park.
func (h *Handler) sweep() {
	now := h.epoch.Add(1)
	limit := max(1, int64(h.parkAfter/h.sweepEvery))
	h.conns.mu.Lock()
	defer h.conns.mu.Unlock()
	for t := range h.conns.m {
		if t.stopping.Load() {
			continue // going away: its reads carry the drain deadline
		}
		for _, c := range []*copier{t.up, t.down} {
			if c.state.Load() == stateWaiting && now-c.waitSince.Load() >= limit {
				c.requestPark()
			}
		}
	}
}
