package proxy

import "sync"

// conns is the registry of established tunnels, so that shutdown can reach
// connections that net/http no longer tracks once hijacked.
type conns struct {
	mu      sync.Mutex
	m       map[*tunnel]struct{}
	closing bool
	wg      sync.WaitGroup
}

// add registers t; it returns false once closeAll has begun.
func (cs *conns) add(t *tunnel) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closing {
		return false
	}
	if cs.m == nil {
		cs.m = make(map[*tunnel]struct{})
	}
	cs.m[t] = struct{}{}
	cs.wg.Add(1)
	return true
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

// closeAll refuses new tunnels, closes every established one and waits
// until all have ended.
func (cs *conns) closeAll() {
	cs.mu.Lock()
	cs.closing = true
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
