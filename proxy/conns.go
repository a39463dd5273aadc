package proxy

import (
	"context"
	"sync"
	"time"
)

// conns is the registry of established tunnels, so that shutdown can reach
// connections that net/http no longer tracks once hijacked.
//
// It counts tunnels with a map and a channel instead of a WaitGroup: a
// tunnel may be added (an upgrade finishing) while shutdown already waits,
// which WaitGroup forbids.
type conns struct {
	mu       sync.Mutex
	m        map[*tunnel]struct{} // guarded by mu
	stopping bool                 // guarded by mu
	deadline time.Time            // of the shutdown in progress; guarded by mu
	empty    chan struct{}        // closed when m becomes empty; guarded by mu

	// ended sums the bytes of the tunnels that have ended, per pool, so
	// that relayed adds up to a figure that never goes down; guarded by mu.
	ended map[string]*PoolBytes
	// spread are the timers of a shutdown's later closes; guarded by mu.
	spread []*time.Timer
}

// PoolBytes counts the bytes relayed through a pool's tunnels: Up from
// clients to backends, Down back.
type PoolBytes struct {
	Pool     string
	Up, Down int64
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// add registers t. During a shutdown t starts going away at once.
func (cs *conns) add(t *tunnel) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[*tunnel]struct{})
	}
	cs.m[t] = struct{}{}
	if cs.stopping {
		t.setReason(ReasonShutdown)
		t.goAway(cs.deadline)
	}
}

// remove unregisters t, whose copiers relayed up and down bytes.
func (cs *conns) remove(t *tunnel, up, down int64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.m[t]; !ok {
		return
	}
	delete(cs.m, t)
	if cs.ended == nil {
		cs.ended = make(map[string]*PoolBytes)
	}
	pb := cs.ended[t.pool]
	if pb == nil {
		pb = &PoolBytes{Pool: t.pool}
		cs.ended[t.pool] = pb
	}
	pb.Up += up
	pb.Down += down
	if len(cs.m) == 0 && cs.empty != nil {
		close(cs.empty)
		cs.empty = nil
	}
}

// emptied returns a channel that is closed once no tunnel is left.
func (cs *conns) emptied() <-chan struct{} {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.m) == 0 {
		return closedChan
	}
	if cs.empty == nil {
		cs.empty = make(chan struct{})
	}
	return cs.empty
}

func (cs *conns) len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.m)
}

// goAway starts the going-away handshake on every tunnel, with the given
// deadline, spread evenly over spread (the first at once), and at once
// for any tunnel added later.
func (cs *conns) goAway(deadline time.Time, spread time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.stopping, cs.deadline = true, deadline
	n, i := len(cs.m), 0
	for t := range cs.m { // map order: random, so no tunnel is always last
		at := time.Duration(0)
		if spread > 0 {
			at = time.Duration(i) * spread / time.Duration(n)
		}
		i++
		if at == 0 {
			t.setReason(ReasonShutdown)
			t.goAway(deadline)
			continue
		}
		cs.spread = append(cs.spread, time.AfterFunc(at, func() {
			t.setReason(ReasonShutdown)
			t.goAway(deadline)
		}))
	}
}

// stopSpread stops the shutdown's closes still to come.
func (cs *conns) stopSpread() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, tm := range cs.spread {
		tm.Stop()
	}
	cs.spread = nil
}

// wait waits until every tunnel has ended or ctx is done.
func (cs *conns) wait(ctx context.Context) error {
	select {
	case <-cs.emptied():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeAll closes every established tunnel at once and waits until all
// have ended.
func (cs *conns) closeAll() {
	cs.mu.Lock()
	ts := make([]*tunnel, 0, len(cs.m))
	for t := range cs.m {
		ts = append(ts, t)
	}
	cs.mu.Unlock()
	cs.stopSpread()
	for _, t := range ts {
		t.closeByProxy()
	}
	<-cs.emptied()
}

// relayed returns the bytes relayed per pool, by the tunnels that ended
// and those still open, in no particular order. One lock, for a walk over
// the open tunnels; nothing on the data path waits for it.
func (cs *conns) relayed() []PoolBytes {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	sums := make(map[string]*PoolBytes, len(cs.ended))
	for p, pb := range cs.ended {
		c := *pb
		sums[p] = &c
	}
	for t := range cs.m {
		pb := sums[t.pool]
		if pb == nil {
			pb = &PoolBytes{Pool: t.pool}
			sums[t.pool] = pb
		}
		if t.up != nil {
			pb.Up += t.up.n.Load()
			pb.Down += t.down.n.Load()
		}
	}
	out := make([]PoolBytes, 0, len(sums))
	for _, pb := range sums {
		out = append(out, *pb)
	}
	return out
}
