package balancer

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/registry"
)

// scriptRand returns its values in turn and records the n of each call;
// a call beyond the script fails the test.
type scriptRand struct {
	t    *testing.T
	vals []int
	ns   []int
}

func (r *scriptRand) IntN(n int) int {
	r.ns = append(r.ns, n)
	if len(r.vals) == 0 {
		r.t.Fatalf("IntN(%d) called beyond the script", n)
	}
	v := r.vals[0]
	r.vals = r.vals[1:]
	if v < 0 || v >= n {
		r.t.Fatalf("script value %d out of range for IntN(%d)", v, n)
	}
	return v
}

// seeded returns a deterministic Rand for single-goroutine tests.
func seeded() Rand { return rand.New(rand.NewPCG(1, 2)) }

// addr is the address pool gives its i-th backend.
func addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 9001+i) }

// candidates builds a view over members with the given loads and weights
// (nil weights: all 1).
func candidates(loads, weights []int64, tried ...string) Candidates {
	ms := make([]member, len(loads))
	for i, load := range loads {
		c := new(counter)
		c.active.Store(load)
		w := int64(1)
		if weights != nil {
			w = weights[i]
		}
		ms[i] = member{address: addr(i), weight: w, c: c}
	}
	return Candidates{members: ms, tried: tried}
}

func TestSelect(t *testing.T) {
	lc, p2c := LeastConnections{}, PowerOfTwo{}
	tests := []struct {
		desc    string
		policy  Policy
		loads   []int64
		weights []int64
		tried   []string
		script  []int // the Rand's answers
		want    int
		wantNs  []int // the n of each Rand call
	}{
		{desc: "lc: least loaded", policy: lc, loads: []int64{3, 1, 2}, want: 1},
		{desc: "lc: per unit of weight", policy: lc, loads: []int64{4, 3}, weights: []int64{2, 1}, want: 0},
		{desc: "lc: tie, reservoir keeps the first", policy: lc, loads: []int64{0, 0, 0}, script: []int{1, 2}, want: 0, wantNs: []int{2, 3}},
		{desc: "lc: tie, reservoir takes the last", policy: lc, loads: []int64{0, 0, 0}, script: []int{1, 0}, want: 2, wantNs: []int{2, 3}},
		{desc: "lc: a lower load resets the ties", policy: lc, loads: []int64{1, 1, 0, 0}, script: []int{1, 0}, want: 3, wantNs: []int{2, 2}},
		{desc: "lc: tried skipped", policy: lc, loads: []int64{0, 5, 5}, tried: []string{addr(0)}, script: []int{1}, want: 1, wantNs: []int{2}},
		{desc: "lc: all tried", policy: lc, loads: []int64{0}, tried: []string{addr(0)}, want: -1},
		{desc: "lc: none", policy: lc, want: -1},
		{desc: "p2c: less loaded of the two drawn", policy: p2c, loads: []int64{5, 1, 3}, script: []int{0, 1}, want: 2, wantNs: []int{3, 2}},
		{desc: "p2c: second draw skips the first", policy: p2c, loads: []int64{5, 1, 3}, script: []int{2, 1}, want: 1, wantNs: []int{3, 2}},
		{desc: "p2c: less loaded drawn first", policy: p2c, loads: []int64{1, 5, 3}, script: []int{0, 0}, want: 0, wantNs: []int{3, 2}},
		{desc: "p2c: second draw equal to the first moves past it", policy: p2c, loads: []int64{5, 5, 1}, script: []int{1, 1}, want: 2, wantNs: []int{3, 2}},
		{desc: "p2c: tie keeps the first drawn", policy: p2c, loads: []int64{2, 2, 2}, script: []int{1, 1}, want: 1, wantNs: []int{3, 2}},
		{desc: "p2c: per unit of weight", policy: p2c, loads: []int64{4, 3}, weights: []int64{2, 1}, script: []int{1, 0}, want: 0, wantNs: []int{2, 1}},
		{desc: "p2c: one candidate, no draw", policy: p2c, loads: []int64{7}, want: 0},
		{desc: "p2c: one left untried, no draw", policy: p2c, loads: []int64{0, 9, 0}, tried: []string{addr(0), addr(2)}, want: 1},
		{desc: "p2c: draws among the untried", policy: p2c, loads: []int64{0, 9, 1, 0}, tried: []string{addr(0)}, script: []int{0, 1}, want: 3, wantNs: []int{3, 2}},
		{desc: "p2c: all tried", policy: p2c, loads: []int64{0, 0}, tried: []string{addr(0), addr(1)}, want: -1},
		{desc: "p2c: none", policy: p2c, want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := &scriptRand{t: t, vals: tc.script}
			if got := tc.policy.Select(candidates(tc.loads, tc.weights, tc.tried...), r); got != tc.want {
				t.Errorf("Select() = %d, want %d", got, tc.want)
			}
			if !slices.Equal(r.ns, tc.wantNs) {
				t.Errorf("Rand calls IntN(n) with n = %v, want %v", r.ns, tc.wantNs)
			}
			if len(r.vals) != 0 {
				t.Errorf("%d script values left unused", len(r.vals))
			}
		})
	}
}

func TestCompareLoad(t *testing.T) {
	const maxLoad = 1<<32 - 1
	tests := []struct {
		la, wa, lb, wb int64
		want           int
	}{
		{1, 1, 2, 1, -1},
		{2, 1, 1, 1, 1},
		{0, 1, 0, 5, 0},
		{2, 2, 1, 1, 0},
		{3, 2, 1, 1, 1},
		{maxLoad, maxWeight, maxLoad - 1, maxWeight, 1},
		{maxLoad, maxWeight, maxLoad, maxWeight - 1, -1},
		{maxLoad, 1, 1, maxWeight, 1},
	}
	for _, tc := range tests {
		if got := compareLoad(tc.la, tc.wa, tc.lb, tc.wb); got != tc.want {
			t.Errorf("compareLoad(%d/%d vs %d/%d) = %d, want %d", tc.la, tc.wa, tc.lb, tc.wb, got, tc.want)
		}
	}
}

// TestHugeWeights: weights past maxWeight are clamped, not multiplied into
// an overflow (with 1<<62 each, 2*w wraps negative and the backend with
// two connections would look the least loaded).
func TestHugeWeights(t *testing.T) {
	p := pool("app")
	p.Backends = []registry.BackendSpec{{Address: addr(0), Weight: 1 << 62}, {Address: addr(1), Weight: 1 << 62}}
	b, _ := newBalancer(t, Options{}, p)
	got := map[string]int{}
	for i := range 10 {
		got[acquire(t, b, "app").Address]++
		if d := got[addr(0)] - got[addr(1)]; d < -1 || d > 1 {
			t.Fatalf("after %d picks with equal huge weights the counts are %v, want them within 1", i+1, got)
		}
	}
}

// withPolicy returns spec with its Policy set.
func withPolicy(spec registry.PoolSpec, policy string) registry.PoolSpec {
	spec.Policy = policy
	return spec
}

// hold acquires n leases on the backend at addr(i) of a pool of size
// backends, by marking every other one tried.
func hold(t *testing.T, b *Balancer, pool string, backends, i, n int) {
	t.Helper()
	var tried []string
	for j := range backends {
		if j != i {
			tried = append(tried, addr(j))
		}
	}
	for range n {
		if l := acquire(t, b, pool, tried...); l.Address != addr(i) {
			t.Fatalf("Acquire(tried all but %s) = %s", addr(i), l.Address)
		}
	}
}

// TestPowerOfTwoAvoidsTheLoaded: with one backend of three holding ten
// connections, p2c never picks it (any pair it is drawn in has a less
// loaded other), and splits the picks evenly between the other two.
func TestPowerOfTwoAvoidsTheLoaded(t *testing.T) {
	b, _ := newBalancer(t, Options{Rand: seeded()}, withPolicy(pool("app", 1, 1, 1), PolicyPowerOfTwo))
	hold(t, b, "app", 3, 0, 10)
	got := map[string]int{}
	const picks = 3000
	for range picks {
		l := acquire(t, b, "app")
		got[l.Address]++
		l.Release()
	}
	if got[addr(0)] != 0 {
		t.Errorf("the loaded backend was picked %d times, want 0", got[addr(0)])
	}
	// Each of the others is picked with probability 1/2: 150 is 5.5
	// standard deviations (the worst of 20,000 seeds was 106).
	for _, a := range []string{addr(1), addr(2)} {
		if n := got[a]; n < picks/2-150 || n > picks/2+150 {
			t.Errorf("%s picked %d of %d times, want %d ± 150", a, n, picks, picks/2)
		}
	}
}

// TestPowerOfTwoSpread: connections that stay open end up spread in
// proportion to the weights, within 10% (the worst of 20,000 seeds was
// 2.5% for 1:1:1 and 4% for 2:1:1).
func TestPowerOfTwoSpread(t *testing.T) {
	const conns = 400
	tests := []struct {
		desc    string
		weights []int
	}{
		{"equal", []int{1, 1, 1}},
		{"2:1:1", []int{2, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			b, _ := newBalancer(t, Options{Rand: seeded()}, withPolicy(pool("app", tc.weights...), PolicyPowerOfTwo))
			got := map[string]int{}
			for range conns {
				got[acquire(t, b, "app").Address]++
			}
			sum := 0
			for _, w := range tc.weights {
				sum += w
			}
			for i, w := range tc.weights {
				want := float64(conns*w) / float64(sum)
				if n := float64(got[addr(i)]); n < 0.9*want || n > 1.1*want {
					t.Errorf("%s (weight %d) has %v connections, want %.0f ± 10%%", addr(i), w, n, want)
				}
			}
		})
	}
}

// TestPoolPolicy: each pool uses its own policy, and a reload that changes
// it is followed. With loads 0, 5, 5 least connections always picks the
// idle backend; p2c picks a loaded one whenever it draws the two loaded.
func TestPoolPolicy(t *testing.T) {
	specs := func(a, b string) []registry.PoolSpec {
		return []registry.PoolSpec{withPolicy(pool("a", 1, 1, 1), a), withPolicy(pool("b", 1, 1, 1), b)}
	}
	bal, s := newBalancer(t, Options{Rand: seeded()}, specs(PolicyLeastConnections, PolicyPowerOfTwo)...)
	for _, p := range []string{"a", "b"} {
		hold(t, bal, p, 3, 1, 5)
		hold(t, bal, p, 3, 2, 5)
	}
	// idlePicks counts how many of 60 picks went to the idle backend.
	idlePicks := func(p string) int {
		n := 0
		for range 60 {
			l := acquire(t, bal, p)
			if l.Address == addr(0) {
				n++
			}
			l.Release()
		}
		return n
	}
	check := func(lc, p2c string) {
		t.Helper()
		if n := idlePicks(lc); n != 60 {
			t.Errorf("pool %s (least_connections): %d of 60 picks went to the idle backend, want 60", lc, n)
		}
		// p2c draws the two loaded in 1 pair of 3: 40 expected.
		if n := idlePicks(p2c); n < 25 || n > 55 {
			t.Errorf("pool %s (power_of_two): %d of 60 picks went to the idle backend, want 40 ± 15", p2c, n)
		}
	}
	check("a", "b")

	first := bal.snap.Load()
	defer run(t, bal)()
	// Run's first snapshot, so that the reload reaches it through a watch.
	waitFor(t, "Run to rebuild", func() bool { return bal.snap.Load() != first })
	if _, err := s.Apply(specs(PolicyPowerOfTwo, "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the policies to swap", func() bool {
		pools := bal.snap.Load().pools
		return pools["a"].policy == Policy(PowerOfTwo{}) && pools["b"].policy == Policy(LeastConnections{})
	})
	check("b", "a")
}

func TestUnknownPolicy(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b, _ := newBalancer(t, Options{Logger: log}, withPolicy(pool("app", 1, 1), "round_robin"))
	if got := b.snap.Load().pools["app"].policy; got != Policy(LeastConnections{}) {
		t.Errorf("policy for an unknown name = %T, want LeastConnections", got)
	}
	for _, want := range []string{`level=ERROR`, `msg="unknown balancing policy; using least_connections"`, `pool=app`, `policy=round_robin`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log = %q, want it to contain %s", logs.String(), want)
		}
	}
}

// TestAcquireAllocs: picking allocates nothing, with either policy, on a
// first attempt and on a retry.
func TestAcquireAllocs(t *testing.T) {
	for _, policy := range []string{PolicyLeastConnections, PolicyPowerOfTwo} {
		for _, tried := range [][]string{nil, {addr(1)}} {
			t.Run(fmt.Sprintf("%s/tried=%d", policy, len(tried)), func(t *testing.T) {
				b, _ := newBalancer(t, Options{}, withPolicy(pool("app", 1, 1, 1), policy))
				checkNoAllocs(t, b, tried)
			})
		}
	}
}
