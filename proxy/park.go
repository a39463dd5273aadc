package proxy

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
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

// parkable is a socket a copier can park on.
func (c *copier) parkConn() syscall.RawConn {
	switch {
	case c.sock != nil:
		return c.sock.raw
	case c.rc != nil:
		return c.rc.sock.raw
	}
	return nil
}

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
	raw := c.parkConn()
	if p == nil || raw == nil || c.t.stopping.Load() {
		return false
	}
	if c.rc != nil && c.rc.bp != nil {
		return false // bytes are waiting already
	}
	c.parkedOn = p
	return p.park(c, raw)
}

// resume gives a parked copier a goroutine again. Exactly one caller wins
// (the parker on readiness, or close/goAway); the others do nothing.
func (c *copier) resume() {
	if c != nil && c.state.CompareAndSwap(stateParked, stateRunning) {
		c.parkedOn.forget(c)
		go c.run()
	}
}

// Run does the Handler's background work until ctx is done: it parks
// idle tunnels (see park.go) on systems that support it. A Handler works
// without Run; its idle tunnels then keep their goroutines.
func (h *Handler) Run(ctx context.Context) error {
	p, err := newParker()
	if err != nil {
		h.log.Warn("idle tunnels will not be parked", "err", err)
		<-ctx.Done()
		return nil
	}
	h.parker.Store(p)

	done := make(chan struct{})
	go func() {
		defer close(done)
		p.wait(func(c *copier) { c.resume() })
	}()
	t := time.NewTicker(h.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Refuse new parking first, then resume every parked copier,
			// so that nothing is left without a goroutine.
			h.parker.Store(nil)
			p.stop()
			for _, c := range p.all() {
				c.resume()
			}
			<-done
			p.close()
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
