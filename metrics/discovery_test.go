package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/discovery"
	"github.com/wsgate/wsgate/registry"
)

// newDiscoveryMetrics returns Metrics over a registry holding pools app
// (one configured, checked backend) and dns (discovering, with a health check, no
// backend yet), as wsgate has them before the first lookup.
func newDiscoveryMetrics(t testing.TB) (*Metrics, *registry.Store) {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{
		{Name: "app", Check: check, Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}}},
		{Name: "dns", Check: check, Discover: &registry.Discover{Name: "app.test", Type: "A", Port: 9001, Interval: time.Second}},
	}); err != nil {
		t.Fatal(err)
	}
	return New(Options{Store: store, Balancer: balancer.New(store, balancer.Options{})}), store
}

func TestDiscoveryMetrics(t *testing.T) {
	m, store := newDiscoveryMetrics(t)
	expect := func(step, metric string, want map[string]float64) {
		t.Helper()
		got := gather(t, m, metric)
		if len(got) != len(want) {
			t.Errorf("%s: %s = %v, want %v", step, metric, got, want)
			return
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s: %s{%s} = %v, %v; want %v", step, metric, k, g, ok, v)
			}
		}
	}
	// From the start, for the discovering pool only.
	expect("start", "wsgate_discovery_errors_total", map[string]float64{"dns": 0})
	expect("start", "wsgate_discovery_empty_total", map[string]float64{"dns": 0})
	expect("start", "wsgate_discovery_backends", map[string]float64{"dns": 0})

	const a, b = "10.0.0.1:9001", "10.0.0.2:9001"
	if _, err := store.SetDiscovered("dns", []registry.BackendSpec{{Address: a}, {Address: b}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetHealth(registry.ID{Pool: "dns", Address: b}, registry.HealthUp, "probe passed"); err != nil {
		t.Fatal(err)
	}
	expect("discovered", "wsgate_discovery_backends", map[string]float64{"dns": 2})
	// a waits for its first probe: it is not healthy yet.
	expect("discovered", "wsgate_backend_healthy", map[string]float64{"app,127.0.0.1:9001": 1, "dns," + a: 0, "dns," + b: 1})

	if _, err := store.SetDiscovered("dns", []registry.BackendSpec{{Address: a}}, func(registry.ID) bool { return false }); err != nil {
		t.Fatal(err)
	}
	expect("b vanished", "wsgate_discovery_backends", map[string]float64{"dns": 1})
	expect("b vanished", "wsgate_backend_draining", map[string]float64{"app,127.0.0.1:9001": 0, "dns," + a: 0, "dns," + b: 1})

	for _, l := range []discovery.Lookup{
		{Pool: "dns", Err: errors.New("i/o timeout")},
		{Pool: "dns", Err: errors.New("SERVFAIL")},
		{Pool: "dns", Empty: true},
		{Pool: "dns"},
	} {
		m.LookupDone(&l)
	}
	expect("lookups", "wsgate_discovery_errors_total", map[string]float64{"dns": 2})
	expect("lookups", "wsgate_discovery_empty_total", map[string]float64{"dns": 1})
}
