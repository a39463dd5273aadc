package balancer

import (
	"time"

	"github.com/wsgate/wsgate/registry"
)

// Slow start (registry.Pool.SlowStart, config's pools[].slow_start).
//
// A backend that becomes available (added to its pool, healthy again, or
// undrained) is balanced during its pool's window with a share of its
// weight that grows linearly from rampFloor to all of it. The policies do
// not know: the snapshot holds each member's effective weight, and while
// some member is ramping Run rebuilds the snapshot every rampStep, so a
// pick reads no clock and the ramp costs Acquire nothing.
//
// Scaling the weight holds with least connections too, where an empty
// backend would otherwise win every pick until it caught up: a backend at
// a fraction f of its weight wins only while its load per unit of weight,
// divided by f, is the least, so it takes about f times the others' load
// (its first connection is free) and then a matching share of what comes
// next. As f grows it takes a little more with each step, and by the end of
// the window it has caught up without ever taking a whole storm at once.
const (
	// rampScale is the unit of effective weights: a member at full weight
	// w has w*rampScale, one in slow start w*percent, percent in
	// [rampFloor, rampScale).
	rampScale = 100
	// rampFloor is the percent of its weight a backend starts its slow
	// start with (Envoy's default min_weight_percent): enough for real
	// traffic to prove it, a tenth of a full share at most.
	rampFloor = 10
	// rampSteps is how many times a window the snapshot is rebuilt while a
	// backend ramps (HAProxy's slowstart takes 5% steps too), and
	// minRampStep the shortest time between two such rebuilds.
	rampSteps   = 20
	minRampStep = 100 * time.Millisecond
)

// maxBaseWeight bounds the configured weight a member is given, so that its
// effective weight stays within maxWeight.
const maxBaseWeight = maxWeight / rampScale

// rampPercent returns the percent of its weight a backend that became
// available elapsed ago is balanced with, in a pool whose slow-start window
// is window: rampScale once the window has passed (or without one).
func rampPercent(elapsed, window time.Duration) int64 {
	if window <= 0 || elapsed >= window {
		return rampScale
	}
	elapsed = max(elapsed, 0) // a clock that stepped back
	return rampFloor + int64(float64(rampScale-rampFloor)*float64(elapsed)/float64(window))
}

// rampStep returns how soon the snapshot must be rebuilt for a backend that
// became available elapsed ago to move on in its ramp: a step, or what is
// left of the window when that is shorter. It is 0 when the ramp is over.
func rampStep(elapsed, window time.Duration) time.Duration {
	if rampPercent(elapsed, window) == rampScale {
		return 0
	}
	return min(max(window/rampSteps, minRampStep), window-elapsed)
}

// effectiveWeight is the weight a member with configured weight w is
// balanced with at percent of it: in [1, maxWeight].
func effectiveWeight(w int, percent int64) int64 {
	return int64(min(max(w, 1), maxBaseWeight)) * percent
}

// SlowStart reports where a backend is in its pool's slow start: the share
// of its weight it is balanced with now, in [0.1, 1), and when it gets all
// of it. A backend that is not ramping (its window has passed, its pool
// has no slow start, or it is unavailable or unknown) reports 1 and the
// zero time.
func (b *Balancer) SlowStart(id registry.ID) (share float64, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.counters[id]
	if c == nil || !c.available {
		return 1, time.Time{}
	}
	// Under mu the snapshot is the one rebuild built with c.since.
	s := b.snap.Load()
	window := s.pools[id.Pool].slowStart
	percent := rampPercent(s.built.Sub(c.since), window)
	if percent == rampScale {
		return 1, time.Time{}
	}
	return float64(percent) / rampScale, c.since.Add(window)
}
