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
		t.goAway(cs.deadline)
	}
}

func (cs *conns) remove(t *tunnel) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, t)
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

// goAway starts the going-away handshake on every tunnel, now and for any
// tunnel added later, with the given deadline.
func (cs *conns) goAway(deadline time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.stopping, cs.deadline = true, deadline
	for t := range cs.m {
		t.goAway(deadline)
	}
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
	for _, t := range ts {
		t.close()
	}
	<-cs.emptied()
}
