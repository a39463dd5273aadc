package balancer

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// Log attribute keys, as listed under "Every key" in the README.
const (
	keyPool   = "pool"
	keyPolicy = "policy"
)

// ErrNoBackend is returned by Acquire when the pool has no available backend
// that has not been tried already.
var ErrNoBackend = errors.New("balancer: no healthy backend")

// Rand is the source of randomness of policies: ties, random draws.
type Rand interface {
	// IntN returns a number in [0, n).
	IntN(n int) int
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

var _ Rand = globalRand{}

// Options configure a Balancer.
type Options struct {
	// Rand is handed to the policies (ties, random draws). Nil means
	// math/rand/v2's global source, which is safe for concurrent use; a
	// test may set a deterministic one (then it must be concurrency-safe).
	Rand Rand
	// Logger receives snapshot rebuild events (a pool naming an unknown
	// policy). Nil means slog.Default().
	Logger *slog.Logger
	// Now is the balancer's clock. It is read when the snapshot is rebuilt,
	// never when a backend is picked: it dates the moment a backend becomes
	// available and measures its slow start. Nil means time.Now.
	Now func() time.Time
}

// Balancer selects backends by each pool's Policy. It is safe for
// concurrent use. Create it with New and keep it current with Run.
type Balancer struct {
	store *registry.Store
	rnd   Rand
	log   *slog.Logger
	now   func() time.Time

	snap atomic.Pointer[snapshot]

	mu       sync.Mutex
	counters map[registry.ID]*counter // guarded by mu; Acquire never reads it
	// inherited is SetInherited's last counts; guarded by mu.
	inherited map[registry.ID]int64
}

// counter holds one backend's connection counts, and when it became
// available. It must not be copied.
type counter struct {
	active atomic.Int64
	total  atomic.Int64
	// inherited is how many connections older processes of a binary
	// upgrade still hold to the backend (SetInherited): they count in the
	// load, not in active.
	inherited atomic.Int64
	// retired is set once rebuild has dropped the counter from the map: a
	// connection counted here would be lost (see Acquire).
	retired atomic.Bool
	// report is the backend's last reported load, if any (see load).
	report reportedLoad

	// Guarded by Balancer.mu; Acquire never reads them. available says
	// whether the backend was available in the last snapshot, and since
	// when it last became so: the start of its slow start. since is the
	// zero time for a backend available from the first snapshot on, which
	// has no one to ramp up against.
	available bool
	since     time.Time
}

// member is a backend in a snapshot.
type member struct {
	address string
	// weight is the effective weight: the configured one scaled by the
	// slow start (see effectiveWeight), in [1, maxWeight].
	weight int64
	c      *counter
}

// maxWeight bounds the effective weight of a member, so that load*weight
// fits in an int64 for any load below 2^32 (see compareLoad). A configured
// weight above maxBaseWeight (a ratio of more than twenty million to one)
// behaves the same as maxBaseWeight.
const maxWeight = 1<<31 - 1

// load is the figure policies compare for the member (see counter.load).
func (m *member) load() int64 { return m.c.load() }

type snapshot struct {
	pools map[string]poolSnapshot
	built time.Time // the clock's reading the weights were computed at
}

// poolSnapshot is one pool in a snapshot.
type poolSnapshot struct {
	policy    Policy
	slowStart time.Duration
	members   []member // available backends only
}

// New returns a Balancer over store with a snapshot of its current contents.
// It starts no goroutine; call Run to follow changes.
func New(store *registry.Store, opts Options) *Balancer {
	b := &Balancer{
		store:    store,
		rnd:      opts.Rand,
		log:      opts.Logger,
		now:      opts.Now,
		counters: make(map[registry.ID]*counter),
	}
	if b.rnd == nil {
		b.rnd = globalRand{}
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.rebuild()
	return b
}

// Run rebuilds the snapshot each time the registry's pools or backends
// change, and while a backend is in slow start each time its weight is to
// grow (a timer, armed only then), until ctx is done. It returns nil when
// ctx is done.
func (b *Balancer) Run(ctx context.Context) error {
	step := time.NewTimer(time.Hour)
	defer step.Stop()
	for {
		poolsChanged, backendsChanged, next := b.rebuild()
		var stepped <-chan time.Time
		if next > 0 {
			step.Reset(next)
			stepped = step.C
		} else {
			step.Stop()
		}
		select {
		case <-poolsChanged:
		case <-backendsChanged:
		case <-stepped:
		case <-ctx.Done():
			return nil
		}
	}
}

// rebuild publishes a snapshot of the registry and returns the channels
// that close when the pools or backends it was built from change, and how
// soon a slow start needs the next rebuild (0: none does).
func (b *Balancer) rebuild() (poolsChanged, backendsChanged <-chan struct{}, next time.Duration) {
	pools, poolsChanged := b.store.Pools()
	all, backendsChanged := b.store.Backends()
	b.mu.Lock()
	defer b.mu.Unlock()

	now := b.now()
	first := b.snap.Load() == nil
	s := &snapshot{pools: make(map[string]poolSnapshot, len(pools)), built: now}
	for _, p := range pools {
		policy, ok := policyNamed(p.Policy)
		if !ok {
			b.log.Error("unknown balancing policy; using least_connections",
				slog.String(keyPool, p.Name), slog.String(keyPolicy, p.Policy))
		}
		s.pools[p.Name] = poolSnapshot{policy: policy, slowStart: p.SlowStart}
	}
	present := make(map[registry.ID]bool, len(all))
	for _, be := range all {
		id := be.ID()
		present[id] = true
		c := b.counters[id]
		if c == nil {
			c = new(counter)
			c.inherited.Store(b.inherited[id])
			b.counters[id] = c
		}
		p, ok := s.pools[be.Pool]
		if !ok {
			// The pool was added between the two reads above; its watch
			// has fired, and the next rebuild gives it its policy.
			p.policy = LeastConnections{}
		}
		available := be.Available()
		if available && !c.available && !first {
			c.since = now
		}
		c.available = available
		if available {
			elapsed := now.Sub(c.since)
			w := effectiveWeight(be.Weight, rampPercent(elapsed, p.slowStart))
			p.members = append(p.members, member{address: be.Address, weight: w, c: c})
			if step := rampStep(elapsed, p.slowStart); step > 0 && (next == 0 || step < next) {
				next = step
			}
		}
		s.pools[be.Pool] = p
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
		c.available = false // if it comes back, it ramps up
		c.retired.Store(true)
		if c.active.Load() != 0 {
			c.retired.Store(false) // still in use: keep it
			continue
		}
		delete(b.counters, id)
	}
	return poolsChanged, backendsChanged, next
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

// Acquire asks the pool's policy for one of its available backends,
// skipping the addresses in tried, counts a connection on it and fills in
// l. With no candidate left it returns ErrNoBackend. It is lock-free and
// allocates nothing.
func (b *Balancer) Acquire(pool string, tried []string, l *Lease) error {
	for {
		p := b.snap.Load().pools[pool]
		if len(p.members) == 0 {
			return ErrNoBackend
		}
		i := p.policy.Select(Candidates{members: p.members, tried: tried}, b.rnd)
		if i < 0 {
			return ErrNoBackend
		}
		m := &p.members[i]
		m.c.active.Add(1)
		if m.c.retired.Load() {
			// rebuild dropped the backend after we loaded the snapshot,
			// and has published a new one: pick again (see rebuild).
			m.c.active.Add(-1)
			continue
		}
		m.c.total.Add(1)
		l.Address = m.address
		l.c = m.c
		l.released.Store(false)
		return nil
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SetInherited sets the connections that older processes of a binary
// upgrade still hold, per backend (absent: none): least connections counts
// them with this process's own, so that the new process does not pile new
// connections onto the backends the old ones fill.
func (b *Balancer) SetInherited(counts map[registry.ID]int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inherited = counts
	for id, c := range b.counters {
		c.inherited.Store(counts[id])
	}
}

// Inherited returns what SetInherited last said of a backend.
func (b *Balancer) Inherited(id registry.ID) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inherited[id]
}

// Held returns, per backend with any, the connections this process holds
// (active) plus those its older generations hold (SetInherited): what a
// process hands its successor in a binary upgrade.
func (b *Balancer) Held() map[registry.ID]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[registry.ID]int64, len(b.counters)+len(b.inherited))
	for id, n := range b.inherited {
		if n > 0 {
			out[id] = n
		}
	}
	for id, c := range b.counters {
		if n := c.active.Load(); n > 0 {
			out[id] += n
		}
	}
	return out
}

// Counts returns the active and total connection counts of a backend; zero
// for one the balancer has never seen.
func (b *Balancer) Counts(id registry.ID) (active, total int64) {
	c := b.counter(id)
	if c == nil {
		return 0, 0
	}
	return c.active.Load(), c.total.Load()
}

// counter returns the counter of backend id, or nil if it has none.
func (b *Balancer) counter(id registry.ID) *counter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counters[id]
}
