package proxy

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/wsgate/wsgate/proxy/internal/sockio"
)

// Run does the Handler's background work until ctx is done: every
// sweepEvery (half a second) it looks at each tunnel — parks the copiers
// that have waited for parkAfter (where the platform can park), pings the
// clients that have been silent for the ping interval, and closes the
// tunnels past their ping timeout, idle timeout or lifetime — and once a
// minute it forgets idle client addresses. A Handler works without Run:
// its idle tunnels then keep their goroutines, and those timeouts do not
// apply.
func (h *Handler) Run(ctx context.Context) error {
	p, err := sockio.NewParker()
	if err != nil {
		// No parker here: idle tunnels keep their goroutines.
		h.log.Debug("idle tunnels will not be parked", slog.Any(keyErr, err))
		p = nil
	}
	parkerDone := make(chan struct{})
	if p != nil {
		h.parker.Store(p)
		go func() {
			defer close(parkerDone)
			p.Wait()
		}()
	} else {
		close(parkerDone)
	}
	t := time.NewTicker(h.sweepEvery)
	defer t.Stop()
	expireEvery := max(1, int64(perIPIdle/h.sweepEvery))
	for {
		select {
		case <-ctx.Done():
			if p != nil {
				// Refuse new parking first, then resume every parked
				// copier, so that nothing is left without a goroutine.
				h.parker.Store(nil)
				p.Stop()
				for _, w := range p.Parked() {
					w.(*copier).resume()
				}
				<-parkerDone
				p.Close()
			}
			return nil
		case now := <-t.C:
			epoch := h.sweep(now)
			if epoch%expireEvery == 0 {
				h.perIP.expire(now, perIPIdle)
			}
		}
	}
}

// epochs is d in sweeps, rounded up; 0 for d <= 0.
func (h *Handler) epochs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + h.sweepEvery - 1) / h.sweepEvery)
}

// sweep looks at every tunnel once (see Run) and returns the new epoch.
// Time is counted in sweeps: a copier's waitSince is the epoch of its last
// bytes while it waits, which costs the data path one atomic store per
// burst and no clock reading.
func (h *Handler) sweep(now time.Time) int64 {
	epoch := h.epoch.Add(1)
	lim := h.limits.Load()
	parkAfter := max(1, h.epochs(h.parkAfter))
	pingEvery, pingWait := h.epochs(lim.PingInterval), h.epochs(lim.PingTimeout)
	idle := h.epochs(lim.IdleTimeout)
	h.conns.mu.Lock()
	defer h.conns.mu.Unlock()
	for t := range h.conns.m {
		if t.stopping.Load() {
			continue // going away: its reads carry the drain deadline
		}
		clientQuiet := t.up.quietFor(epoch)
		switch {
		case lim.MaxLifetime > 0 && t.age() >= time.Duration(float64(lim.MaxLifetime)*float64(t.lifeFactor)):
			t.expire(now, ReasonMaxLifetime)
			continue
		case idle > 0 && clientQuiet >= idle && t.down.quietFor(epoch) >= idle:
			t.expire(now, ReasonIdleTimeout)
			continue
		case pingEvery > 0:
			if sent := t.pingSent.Load(); sent != 0 && t.up.activeSince(sent) {
				t.pingSent.Store(0) // answered (or the client spoke anyway)
			} else if sent != 0 && epoch-sent >= pingWait {
				t.cutClient(now)
				continue
			} else if sent == 0 && clientQuiet >= pingEvery && !t.down.pingDue.Load() {
				t.down.pingDue.Store(true)
				t.down.wake()
			}
		}
		for _, c := range [...]*copier{t.up, t.down} {
			if c.state.Load() == stateWaiting && epoch-c.waitSince.Load() >= parkAfter {
				c.requestPark()
			}
		}
	}
	return epoch
}

// quietFor is how many sweeps src has been silent for: 0 while it relays.
func (c *copier) quietFor(epoch int64) int64 {
	if c.state.Load() == stateRunning {
		return 0
	}
	return epoch - c.waitSince.Load()
}

// activeSince reports whether src has sent bytes in or after epoch.
func (c *copier) activeSince(epoch int64) bool {
	return c.state.Load() == stateRunning || c.waitSince.Load() >= epoch
}

// Reasons the proxy itself ends a tunnel, in the tunnel's access record.
const (
	ReasonShutdown        = "shutdown"
	ReasonClosed          = "closed"
	ReasonWriteTimeout    = "write_timeout"
	ReasonPingTimeout     = "ping_timeout"
	ReasonIdleTimeout     = "idle_timeout"
	ReasonMaxLifetime     = "max_lifetime"
	ReasonMaxMessageBytes = "max_message_bytes"
)

// expire ends the tunnel as a shutdown would, for reason: close 1001 to
// both sides at frame boundaries, their answers awaited for abandonGrace.
func (t *tunnel) expire(now time.Time, reason string) {
	t.setReason(reason)
	t.goAway(now.Add(abandonGrace))
}

// cutClient ends the tunnel of a client that did not answer a ping in
// time: nothing more goes to it, nothing is awaited from it, and the
// backend gets close 1001 at its stream's next frame boundary.
func (t *tunnel) cutClient(now time.Time) {
	t.setReason(ReasonPingTimeout)
	t.down.dstStuck.Store(true)
	t.up.srcStuck.Store(true)
	t.goAway(now.Add(abandonGrace))
}

// pingFrame is the ping the proxy sends a silent client: unmasked, as a
// server's frames are, with a payload that says who sent it.
var pingFrame = []byte{0x80 | opPing, 6, 'w', 's', 'g', 'a', 't', 'e'}

// ping sends the client a ping if the backend's stream is at a frame
// boundary; otherwise it stays due and goes at the next boundary.
func (c *copier) ping() {
	if !c.tr.atBoundary() || !c.pingDue.Swap(false) {
		return
	}
	if err := c.send(pingFrame); err != nil {
		return // the next Relay or write finds out
	}
	c.t.pingSent.Store(c.t.h.epoch.Load())
}

// lifeFactor is a tunnel's share of MaxLifetime: 0.9 to 1.1, so that the
// tunnels opened together do not all reconnect together.
func lifeFactor() float32 { return 0.9 + 0.2*rand.Float32() }
