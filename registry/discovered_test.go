package registry

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var (
	testCheck    = &HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 2, UnhealthyThreshold: 2}
	testDiscover = &Discover{Name: "app.example", Type: "A", Port: 9001, Interval: time.Second}
)

// discoveredPool is a pool with one configured backend, a health check and
// DNS discovery.
func discoveredPool() PoolSpec {
	return PoolSpec{Name: "app", Backends: []BackendSpec{{Address: "10.0.0.1:9001"}}, Check: testCheck, Discover: testDiscover}
}

func specs(addrs ...string) []BackendSpec {
	out := make([]BackendSpec, len(addrs))
	for i, a := range addrs {
		out[i] = BackendSpec{Address: a}
	}
	return out
}

func never(ID) bool  { return false }
func always(ID) bool { return true }

func mustSetDiscovered(t *testing.T, s *Store, found []BackendSpec, idle func(ID) bool) DiscoveryChange {
	t.Helper()
	ch, err := s.SetDiscovered("app", found, idle)
	if err != nil {
		t.Fatalf("SetDiscovered(%v) error = %v", found, err)
	}
	return ch
}

func mustBackend(t *testing.T, s *Store, addr string) Backend {
	t.Helper()
	b, err := s.Backend(ID{Pool: "app", Address: addr})
	if err != nil {
		t.Fatalf("Backend(%s) error = %v", addr, err)
	}
	return b
}

func checkChange(t *testing.T, step string, got, want DiscoveryChange) {
	t.Helper()
	if !slices.Equal(got.Added, want.Added) || !slices.Equal(got.Returned, want.Returned) ||
		!slices.Equal(got.Vanished, want.Vanished) || !slices.Equal(got.Removed, want.Removed) {
		t.Errorf("%s: SetDiscovered() = %+v, want %+v", step, got, want)
	}
}

// A discovered backend's life: added pending, served once up, drained when
// it vanishes, back with its health when found again, deleted once idle.
func TestSetDiscoveredLifecycle(t *testing.T) {
	s := newStore(t, discoveredPool())
	const b, c = "10.0.0.2:9001", "10.0.0.3:9001"

	_, watch := s.PoolBackends("app")
	ch := mustSetDiscovered(t, s, specs(b, c), never)
	checkChange(t, "first answer", ch, DiscoveryChange{Added: []string{b, c}})
	if !watchFired(watch) {
		t.Error("PoolBackends watch did not fire on discovered backends")
	}
	got := mustBackend(t, s, b)
	want := Backend{Pool: "app", Address: b, Weight: 1, Health: HealthPending, HealthReason: PendingReason, Discovered: true}
	if got != want {
		t.Errorf("new discovered backend = %+v, want %+v", got, want)
	}
	if got.Available() || got.State() != StateUnhealthy {
		t.Errorf("pending backend: Available() = %v, State() = %v; want false, unhealthy", got.Available(), got.State())
	}

	// The same answer again changes nothing and wakes nobody.
	_, watch = s.PoolBackends("app")
	if ch := mustSetDiscovered(t, s, specs(c, b), never); !ch.Empty() {
		t.Errorf("same answer: SetDiscovered() = %+v, want no change", ch)
	}
	if watchFired(watch) {
		t.Error("watch fired for an unchanged answer")
	}

	if _, err := s.SetHealth(ID{Pool: "app", Address: b}, HealthUp, "probe passed"); err != nil {
		t.Fatal(err)
	}
	if !mustBackend(t, s, b).Available() {
		t.Fatal("discovered backend not available once up")
	}

	ch = mustSetDiscovered(t, s, specs(c), never)
	checkChange(t, "b gone, busy", ch, DiscoveryChange{Vanished: []string{b}})
	got = mustBackend(t, s, b)
	if !got.Vanished || got.Discovered || got.Available() || got.State() != StateDraining || got.Health != HealthUp {
		t.Errorf("vanished backend = %+v (state %v); want vanished, draining, health kept", got, got.State())
	}

	ch = mustSetDiscovered(t, s, specs(b, c), never)
	checkChange(t, "b back", ch, DiscoveryChange{Returned: []string{b}})
	if got := mustBackend(t, s, b); !got.Available() || got.Health != HealthUp {
		t.Errorf("returned backend = %+v; want available with its health", got)
	}

	mustSetDiscovered(t, s, specs(c), never)
	ch = mustSetDiscovered(t, s, specs(c), never)
	checkChange(t, "b still busy", ch, DiscoveryChange{})
	var asked []ID
	ch = mustSetDiscovered(t, s, specs(c), func(id ID) bool { asked = append(asked, id); return true })
	checkChange(t, "b idle", ch, DiscoveryChange{Removed: []string{b}})
	if want := []ID{{Pool: "app", Address: b}}; !slices.Equal(asked, want) {
		t.Errorf("idle asked about %v, want %v (vanished backends only)", asked, want)
	}
	if _, err := s.Backend(ID{Pool: "app", Address: b}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Backend(removed) error = %v, want ErrNotFound", err)
	}

	// Vanishing while idle deletes at once; a nil idle never deletes.
	ch = mustSetDiscovered(t, s, nil, nil)
	checkChange(t, "c gone, nil idle", ch, DiscoveryChange{Vanished: []string{c}})
	ch = mustSetDiscovered(t, s, specs(b), always)
	checkChange(t, "b new again, c idle", ch, DiscoveryChange{Added: []string{b}, Removed: []string{c}})
	if got := mustBackend(t, s, b); got.Health != HealthPending {
		t.Errorf("backend discovered again after removal: health %v, want pending (probed again)", got.Health)
	}
}

// An address both configured and discovered follows the config: it never
// vanishes while listed, and keeps the configured weight.
func TestSetDiscoveredConfiguredBackend(t *testing.T) {
	s := newStore(t, discoveredPool())
	const a = "10.0.0.1:9001"
	if _, err := s.SetHealth(ID{Pool: "app", Address: a}, HealthUp, "probe passed"); err != nil {
		t.Fatal(err)
	}
	ch := mustSetDiscovered(t, s, []BackendSpec{{Address: a, Weight: 7}}, always)
	checkChange(t, "configured found", ch, DiscoveryChange{})
	got := mustBackend(t, s, a)
	if !got.Configured || !got.Discovered || got.Weight != 1 || got.Health != HealthUp {
		t.Errorf("configured and found = %+v; want configured, discovered, weight 1, health up", got)
	}
	ch = mustSetDiscovered(t, s, nil, always)
	checkChange(t, "configured not found", ch, DiscoveryChange{})
	got = mustBackend(t, s, a)
	if got.Discovered || got.Vanished || !got.Available() {
		t.Errorf("configured and no longer found = %+v; want it serving, neither discovered nor vanished", got)
	}
}

// SRV weights apply to discovered backends, and change with the records.
func TestSetDiscoveredWeights(t *testing.T) {
	s := newStore(t, discoveredPool())
	const b = "10.0.0.2:9001"
	mustSetDiscovered(t, s, []BackendSpec{{Address: b, Weight: 3}}, never)
	if got := mustBackend(t, s, b).Weight; got != 3 {
		t.Errorf("weight = %d, want 3", got)
	}
	_, watch := s.PoolBackends("app")
	mustSetDiscovered(t, s, []BackendSpec{{Address: b, Weight: 0}}, never)
	if got := mustBackend(t, s, b).Weight; got != DefaultWeight {
		t.Errorf("weight 0 = %d, want %d", got, DefaultWeight)
	}
	if !watchFired(watch) {
		t.Error("watch did not fire on a weight change")
	}
}

// In a pool without a health check nothing would ever probe a pending
// backend: discovered ones start unknown, which serves.
func TestSetDiscoveredWithoutCheck(t *testing.T) {
	p := discoveredPool()
	p.Check = nil
	s := newStore(t, p)
	mustSetDiscovered(t, s, specs("10.0.0.2:9001"), never)
	if got := mustBackend(t, s, "10.0.0.2:9001"); got.Health != HealthUnknown || got.HealthReason != "" || !got.Available() {
		t.Errorf("discovered without a check = %+v; want unknown and available", got)
	}
}

func TestSetDiscoveredNotDiscovering(t *testing.T) {
	p := discoveredPool()
	p.Discover = nil
	s := newStore(t, p)
	for _, pool := range []string{"app", "nope"} {
		if _, err := s.SetDiscovered(pool, specs("10.0.0.2:9001"), never); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetDiscovered(%s) error = %v, want ErrNotFound", pool, err)
		}
	}
	if got, _ := s.PoolBackends("app"); len(got) != 1 {
		t.Errorf("PoolBackends() = %+v, want the configured backend only", got)
	}
}

// A reload keeps what discovery holds, with its state, while the pool still
// discovers; it is discovery that drops addresses.
func TestApplyKeepsDiscovered(t *testing.T) {
	s := newStore(t, discoveredPool())
	const a, b, c = "10.0.0.1:9001", "10.0.0.2:9001", "10.0.0.3:9001"
	mustSetDiscovered(t, s, specs(a, b, c), never)
	if _, err := s.SetHealth(ID{Pool: "app", Address: b}, HealthUp, "probe passed"); err != nil {
		t.Fatal(err)
	}
	mustSetDiscovered(t, s, specs(a, b), never) // c vanishes, busy

	// Same config: nothing discovered changes.
	if _, err := s.Apply([]PoolSpec{discoveredPool()}); err != nil {
		t.Fatal(err)
	}
	if got := mustBackend(t, s, b); got.Health != HealthUp || !got.Discovered || !got.Available() {
		t.Errorf("after reload, discovered b = %+v; want up, discovered, available", got)
	}
	if got := mustBackend(t, s, c); !got.Vanished || got.State() != StateDraining {
		t.Errorf("after reload, vanished c = %+v; want still draining", got)
	}

	// The config drops a (still discovered) and lists c (vanished).
	p := discoveredPool()
	p.Backends = specs(c)
	if _, err := s.Apply([]PoolSpec{p}); err != nil {
		t.Fatal(err)
	}
	if got := mustBackend(t, s, a); got.Configured || !got.Discovered || !got.Available() {
		t.Errorf("unlisted but discovered a = %+v; want kept as discovered only", got)
	}
	if got := mustBackend(t, s, c); !got.Configured || got.Vanished || got.State() == StateDraining {
		t.Errorf("listed c = %+v; want configured, no longer draining", got)
	}

	// Discovery removed from the pool: what only it held goes, as a
	// backend removed from the config does.
	p.Discover = nil
	if _, err := s.Apply([]PoolSpec{p}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.PoolBackends("app")
	if len(got) != 1 || got[0].Address != c {
		t.Errorf("PoolBackends() after discover removed = %+v, want only the configured %s", got, c)
	}
}
