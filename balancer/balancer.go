package balancer

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/wsgate/wsgate/registry"
)

// ErrNoBackend is returned by Acquire when the pool has no available backend
// that has not been tried already.
var ErrNoBackend = errors.New("balancer: no healthy backend")

// Rand is the source of randomness for breaking ties.
type Rand interface {
	// IntN returns a number in [0, n).
	IntN(n int) int
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

var _ Rand = globalRand{}

// Options configure a Balancer.
type Options struct {
	// Rand breaks ties between equally loaded backends. Nil means
	// math/rand/v2's global source, which is safe for concurrent use; a
	// test may set a deterministic one (then it must be concurrency-safe).
	Rand Rand
	// Logger receives snapshot rebuild events. Nil means slog.Default().
	Logger *slog.Logger
}

// Balancer selects backends by least connections. It is safe for concurrent
// use. Create it with New and keep it current with Run.
type Balancer struct {
	store *registry.Store
	rnd   Rand
	log   *slog.Logger

	snap atomic.Pointer[snapshot]

	mu       sync.Mutex
	counters map[registry.ID]*counter // guarded by mu; read only at rebuild
}

// counter holds one backend's connection counts. It must not be copied.
type counter struct {
	active atomic.Int64
	total  atomic.Int64
	// retired is set once rebuild has dropped the counter from the map: a
	// connection counted here would be lost (see Acquire).
	retired atomic.Bool
}

// member is a backend in a snapshot.
type member struct {
	address string
	weight  int64
	c       *counter
}

type snapshot struct {
	pools map[string][]member // available backends only
}

// New returns a Balancer over store with a snapshot of its current contents.
// It starts no goroutine; call Run to follow changes.
func New(store *registry.Store, opts Options) *Balancer {
	b := &Balancer{
		store:    store,
		rnd:      opts.Rand,
		log:      opts.Logger,
		counters: make(map[registry.ID]*counter),
	}
	if b.rnd == nil {
		b.rnd = globalRand{}
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.rebuild()
	return b
}

// Run rebuilds the snapshot each time the registry's backends change, until
// ctx is done. It returns nil when ctx is done.
func (b *Balancer) Run(ctx context.Context) error {
	for {
		changed := b.rebuild()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// rebuild publishes a snapshot of the registry and returns the channel that
// closes when the data it was built from changes.
func (b *Balancer) rebuild() <-chan struct{} {
	all, changed := b.store.Backends()
	b.mu.Lock()
	defer b.mu.Unlock()

	s := &snapshot{pools: make(map[string][]member)}
	present := make(map[registry.ID]bool, len(all))
	for _, be := range all {
		id := be.ID()
		present[id] = true
		c := b.counters[id]
		if c == nil {
			c = new(counter)
			b.counters[id] = c
		}
		if _, ok := s.pools[be.Pool]; !ok {
			s.pools[be.Pool] = nil // the pool exists, even with none available
		}
		if be.Available() {
			s.pools[be.Pool] = append(s.pools[be.Pool], member{address: be.Address, weight: int64(max(be.Weight, 1)), c: c})
		}
	}
	b.snap.Store(s)

	// Forget counters of removed backends once their last connection ended;
	// one still in use is kept so that its count is right if it comes back.
	//
	// An Acquire that loaded an older snapshot may still pick a removed
	// backend and count on its counter after we looked at it. Deleting the
	// counter then would lose that connection: the lease would count on a
	// counter nobody reads, and a backend that comes back would get a fresh
	// one at zero. So a counter is retired before its count is read, and
	// Acquire reads retired after counting: sync/atomic operations are
	// sequentially consistent, so either we see the connection (and keep
	// the counter) or Acquire sees retired (and takes the count back and
	// picks again from the snapshot published above, which no longer holds
	// the backend). Never deleting would be simpler but would keep a
	// counter for every address a pool ever had.
	for id, c := range b.counters {
		if present[id] {
			continue
		}
		c.retired.Store(true)
		if c.active.Load() != 0 {
			c.retired.Store(false) // still in use: keep it
			continue
		}
		delete(b.counters, id)
	}
	return changed
}

// Lease is one counted connection to a backend. Release it exactly when the
// connection ends; extra calls do nothing. A Lease must not be copied after
// it is first used.
type Lease struct {
	// Address is the backend's address (host:port or unix:/path).
	Address  string
	c        *counter
	released atomic.Bool
}

// Release uncounts the connection. It is idempotent and safe for concurrent
// use.
func (l *Lease) Release() {
	if l.c != nil && l.released.CompareAndSwap(false, true) {
		l.c.active.Add(-1)
	}
}

// Acquire picks the available backend of pool with the fewest active
// connections per unit of weight, skipping the addresses in tried, counts a
// connection on it and returns the lease. Ties are broken at random. With
// no candidate left it returns ErrNoBackend.
func (b *Balancer) Acquire(pool string, tried []string, l *Lease) error {
	for {
		c, addr, ok := b.pick(pool, tried)
		if !ok {
			return ErrNoBackend
		}
		c.active.Add(1)
		if c.retired.Load() {
			// rebuild dropped the backend after we loaded the snapshot;
			// the new snapshot is published: pick again.
			c.active.Add(-1)
			continue
		}
		c.total.Add(1)
		l.Address = addr
		l.c = c
		l.released.Store(false)
		return nil
	}
}

// pick chooses a backend from the current snapshot; see Acquire.
func (b *Balancer) pick(pool string, tried []string) (*counter, string, bool) {
	members := b.snap.Load().pools[pool]
	var (
		best        *member
		bestActive  int64
		equallyGood int
	)
	for i := range members {
		m := &members[i]
		if contains(tried, m.address) {
			continue
		}
		active := m.c.active.Load()
		if best == nil {
			best, bestActive, equallyGood = m, active, 1
			continue
		}
		// active/weight < bestActive/bestWeight, without division.
		lhs, rhs := active*best.weight, bestActive*m.weight
		switch {
		case lhs < rhs:
			best, bestActive, equallyGood = m, active, 1
		case lhs == rhs:
			// Reservoir sampling: each of the k equal candidates seen so
			// far ends up chosen with probability 1/k.
			equallyGood++
			if b.rnd.IntN(equallyGood) == 0 {
				best, bestActive = m, active
			}
		}
	}
	if best == nil {
		return nil, "", false
	}
	return best.c, best.address, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Counts returns the active and total connection counts of a backend; zero
// for one the balancer has never seen.
func (b *Balancer) Counts(id registry.ID) (active, total int64) {
	b.mu.Lock()
	c := b.counters[id]
	b.mu.Unlock()
	if c == nil {
		return 0, 0
	}
	return c.active.Load(), c.total.Load()
}
