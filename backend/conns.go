package backend

import (
	"sync"
	"time"
)

// connSet tracks every WebSocket the server is upgrading or serving, so that
// Serve can wait for them and, at the drain deadline, close them. Net/http
// cannot do this: hijacked connections are invisible to http.Server.Shutdown.
//
// A slot is reserved before the upgrade (so an upgrade in flight is waited
// for too), filled with the client once upgraded, and released by the
// client's readPump as its very last step, after both pumps are done.
type connSet struct {
	mu     sync.Mutex
	n      int                  // reserved slots, upgraded or not
	conns  map[*client]struct{} // upgraded connections
	closed bool                 // closeAll ran: no new slots, close late arrivals
	idle   chan struct{}        // closed (and cleared) when n drops to 0
}

func (cs *connSet) init() {
	cs.conns = make(map[*client]struct{})
}

// reserve takes a slot for an upgrade about to happen. It reports false once
// closeAll has run.
func (cs *connSet) reserve() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.n++
	return true
}

// add records the upgraded client in its reserved slot. It reports false if
// closeAll ran in the meantime; the caller then closes the connection and
// releases the slot.
func (cs *connSet) add(c *client) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.conns[c] = struct{}{}
	return true
}

// release frees a slot; c is nil if the slot never got a client.
func (cs *connSet) release(c *client) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c != nil {
		delete(cs.conns, c)
	}
	cs.n--
	if cs.n == 0 && cs.idle != nil {
		close(cs.idle)
		cs.idle = nil
	}
}

func (cs *connSet) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.n
}

// wait blocks until every slot is released or timeout fires, and reports
// whether every slot was released. A nil timeout waits without limit.
func (cs *connSet) wait(timeout <-chan time.Time) bool {
	cs.mu.Lock()
	if cs.n == 0 {
		cs.mu.Unlock()
		return true
	}
	if cs.idle == nil {
		cs.idle = make(chan struct{})
	}
	idle := cs.idle
	cs.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-timeout:
		return false
	}
}

// closeAll closes every upgraded connection, which ends its pumps, refuses
// new slots from now on, and returns how many slots were still taken.
func (cs *connSet) closeAll() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	for c := range cs.conns {
		c.conn.Close()
	}
	return cs.n
}
