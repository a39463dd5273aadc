package balancer

// Policy names, as config's pools[].policy spells them and registry.Pool
// carries them.
const (
	PolicyLeastConnections = "least_connections"
	PolicyPowerOfTwo       = "power_of_two"
)

// Policy chooses the backend of a pool that a new connection goes to.
// Implementations must be safe for concurrent use, must not allocate (Select
// runs for every connection) and must not keep c after Select returns.
type Policy interface {
	// Select returns the index of the chosen candidate, one for which
	// c.Available holds, or -1 when there is none. r is the only source
	// of randomness a policy may use, so that tests can script it.
	Select(c Candidates, r Rand) int
}

var (
	_ Policy = LeastConnections{}
	_ Policy = PowerOfTwo{}
)

// policyNamed returns the policy called name; "" is least connections. For
// an unknown name (config validation rules them out) it returns least
// connections and false.
func policyNamed(name string) (Policy, bool) {
	switch name {
	case "", PolicyLeastConnections:
		return LeastConnections{}, true
	case PolicyPowerOfTwo:
		return PowerOfTwo{}, true
	}
	return LeastConnections{}, false
}

// Candidates is what a Policy chooses from: the members of one pool in the
// current snapshot, every one healthy and not draining, of which those this
// connection has already tried are not available. It is a view of the
// immutable snapshot; building and reading it allocates nothing.
type Candidates struct {
	members []member
	tried   []string
}

// Len returns the number of candidates, available or not.
func (c *Candidates) Len() int { return len(c.members) }

// Available reports whether candidate i may be chosen: it may not once this
// connection has tried it.
func (c *Candidates) Available(i int) bool {
	return len(c.tried) == 0 || !contains(c.tried, c.members[i].address)
}

// Count returns the number of available candidates. On a first attempt
// (nothing tried) it is Len, at no cost; on a retry it takes one pass.
func (c *Candidates) Count() int {
	if len(c.tried) == 0 {
		return len(c.members)
	}
	n := 0
	for i := range c.members {
		if c.Available(i) {
			n++
		}
	}
	return n
}

// Nth returns the index of the k-th available candidate, counting from 0;
// k must be below Count. Free on a first attempt; one pass on a retry.
func (c *Candidates) Nth(k int) int {
	if len(c.tried) == 0 {
		return k
	}
	for i := range c.members {
		if c.Available(i) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	panic("balancer: Candidates.Nth beyond Count")
}

// Load returns candidate i's load: the figure policies compare, per unit of
// weight (see compareLoad). It reads an atomic counter, so two calls may
// differ.
func (c *Candidates) Load(i int) int64 { return c.members[i].load() }

// Weight returns candidate i's effective weight, in [1, maxWeight]: its
// configured weight, scaled down while it is in slow start. Only the ratio
// of two weights means anything.
func (c *Candidates) Weight(i int) int64 { return c.members[i].weight }

// compareLoad compares la/wa with lb/wb: -1 when less, 0 when equal, +1
// when greater. It multiplies instead of dividing, without floats: loads
// are in [0, 2^32) and weights in [1, maxWeight], so neither product can
// overflow. Small enough to be inlined.
func compareLoad(la, wa, lb, wb int64) int {
	x, y := la*wb, lb*wa
	switch {
	case x < y:
		return -1
	case x == y:
		return 0
	}
	return 1
}

// LeastConnections chooses the available candidate with the least load per
// unit of weight, in one pass over the pool. Ties are broken at random by
// reservoir sampling, one call to Rand per tie. It is the default policy:
// WebSocket connections live long, and it keeps the open ones even and
// fills a backend that just came back first.
type LeastConnections struct{}

// Select implements Policy.
func (LeastConnections) Select(c Candidates, r Rand) int {
	best, ties := -1, 0
	var bestLoad, bestWeight int64
	for i := range c.Len() {
		if !c.Available(i) {
			continue
		}
		load, weight := c.Load(i), c.Weight(i)
		if best < 0 {
			best, ties, bestLoad, bestWeight = i, 1, load, weight
			continue
		}
		switch compareLoad(load, weight, bestLoad, bestWeight) {
		case -1:
			best, ties, bestLoad, bestWeight = i, 1, load, weight
		case 0:
			// Each of the ties seen so far ends up chosen with
			// probability 1/ties.
			ties++
			if r.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// PowerOfTwo is "the power of two choices": it draws two distinct available
// candidates at random and chooses the one with less load per unit of
// weight, the first drawn on a tie (itself a random pick). It reads two
// counters instead of all of them, so a first attempt costs the same at any
// pool size; and since it never sends every new connection to the single
// least loaded backend, it does not stampede onto one backend when loads
// are stale or shared between several proxies.
//
// Weights act only in the comparison: a backend is in 2 of the n draws of
// a pool of n, so it takes at most 2/n of the connections however heavy
// its weight; its weighted share is met while it stays below that (with 3
// backends, up to 4:1:1). With one available candidate it chooses that one.
type PowerOfTwo struct{}

// Select implements Policy.
func (PowerOfTwo) Select(c Candidates, r Rand) int {
	n := c.Count()
	switch n {
	case 0:
		return -1
	case 1:
		return c.Nth(0)
	}
	a, b := r.IntN(n), r.IntN(n-1)
	if b >= a {
		b++ // b is drawn from the n-1 others
	}
	i, j := c.Nth(a), c.Nth(b)
	if compareLoad(c.Load(j), c.Weight(j), c.Load(i), c.Weight(i)) < 0 {
		return j
	}
	return i
}
