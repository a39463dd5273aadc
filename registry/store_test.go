package registry

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// watchFired reports whether ch closes within a short bound.
func watchFired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}

func newStore(t *testing.T, pools ...PoolSpec) *Store {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if len(pools) > 0 {
		if _, err := s.Apply(pools); err != nil {
			t.Fatalf("Apply() error = %v", err)
		}
	}
	return s
}

func TestSchema(t *testing.T) {
	if err := schema().Validate(); err != nil {
		t.Fatalf("schema().Validate() = %v", err)
	}
	s := newStore(t, PoolSpec{Name: "app", Backends: []BackendSpec{{Address: "127.0.0.1:1", Weight: 1}}})
	txn := s.db.Txn(false)
	for _, tc := range []struct {
		table, index string
		args         []any
	}{
		{tableBackends, indexID, []any{"app", "127.0.0.1:1"}},
		{tableBackends, indexPool, []any{"app"}},
		{tablePools, indexID, []any{"app"}},
		{tableMeta, indexID, []any{metaGeneration}},
	} {
		obj, err := txn.First(tc.table, tc.index, tc.args...)
		if err != nil || obj == nil {
			t.Errorf("First(%s, %s, %v) = %v, %v; want a record", tc.table, tc.index, tc.args, obj, err)
		}
	}
}

func TestApplyKeepsStateOfUnchangedBackends(t *testing.T) {
	s := newStore(t, PoolSpec{Name: "app", Backends: []BackendSpec{
		{Address: "127.0.0.1:1", Weight: 1},
		{Address: "127.0.0.1:2", Weight: 1},
	}})
	a := ID{Pool: "app", Address: "127.0.0.1:1"}
	if _, err := s.SetHealth(a, HealthDown, "connection refused"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDraining(ID{Pool: "app", Address: "127.0.0.1:2"}, true); err != nil {
		t.Fatal(err)
	}

	gen, err := s.Apply([]PoolSpec{{Name: "app", Backends: []BackendSpec{
		{Address: "127.0.0.1:1", Weight: 3},
		{Address: "127.0.0.1:3", Weight: 1},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if gen != 2 || s.Generation() != 2 {
		t.Errorf("generation = %d, %d; want 2", gen, s.Generation())
	}
	got, _ := s.PoolBackends("app")
	want := []Backend{
		{Pool: "app", Address: "127.0.0.1:1", Weight: 3, Health: HealthDown, HealthReason: "connection refused", Configured: true},
		{Pool: "app", Address: "127.0.0.1:3", Weight: 1, Configured: true},
	}
	if len(got) != len(want) {
		t.Fatalf("PoolBackends() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("PoolBackends()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestApplyRemovesPools(t *testing.T) {
	s := newStore(t,
		PoolSpec{Name: "a", Backends: []BackendSpec{{Address: "127.0.0.1:1"}}},
		PoolSpec{Name: "b", Backends: []BackendSpec{{Address: "127.0.0.1:1"}}},
	)
	if _, err := s.Apply([]PoolSpec{{Name: "b", Backends: []BackendSpec{{Address: "127.0.0.1:1"}}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Pools(); len(got) != 1 || got[0].Name != "b" {
		t.Errorf("Pools() = %v, want [b]", got)
	}
	all, _ := s.Backends()
	if len(all) != 1 || all[0].Pool != "b" || all[0].Weight != 1 {
		t.Errorf("Backends() = %+v, want one backend in b with weight 1", all)
	}
}

func TestWatch(t *testing.T) {
	s := newStore(t,
		PoolSpec{Name: "a", Backends: []BackendSpec{{Address: "127.0.0.1:1"}}},
		PoolSpec{Name: "b", Backends: []BackendSpec{{Address: "127.0.0.1:2"}}},
	)
	_, all := s.Backends()
	_, poolA := s.PoolBackends("a")
	_, poolB := s.PoolBackends("b")

	// Writing the same state again is not a change.
	if changed, err := s.SetHealth(ID{Pool: "a", Address: "127.0.0.1:1"}, HealthUnknown, ""); err != nil || changed {
		t.Fatalf("SetHealth(same) = %v, %v; want false, nil", changed, err)
	}
	if watchFired(all) {
		t.Fatal("watch fired without a change")
	}
	if changed, err := s.SetHealth(ID{Pool: "a", Address: "127.0.0.1:1"}, HealthUp, "status 200"); err != nil || !changed {
		t.Fatalf("SetHealth() = %v, %v; want true, nil", changed, err)
	}
	if !watchFired(all) {
		t.Error("Backends() watch did not fire on a health change")
	}
	if !watchFired(poolA) {
		t.Error("PoolBackends(a) watch did not fire on a change in a")
	}
	if watchFired(poolB) {
		t.Error("PoolBackends(b) watch fired on a change in a")
	}
}

func TestNotFound(t *testing.T) {
	s := newStore(t)
	id := ID{Pool: "x", Address: "127.0.0.1:1"}
	if _, err := s.SetDraining(id, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDraining(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.Backend(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Backend(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestState(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Backend
		want State
	}{
		{"unknown is healthy", Backend{}, StateHealthy},
		{"up", Backend{Health: HealthUp}, StateHealthy},
		{"down", Backend{Health: HealthDown}, StateUnhealthy},
		{"draining wins", Backend{Health: HealthDown, Draining: true}, StateDraining},
		{"pending is unhealthy", Backend{Health: HealthPending}, StateUnhealthy},
		{"vanished drains", Backend{Health: HealthUp, Vanished: true}, StateDraining},
		{"vanished and pending drains", Backend{Health: HealthPending, Vanished: true}, StateDraining},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.State(); got != tc.want {
				t.Errorf("State() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestApplyPool: a reload writes a pool whose check, policy, slow start
// or discovery changed, and leaves an unchanged one alone (its watchers
// stay asleep).
func TestApplyPool(t *testing.T) {
	check := &HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 2, UnhealthyThreshold: 2}
	ready := *check
	ready.Path = "/ready"
	backends := []BackendSpec{{Address: "127.0.0.1:1"}}
	srv := Discover{Name: "_ws._tcp.app.example", Type: "SRV", Interval: time.Second}
	a := Discover{Name: "app.example", Type: "A", Port: 9001, Interval: time.Second}
	s := newStore(t, PoolSpec{Name: "a", Backends: backends, Check: check})
	steps := []struct {
		desc  string
		spec  PoolSpec
		fires bool
	}{
		{"same check again", PoolSpec{Name: "a", Backends: backends, Check: check}, false},
		{"other check", PoolSpec{Name: "a", Backends: backends, Check: &ready}, true},
		{"policy set", PoolSpec{Name: "a", Backends: backends, Check: &ready, Policy: "power_of_two"}, true},
		{"same policy again", PoolSpec{Name: "a", Backends: backends, Check: &ready, Policy: "power_of_two"}, false},
		{"policy left out", PoolSpec{Name: "a", Backends: backends, Check: &ready}, true},
		{"slow start set", PoolSpec{Name: "a", Backends: backends, Check: &ready, SlowStart: time.Minute}, true},
		{"same slow start again", PoolSpec{Name: "a", Backends: backends, Check: &ready, SlowStart: time.Minute}, false},
		{"slow start changed", PoolSpec{Name: "a", Backends: backends, Check: &ready, SlowStart: time.Second}, true},
		{"slow start left out", PoolSpec{Name: "a", Backends: backends, Check: &ready}, true},
		{"check removed", PoolSpec{Name: "a", Backends: backends}, true},
		{"discover set", PoolSpec{Name: "a", Backends: backends, Discover: &srv}, true},
		{"same discover again", PoolSpec{Name: "a", Backends: backends, Discover: &srv}, false},
		{"other discover", PoolSpec{Name: "a", Backends: backends, Discover: &a}, true},
		{"discover removed", PoolSpec{Name: "a", Backends: backends}, true},
	}
	for _, st := range steps {
		_, changed := s.Pools()
		if _, err := s.Apply([]PoolSpec{st.spec}); err != nil {
			t.Fatalf("%s: Apply() error = %v", st.desc, err)
		}
		if got := watchFired(changed); got != st.fires {
			t.Errorf("%s: Pools() watch fired = %v, want %v", st.desc, got, st.fires)
		}
		pools, _ := s.Pools()
		if len(pools) != 1 {
			t.Fatalf("%s: Pools() = %+v, want pool a only", st.desc, pools)
		}
		got := pools[0]
		if got.Policy != st.spec.Policy || got.SlowStart != st.spec.SlowStart || !equalPtr(got.Check, st.spec.Check) || !equalPtr(got.Discover, st.spec.Discover) {
			t.Errorf("%s: Pools()[0] = %+v (check %+v, discover %+v), want policy %q, slow start %v, check %+v, discover %+v",
				st.desc, got, got.Check, got.Discover, st.spec.Policy, st.spec.SlowStart, st.spec.Check, st.spec.Discover)
		}
	}
}

// BenchmarkWriteTxn measures one registry write (a health flip), the cost a
// per-connection counter would pay if it lived in go-memdb instead of an
// atomic in the balancer (compare BenchmarkAcquire in balancer).
func BenchmarkWriteTxn(b *testing.B) {
	s, err := New()
	if err != nil {
		b.Fatal(err)
	}
	var backends []BackendSpec
	for i := range 100 {
		backends = append(backends, BackendSpec{Address: fmt.Sprintf("127.0.0.1:%d", 9000+i), Weight: 1})
	}
	if _, err := s.Apply([]PoolSpec{{Name: "app", Backends: backends}}); err != nil {
		b.Fatal(err)
	}
	id := ID{Pool: "app", Address: "127.0.0.1:9042"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h := HealthUp
		if i%2 == 0 {
			h = HealthDown
		}
		if _, err := s.SetHealth(id, h, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
