package balancer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// firstRand always keeps the first of equal candidates.
type firstRand struct{}

func (firstRand) IntN(int) int { return 1 }

func newBalancer(t testing.TB, opts Options, pools ...registry.PoolSpec) (*Balancer, *registry.Store) {
	t.Helper()
	s, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(pools); err != nil {
		t.Fatal(err)
	}
	return New(s, opts), s
}

func pool(name string, weights ...int) registry.PoolSpec {
	p := registry.PoolSpec{Name: name}
	for i, w := range weights {
		p.Backends = append(p.Backends, registry.BackendSpec{Address: fmt.Sprintf("127.0.0.1:%d", 9001+i), Weight: w})
	}
	return p
}

func acquire(t *testing.T, b *Balancer, p string, tried ...string) *Lease {
	t.Helper()
	l := new(Lease)
	if err := b.Acquire(p, tried, l); err != nil {
		t.Fatalf("Acquire(%q, %v) error = %v", p, tried, err)
	}
	return l
}

func TestLeastConnections(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1, 1, 1))
	perBackend := map[string][]*Lease{}
	for range 30 {
		l := acquire(t, b, "app")
		perBackend[l.Address] = append(perBackend[l.Address], l)
	}
	for addr, ls := range perBackend {
		if len(ls) != 10 {
			t.Errorf("%s got %d connections, want 10", addr, len(ls))
		}
	}
	// Close the ten of one backend: the next ten all go there.
	emptied := "127.0.0.1:9002"
	for _, l := range perBackend[emptied] {
		l.Release()
	}
	for i := range 10 {
		if l := acquire(t, b, "app"); l.Address != emptied {
			t.Fatalf("Acquire() #%d after emptying %s = %s, want %s", i, emptied, l.Address, emptied)
		}
	}
}

func TestWeights(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 2, 1))
	got := map[string]int{}
	for range 30 {
		got[acquire(t, b, "app").Address]++
	}
	if got["127.0.0.1:9001"] != 20 || got["127.0.0.1:9002"] != 10 {
		t.Errorf("counts with weights 2:1 = %v, want 20 and 10", got)
	}
}

func TestTiesAreRandom(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1, 1, 1))
	seen := map[string]int{}
	for range 300 {
		l := acquire(t, b, "app")
		seen[l.Address]++
		l.Release()
	}
	for addr, n := range seen {
		// Each has probability 1/3; 50 is > 6 standard deviations out.
		if n < 50 {
			t.Errorf("%s picked %d of 300 times with all idle; ties are not broken at random", addr, n)
		}
	}
	if len(seen) != 3 {
		t.Errorf("picked %d distinct backends, want 3", len(seen))
	}
}

func TestTried(t *testing.T) {
	b, _ := newBalancer(t, Options{Rand: firstRand{}}, pool("app", 1, 1))
	l := acquire(t, b, "app", "127.0.0.1:9001")
	if l.Address != "127.0.0.1:9002" {
		t.Errorf("Acquire(tried 9001) = %s, want 127.0.0.1:9002", l.Address)
	}
	err := b.Acquire("app", []string{"127.0.0.1:9001", "127.0.0.1:9002"}, new(Lease))
	if !errors.Is(err, ErrNoBackend) {
		t.Errorf("Acquire(all tried) error = %v, want ErrNoBackend", err)
	}
	if err := b.Acquire("nope", nil, new(Lease)); !errors.Is(err, ErrNoBackend) {
		t.Errorf("Acquire(unknown pool) error = %v, want ErrNoBackend", err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1))
	l := acquire(t, b, "app")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(l.Release)
	}
	wg.Wait()
	l.Release()
	active, total := b.Counts(registry.ID{Pool: "app", Address: "127.0.0.1:9001"})
	if active != 0 || total != 1 {
		t.Errorf("Counts() = %d, %d; want 0, 1", active, total)
	}
}

// waitFor polls cond until it holds, failing the test after a while.
var waitFor = proctest.WaitFor

// run starts b.Run and returns a function that stops it and waits for it.
func run(t *testing.T, b *Balancer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
}

// checkNoAllocs fails the test if acquiring from pool app, with tried,
// allocates.
func checkNoAllocs(t *testing.T, b *Balancer, tried []string) {
	t.Helper()
	var l Lease
	allocs := testing.AllocsPerRun(1000, func() {
		if err := b.Acquire("app", tried, &l); err != nil {
			t.Fatal(err)
		}
		l.Release()
	})
	if allocs != 0 {
		t.Errorf("Acquire allocates %v times per call, want 0", allocs)
	}
}

func TestRunFollowsRegistry(t *testing.T) {
	b, s := newBalancer(t, Options{}, pool("app", 1, 1))
	defer run(t, b)()

	held := acquire(t, b, "app") // a connection that outlives the changes below
	down := registry.ID{Pool: "app", Address: held.Address}
	other := "127.0.0.1:9001"
	if held.Address == other {
		other = "127.0.0.1:9002"
	}

	if _, err := s.SetHealth(down, registry.HealthDown, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unhealthy backend to leave the snapshot", func() bool {
		return len(b.snap.Load().pools["app"].members) == 1
	})
	for range 5 {
		if l := acquire(t, b, "app"); l.Address != other {
			t.Fatalf("Acquire() = %s while %s is down, want %s", l.Address, down.Address, other)
		}
	}

	// A reload that keeps the backend keeps its counter.
	if _, err := s.Apply([]registry.PoolSpec{pool("app", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetHealth(down, registry.HealthUp, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backend to come back", func() bool { return len(b.snap.Load().pools["app"].members) == 2 })
	if active, total := b.Counts(down); active != 1 || total != 1 {
		t.Errorf("Counts(%v) after reload = %d, %d; want 1, 1", down, active, total)
	}
	held.Release()
	if active, _ := b.Counts(down); active != 0 {
		t.Errorf("active after Release = %d, want 0", active)
	}

	if _, err := s.SetDraining(down, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "draining backend to leave the snapshot", func() bool { return len(b.snap.Load().pools["app"].members) == 1 })
}

func BenchmarkAcquire(b *testing.B) { benchmarkAcquire(b, nil) }

// benchmarkAcquire measures Acquire and Release in parallel over pools of
// 3, 100 and 1000 backends under each policy; setup, if not nil, prepares
// the balancer of n backends first.
func benchmarkAcquire(b *testing.B, setup func(bal *Balancer, n int)) {
	for _, policy := range []string{PolicyLeastConnections, PolicyPowerOfTwo} {
		for _, n := range []int{3, 100, 1000} {
			b.Run(fmt.Sprintf("%s/backends=%d", policy, n), func(b *testing.B) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = 1
				}
				bal, _ := newBalancer(b, Options{}, withPolicy(pool("app", weights...), policy))
				if setup != nil {
					setup(bal, n)
				}
				b.ReportAllocs()
				b.ResetTimer() // the registry and snapshot are not what is measured
				b.RunParallel(func(pb *testing.PB) {
					var l Lease
					for pb.Next() {
						if err := bal.Acquire("app", nil, &l); err != nil {
							b.Error(err)
							return
						}
						l.Release()
					}
				})
			})
		}
	}
}

// pausingRand blocks in its first call until resume is closed. Acquire
// asks its Rand while choosing, after it has loaded the snapshot and before
// it counts the connection: pausing there lets a test change the registry
// in the window where an Acquire still works on the old snapshot.
type pausingRand struct {
	calls  atomic.Int32
	paused chan struct{} // closed by the first call
	resume chan struct{}
}

func newPausingRand() *pausingRand {
	return &pausingRand{paused: make(chan struct{}), resume: make(chan struct{})}
}

func (r *pausingRand) IntN(n int) int {
	if r.calls.Add(1) == 1 {
		close(r.paused)
		<-r.resume
	}
	return n - 1
}

// TestAcquireDuringRemoval: a backend is removed and added again while an
// Acquire that loaded the snapshot before the removal is still choosing.
// Its connection must be counted on the backend as it is now, not on a
// counter the removal dropped.
func TestAcquireDuringRemoval(t *testing.T) {
	for _, policy := range []string{PolicyLeastConnections, PolicyPowerOfTwo} {
		t.Run(policy, func(t *testing.T) {
			r := newPausingRand()
			b, s := newBalancer(t, Options{Rand: r}, withPolicy(pool("app", 1, 1), policy))
			type result struct {
				l   *Lease
				err error
			}
			done := make(chan result)
			go func() {
				l := new(Lease)
				err := b.Acquire("app", nil, l)
				done <- result{l, err}
			}()
			<-r.paused
			for _, spec := range []registry.PoolSpec{{Name: "app", Policy: policy}, withPolicy(pool("app", 1, 1), policy)} {
				if _, err := s.Apply([]registry.PoolSpec{spec}); err != nil {
					t.Fatal(err)
				}
				b.rebuild()
			}
			close(r.resume)
			res := <-done
			if res.err != nil {
				t.Fatalf("Acquire() error = %v", res.err)
			}
			defer res.l.Release()
			id := registry.ID{Pool: "app", Address: res.l.Address}
			if active, total := b.Counts(id); active != 1 || total != 1 {
				t.Errorf("Counts(%s) with the lease held = %d, %d; want 1, 1", res.l.Address, active, total)
			}
		})
	}
}

// TestCountsSurviveChurn runs Acquire and Release while backends are
// removed and added back, and checks that every held lease is counted on
// its backend: right after each Acquire and at the end. Run it with -race.
func TestCountsSurviveChurn(t *testing.T) {
	const workers, flips = 4, 300
	b, s := newBalancer(t, Options{}, pool("app", 1, 1, 1, 1))
	full := []registry.PoolSpec{pool("app", 1, 1, 1, 1)}
	half := []registry.PoolSpec{pool("app", 1, 1)}

	stop := make(chan struct{})
	last := make([]*Lease, workers) // the lease each worker holds at the end
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var held *Lease
			for {
				select {
				case <-stop:
					last[w] = held
					return
				default:
				}
				l := new(Lease)
				if err := b.Acquire("app", nil, l); err != nil {
					t.Errorf("Acquire() error = %v", err)
					return
				}
				if active, _ := b.Counts(registry.ID{Pool: "app", Address: l.Address}); active < 1 {
					t.Errorf("Counts(%s) right after Acquire = %d, want at least 1", l.Address, active)
				}
				if held != nil {
					held.Release()
				}
				held = l
			}
		})
	}
	for range flips {
		for _, specs := range [][]registry.PoolSpec{half, full} {
			if _, err := s.Apply(specs); err != nil {
				t.Fatal(err)
			}
			b.rebuild()
		}
	}
	close(stop)
	wg.Wait()

	want := map[string]int64{}
	for _, l := range last {
		if l != nil {
			want[l.Address]++
		}
	}
	for _, be := range full[0].Backends {
		if active, _ := b.Counts(registry.ID{Pool: "app", Address: be.Address}); active != want[be.Address] {
			t.Errorf("Counts(%s) at the end = %d, want %d (the leases held)", be.Address, active, want[be.Address])
		}
	}
}

// Connections an older process of a binary upgrade still holds count in
// the load, for both policies, and are handed on with this process's own.
func TestInheritedCountsInTheLoad(t *testing.T) {
	for _, policy := range []string{PolicyLeastConnections, PolicyPowerOfTwo} {
		t.Run(policy, func(t *testing.T) {
			ps := pool("app", 1, 1)
			ps.Policy = policy
			b, _ := newBalancer(t, Options{}, ps)
			full := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
			b.SetInherited(map[registry.ID]int64{full: 6})
			for i := range 6 {
				if l := acquire(t, b, "app"); l.Address == full.Address {
					t.Fatalf("Acquire() #%d went to the backend an older process fills", i)
				}
			}
			if got := b.Held(); got[full] != 6 || got[registry.ID{Pool: "app", Address: "127.0.0.1:9002"}] != 6 {
				t.Errorf("Held() = %v, want 6 each (6 inherited, 6 own)", got)
			}
			if active, _ := b.Counts(full); active != 0 || b.Inherited(full) != 6 {
				t.Errorf("Counts() active %d, Inherited() %d; want 0 and 6: inherited is not this process's", active, b.Inherited(full))
			}
			// The older process has ended: its connections no longer count.
			b.SetInherited(nil)
			if got := b.Held(); got[full] != 0 {
				t.Errorf("Held() after the older process ended = %v", got)
			}
		})
	}
}
