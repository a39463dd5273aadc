package balancer

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// clock is a manual Options.Now for tests on one goroutine.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var policyNames = []string{PolicyLeastConnections, PolicyPowerOfTwo}

// setHealth sets a backend's health and rebuilds the snapshot.
func setHealth(t *testing.T, b *Balancer, s *registry.Store, id registry.ID, hs ...registry.Health) {
	t.Helper()
	for _, h := range hs {
		if _, err := s.SetHealth(id, h, "test"); err != nil {
			t.Fatal(err)
		}
		b.rebuild()
	}
}

func TestRampPercent(t *testing.T) {
	const w = 100 * time.Second
	tests := []struct {
		elapsed, window time.Duration
		want            int64
		step            time.Duration
	}{
		{0, w, rampFloor, 5 * time.Second},
		{w / 2, w, 55, 5 * time.Second},
		{w - time.Second, w, 99, time.Second}, // the last step ends with the window
		{w - 1, w, 99, 1},
		{w, w, rampScale, 0},
		{time.Hour, w, rampScale, 0},
		{-time.Second, w, rampFloor, 5 * time.Second}, // the clock stepped back
		{0, 0, rampScale, 0},                          // no slow start
		{0, time.Second, rampFloor, minRampStep},      // steps no shorter than minRampStep
	}
	for _, tc := range tests {
		if got := rampPercent(tc.elapsed, tc.window); got != tc.want {
			t.Errorf("rampPercent(%v, %v) = %d, want %d", tc.elapsed, tc.window, got, tc.want)
		}
		if got := rampStep(tc.elapsed, tc.window); got != tc.step {
			t.Errorf("rampStep(%v, %v) = %v, want %v", tc.elapsed, tc.window, got, tc.step)
		}
	}
	if got := effectiveWeight(1<<62, rampScale); got > maxWeight {
		t.Errorf("effectiveWeight(1<<62, full) = %d, above maxWeight", got)
	}
	if got := effectiveWeight(0, rampFloor); got != rampFloor {
		t.Errorf("effectiveWeight(0, floor) = %d, want %d (weight 1)", got, rampFloor)
	}
}

// stormSteps and stormPicks: a storm of new connections goes on through the
// whole window, stormPicks at each of its rampSteps steps.
const (
	stormWindow = 100 * time.Second
	stormPicks  = 15
	stormHeld   = 45 // connections on each of the two backends that stayed
)

// storm brings the third backend of a pool of three (addr(2)) back empty
// while the other two hold stormHeld connections each, then acquires
// stormPicks connections (and holds them) at each step of stormWindow. It
// returns how many of each step's went to the backend that came back, and
// checks at every pick that it never holds more than its share of the
// others' load, plus its one free connection.
func storm(t *testing.T, policy string, slowStart time.Duration) []int {
	t.Helper()
	clk := newClock()
	spec := withPolicy(pool("app", 1, 1, 1), policy)
	spec.SlowStart = slowStart
	b, s := newBalancer(t, Options{Rand: seeded(), Now: clk.Now}, spec)
	hold(t, b, "app", 3, 0, stormHeld)
	hold(t, b, "app", 3, 1, stormHeld)
	back := registry.ID{Pool: "app", Address: addr(2)}
	setHealth(t, b, s, back, registry.HealthDown)
	clk.Advance(time.Minute)
	setHealth(t, b, s, back, registry.HealthUp) // the storm starts now

	got := make([]int, rampSteps)
	for step := range rampSteps {
		if step > 0 {
			clk.Advance(stormWindow / rampSteps)
			b.rebuild()
		}
		share, _ := b.SlowStart(back)
		for range stormPicks {
			if l := acquire(t, b, "app"); l.Address == back.Address {
				got[step]++
			}
			a, o, c := active(b, addr(0)), active(b, addr(1)), active(b, back.Address)
			if limit := share*float64(max(a, o)) + 1; float64(c) > limit {
				t.Fatalf("step %d: the backend that came back holds %d connections at share %.2f while the others hold %d and %d; want at most %.1f",
					step, c, share, a, o, limit)
			}
		}
	}
	return got
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestSlowStartStorm: with slow start, the backend that comes back takes a
// bounded share of a storm of new connections, and a growing one (storm
// checks the bound at every pick); without, least connections sends it
// every new connection until it has caught up.
func TestSlowStartStorm(t *testing.T) {
	for _, policy := range policyNames {
		t.Run(policy, func(t *testing.T) {
			with := storm(t, policy, stormWindow)
			without := storm(t, policy, 0)
			t.Logf("picks of %d per step that went to the backend that came back:\n  slow_start %v: %v (first step %d/%d, total %d/%d)\n  slow_start off: %v (first step %d/%d, total %d/%d)",
				stormPicks, stormWindow, with, with[0], stormPicks, sum(with), rampSteps*stormPicks,
				without, without[0], stormPicks, sum(without), rampSteps*stormPicks)

			// The first quarter of the window takes less than the last.
			q := rampSteps / 4
			if first, last := sum(with[:q]), sum(with[rampSteps-q:]); first >= last {
				t.Errorf("with slow start: %d picks in the first quarter of the window, %d in the last; want its share to grow", first, last)
			}
			// The picks that least connections alone sends to it to
			// catch up.
			early := stormHeld / stormPicks
			if w, wo := sum(with[:early]), sum(without[:early]); w >= wo {
				t.Errorf("the first %d picks: %d went to the backend that came back with slow start, %d without; want fewer with", stormHeld, w, wo)
			}
			if policy == PolicyLeastConnections {
				// All of the first stormHeld picks, until it caught up.
				if n := sum(without[:stormHeld/stormPicks]); n != stormHeld {
					t.Errorf("without slow start: %d of the first %d picks went to the backend that came back, want all", n, stormHeld)
				}
			}
		})
	}
}

// TestSlowStartCatchesUp: right after coming back a backend takes its share
// of the other's load at the floor, then nothing; once its window has
// passed it has its full weight, and least connections fills it until it
// holds as many as the other.
func TestSlowStartCatchesUp(t *testing.T) {
	clk := newClock()
	spec := pool("app", 1, 1)
	spec.SlowStart = time.Minute
	b, s := newBalancer(t, Options{Now: clk.Now}, spec)
	hold(t, b, "app", 2, 0, 25)
	back := registry.ID{Pool: "app", Address: addr(1)}
	setHealth(t, b, s, back, registry.HealthDown, registry.HealthUp)
	// At 10% of its weight it is the least loaded while it holds less than
	// 2.5 connections: 0, 1 and 2.
	for i, want := range []string{addr(1), addr(1), addr(1), addr(0), addr(0)} {
		if l := acquire(t, b, "app"); l.Address != want {
			t.Fatalf("pick #%d after coming back = %s, want %s", i+1, l.Address, want)
		}
	}
	clk.Advance(time.Minute)
	if _, _, next := b.rebuild(); next != 0 {
		t.Errorf("rebuild() at the end of the window asks for another in %v, want none", next)
	}
	if share, until := b.SlowStart(back); share != 1 || !until.IsZero() {
		t.Errorf("SlowStart() after the window = %v, %v; want 1 and the zero time", share, until)
	}
	// 27 and 3: the next 24 go to it.
	for i := range 24 {
		if l := acquire(t, b, "app"); l.Address != back.Address {
			t.Fatalf("pick #%d after the window = %s, want %s until it has caught up", i+1, l.Address, back.Address)
		}
	}
	if a, c := active(b, addr(0)), active(b, back.Address); a != 27 || c != 27 {
		t.Errorf("active connections after catching up = %d and %d, want 27 each", a, c)
	}
}

// active returns the active connections on the backend at address of pool
// app.
func active(b *Balancer, address string) int64 {
	n, _ := b.Counts(registry.ID{Pool: "app", Address: address})
	return n
}

// TestSlowStartBegins: what starts a slow start and what does not, seen
// through Balancer.SlowStart.
func TestSlowStartBegins(t *testing.T) {
	const window = time.Minute
	type env struct {
		b   *Balancer
		s   *registry.Store
		clk *clock
	}
	id := registry.ID{Pool: "app", Address: addr(1)}
	health := func(t *testing.T, e env, hs ...registry.Health) {
		t.Helper()
		setHealth(t, e.b, e.s, id, hs...)
	}
	apply := func(t *testing.T, e env, spec registry.PoolSpec) {
		t.Helper()
		if _, err := e.s.Apply([]registry.PoolSpec{spec}); err != nil {
			t.Fatal(err)
		}
		e.b.rebuild()
	}
	slow := func(spec registry.PoolSpec, d time.Duration) registry.PoolSpec {
		spec.SlowStart = d
		return spec
	}
	tests := []struct {
		desc   string
		event  func(t *testing.T, e env)
		ramps  bool
		window time.Duration // the window reported, when it ramps
	}{
		{desc: "present from the start", event: func(*testing.T, env) {}},
		{desc: "healthy again", ramps: true, window: window, event: func(t *testing.T, e env) {
			health(t, e, registry.HealthDown)
			e.clk.Advance(time.Hour)
			health(t, e, registry.HealthUp)
		}},
		{desc: "health unknown again (check removed)", ramps: true, window: window, event: func(t *testing.T, e env) {
			health(t, e, registry.HealthDown, registry.HealthUnknown)
		}},
		{desc: "first probe passes", event: func(t *testing.T, e env) { health(t, e, registry.HealthUp) }},
		{desc: "undrained", ramps: true, window: window, event: func(t *testing.T, e env) {
			for _, d := range []bool{true, false} {
				if _, err := e.s.SetDraining(id, d); err != nil {
					t.Fatal(err)
				}
				e.b.rebuild()
			}
		}},
		{desc: "added by a reload", ramps: true, window: window, event: func(t *testing.T, e env) {
			apply(t, e, slow(pool("app", 1), window))
			apply(t, e, slow(pool("app", 1, 1), window))
		}},
		{desc: "removed while in use, then added back", ramps: true, window: window, event: func(t *testing.T, e env) {
			l := acquire(t, e.b, "app", addr(0)) // keeps its counter
			defer l.Release()
			apply(t, e, slow(pool("app", 1), window))
			apply(t, e, slow(pool("app", 1, 1), window))
		}},
		{desc: "weight changed by a reload", event: func(t *testing.T, e env) {
			apply(t, e, slow(pool("app", 1, 5), window))
		}},
		{desc: "window set by a reload while it ramps", ramps: true, window: 2 * window, event: func(t *testing.T, e env) {
			health(t, e, registry.HealthDown, registry.HealthUp)
			apply(t, e, slow(pool("app", 1, 1), 2*window))
		}},
		{desc: "slow start turned off while it ramps", event: func(t *testing.T, e env) {
			health(t, e, registry.HealthDown, registry.HealthUp)
			apply(t, e, slow(pool("app", 1, 1), 0))
		}},
		{desc: "down", event: func(t *testing.T, e env) { health(t, e, registry.HealthDown) }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			clk := newClock()
			b, s := newBalancer(t, Options{Now: clk.Now}, slow(pool("app", 1, 1), window))
			tc.event(t, env{b, s, clk})
			began := clk.Now()
			share, until := b.SlowStart(id)
			if !tc.ramps {
				if share != 1 || !until.IsZero() {
					t.Errorf("SlowStart() = %v, %v; want 1 and the zero time (no slow start)", share, until)
				}
				return
			}
			if share != 0.1 || !until.Equal(began.Add(tc.window)) {
				t.Errorf("SlowStart() = %v, %v; want 0.1 until %v", share, until, began.Add(tc.window))
			}
			clk.Advance(tc.window / 2)
			b.rebuild()
			if share, _ := b.SlowStart(id); share != 0.55 {
				t.Errorf("SlowStart() half way through = %v, want 0.55", share)
			}
		})
	}
}

// TestSlowStartRun: Run steps a ramp forward on its own, with nothing
// changing in the registry, and stops stepping when it is over.
func TestSlowStartRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		spec := pool("app", 1, 1)
		spec.SlowStart = window
		b, s := newBalancer(t, Options{}, spec)
		defer run(t, b)()

		id := registry.ID{Pool: "app", Address: addr(1)}
		for _, h := range []registry.Health{registry.HealthDown, registry.HealthUp} {
			if _, err := s.SetHealth(id, h, "test"); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		began := time.Now()
		for _, want := range []float64{0.10, 0.14, 0.19} {
			if share, until := b.SlowStart(id); share != want || !until.Equal(began.Add(window)) {
				t.Errorf("SlowStart() at %v = %v, %v; want %v until %v", time.Since(began), share, until, want, began.Add(window))
			}
			time.Sleep(window / rampSteps)
			synctest.Wait()
		}
		time.Sleep(window)
		synctest.Wait()
		if share, until := b.SlowStart(id); share != 1 || !until.IsZero() {
			t.Errorf("SlowStart() after the window = %v, %v; want 1 and the zero time", share, until)
		}
		// Nothing left to step: Run waits for the registry only, so a
		// snapshot stays as it is however long nothing changes.
		before := b.snap.Load()
		time.Sleep(time.Hour)
		synctest.Wait()
		if b.snap.Load() != before {
			t.Errorf("Run rebuilt the snapshot with no ramp and no registry change")
		}
	})
}

// TestSlowStartAllocs: a pool with a backend in slow start is picked from
// without allocating, like any other.
func TestSlowStartAllocs(t *testing.T) {
	for _, policy := range policyNames {
		t.Run(policy, func(t *testing.T) {
			clk := newClock()
			spec := withPolicy(pool("app", 1, 1, 1), policy)
			spec.SlowStart = time.Minute
			b, s := newBalancer(t, Options{Now: clk.Now}, spec)
			id := registry.ID{Pool: "app", Address: addr(2)}
			setHealth(t, b, s, id, registry.HealthDown, registry.HealthUp)
			if share, _ := b.SlowStart(id); share == 1 {
				t.Fatalf("SlowStart(%v) = 1, want it ramping", id)
			}
			checkNoAllocs(t, b, nil)
		})
	}
}
