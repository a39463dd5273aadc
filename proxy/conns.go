package proxy

import (
	"context"
	"sync"
	"time"
)

// conns is the registry of established tunnels, so that shutdown can reach
// connections that net/http no longer tracks once hijacked.
type conns struct {
	mu       sync.Mutex
	m        map[*tunnel]struct{}
	stopping bool      // guarded by mu
	deadline time.Time // of the shutdown in progress; guarded by mu
	wg       sync.WaitGroup
}

// add registers t. During a shutdown t starts going away at once.
func (cs *conns) add(t *tunnel) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[*tunnel]struct{})
	}
	cs.m[t] = struct{}{}
	cs.wg.Add(1)
	if cs.stopping {
		t.goAway(cs.deadline)
	}
}

func (cs *conns) remove(t *tunnel) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.m[t]; ok {
		delete(cs.m, t)
		cs.wg.Done()
	}
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
	done := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
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
	cs.wg.Wait()
}
