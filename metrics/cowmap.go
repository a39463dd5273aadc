package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// cowMap is a map for the read-mostly lookups of the observer methods:
// readers load an immutable map through an atomic pointer, without a lock
// and without allocating; a writer, needed only the first time a key is
// used, copies the map under a mutex. The zero value is an empty map.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[K]V]
}

// get returns the value of k, made by create (under the writers' mutex,
// once per key) when k has none yet.
func (c *cowMap[K, V]) get(k K, create func(K) V) V {
	if p := c.m.Load(); p != nil {
		if v, ok := (*p)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[K]V)
	if old := c.m.Load(); old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
		next = maps.Clone(*old)
	}
	v := create(k)
	next[k] = v
	c.m.Store(&next)
	return v
}

// removeUnless removes every key for which keep is false and returns them.
func (c *cowMap[K, V]) removeUnless(keep func(K) bool) []K {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old == nil {
		return nil
	}
	var gone []K
	next := make(map[K]V, len(*old))
	for k, v := range *old {
		if keep(k) {
			next[k] = v
		} else {
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 {
		c.m.Store(&next)
	}
	return gone
}
