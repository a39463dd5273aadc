package discovery

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

// count returns how many records of level have msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level && r.Message == msg {
			n++
		}
	}
	return n
}

// attr returns the value of key in the last record with msg.
func (l *logRecorder) attr(msg, key string) slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v slog.Value
	for _, r := range l.recs {
		if r.Message == msg {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == key {
					v = a.Value
				}
				return true
			})
		}
	}
	return v
}

// lookups is an Observer that counts failed and empty lookups.
type lookups struct {
	mu          sync.Mutex
	errs, empty int
}

func (o *lookups) LookupDone(l *Lookup) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case l.Err != nil:
		o.errs++
	case l.Empty:
		o.empty++
	}
}

func (o *lookups) tally() (errs, empty int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errs, o.empty
}

// connections is a Counter whose active counts the test sets.
type connections struct {
	mu     sync.Mutex
	active map[string]int64
}

func (c *connections) Counts(id registry.ID) (int64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[id.Address], 0
}

func (c *connections) set(addr string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active[addr] = n
}

var testCheck = &registry.HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 2, UnhealthyThreshold: 2}

func discoverSpec(interval time.Duration) *registry.Discover {
	return &registry.Discover{Name: "app.test", Type: TypeA, Port: 9001, Interval: interval}
}

// startDiscoverer applies pools to a new registry and runs a Discoverer
// over it with r, inside the current synctest bubble. stop ends Run and
// checks that it returned nil.
func startDiscoverer(t *testing.T, r Resolver, opts Options, pools ...registry.PoolSpec) (store *registry.Store, stop func()) {
	t.Helper()
	store = newRegistry(t, pools...)
	opts.Resolver = r
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := New(store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	return store, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}
}

// newRegistry returns a registry holding pools.
func newRegistry(t *testing.T, pools ...registry.PoolSpec) *registry.Store {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(pools); err != nil {
		t.Fatal(err)
	}
	return store
}

// discovered returns the addresses of pool's backends that discovery found
// and those that vanished (draining).
func discovered(store *registry.Store, pool string) (found, vanished []string) {
	bs, _ := store.PoolBackends(pool)
	for _, b := range bs {
		switch {
		case b.Discovered:
			found = append(found, b.Address)
		case b.Vanished:
			vanished = append(vanished, b.Address)
		}
	}
	return found, vanished
}

// The name is resolved at once, then every interval, or every TTL when
// that is shorter, but never more often than MinRefresh (unless the
// interval asks for it); failures wait the interval.
func TestWatchTiming(t *testing.T) {
	s := func(secs ...float64) []time.Duration {
		out := make([]time.Duration, len(secs))
		for i, v := range secs {
			out[i] = time.Duration(v * float64(time.Second))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		interval time.Duration
		ttl      time.Duration
		err      error
		want     []time.Duration
	}{
		{"every interval without a TTL", 2 * time.Second, 0, nil, s(0, 2, 4, 6, 8, 10)},
		{"a shorter TTL", 5 * time.Second, 2 * time.Second, nil, s(0, 2, 4, 6, 8, 10)},
		{"a longer TTL", 4 * time.Second, time.Minute, nil, s(0, 4, 8)},
		{"a TTL below MinRefresh", 3 * time.Second, 300 * time.Millisecond, nil, s(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
		{"failures wait the interval", 3 * time.Second, 0, errTimeout, s(0, 3, 6, 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var mu sync.Mutex
				var at []time.Duration
				r := ResolverFunc(func(context.Context, Question) (Answer, error) {
					mu.Lock()
					defer mu.Unlock()
					at = append(at, time.Since(start))
					return Answer{Records: []Record{addr("10.0.0.1")}, TTL: tc.ttl}, tc.err
				})
				_, stop := startDiscoverer(t, r, Options{}, registry.PoolSpec{Name: "app", Check: testCheck, Discover: discoverSpec(tc.interval)})
				time.Sleep(10*time.Second + time.Millisecond)
				stop()
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(at, tc.want) {
					t.Errorf("lookups at %v, want %v", at, tc.want)
				}
			})
		})
	}
}

func TestShortIntervalIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		n := 0
		r := ResolverFunc(func(context.Context, Question) (Answer, error) {
			mu.Lock()
			defer mu.Unlock()
			n++
			return Answer{Records: []Record{addr("10.0.0.1")}, TTL: 100 * time.Millisecond}, nil
		})
		_, stop := startDiscoverer(t, r, Options{}, registry.PoolSpec{Name: "app", Check: testCheck, Discover: discoverSpec(200 * time.Millisecond)})
		time.Sleep(time.Second + time.Millisecond)
		stop()
		mu.Lock()
		defer mu.Unlock()
		if n != 6 {
			t.Errorf("%d lookups in 1s with interval 200ms, want 6 (MinRefresh bounds TTLs, not the interval)", n)
		}
	})
}

// A failing or empty lookup keeps the last answer in force; each streak
// is logged once as it starts and once as it ends, and every one is
// observed.
func TestFailuresKeepTheLastAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		z := newZone()
		z.set("app.test", TypeA, 0, addr("10.0.0.1"), addr("10.0.0.2"))
		logs := &logRecorder{}
		obs := &lookups{}
		conns := &connections{active: map[string]int64{"10.0.0.1:9001": 1}}
		store, stop := startDiscoverer(t, z, Options{Logger: slog.New(logs), Observer: obs, Connections: conns},
			registry.PoolSpec{Name: "app", Check: testCheck, Discover: discoverSpec(time.Second)})
		defer stop()
		both := []string{"10.0.0.1:9001", "10.0.0.2:9001"}

		steps := []struct {
			desc          string
			change        func()
			found, gone   []string
			errs, empty   int
			warnFailed    int
			warnEmpty     int
			infoRecovered int
		}{
			{"first answer", func() {}, both, nil, 0, 0, 0, 0, 0},
			{"server gone", func() { z.fail("app.test", TypeA, errTimeout) }, both, nil, 1, 0, 1, 0, 0},
			{"still gone", func() {}, both, nil, 2, 0, 1, 0, 0},
			{"empty answer", func() { z.set("app.test", TypeA, 0) }, both, nil, 2, 1, 1, 1, 0},
			{"still empty", func() {}, both, nil, 2, 2, 1, 1, 0},
			{"one address left", func() { z.set("app.test", TypeA, 0, addr("10.0.0.2")) }, both[1:], both[:1], 2, 2, 1, 1, 1},
			{"its connection still open", func() {}, both[1:], both[:1], 2, 2, 1, 1, 1},
			{"its connection ended", func() { conns.set("10.0.0.1:9001", 0) }, both[1:], nil, 2, 2, 1, 1, 1},
		}
		for i, st := range steps {
			st.change()
			if i > 0 {
				time.Sleep(time.Second)
			}
			synctest.Wait()
			found, gone := discovered(store, "app")
			if !slices.Equal(found, st.found) || !slices.Equal(gone, st.gone) {
				t.Errorf("%s: discovered %v, vanished %v; want %v, %v", st.desc, found, gone, st.found, st.gone)
			}
			if errs, empty := obs.tally(); errs != st.errs || empty != st.empty {
				t.Errorf("%s: observed %d errors, %d empty answers; want %d, %d", st.desc, errs, empty, st.errs, st.empty)
			}
			for _, l := range []struct {
				level slog.Level
				msg   string
				want  int
			}{
				{slog.LevelWarn, "dns lookup failed; keeping the last answer", st.warnFailed},
				{slog.LevelWarn, "dns answer empty; keeping the last answer", st.warnEmpty},
				{slog.LevelInfo, "dns lookup recovered", st.infoRecovered},
			} {
				if got := logs.count(l.level, l.msg); got != l.want {
					t.Errorf("%s: %d records %q at %v, want %d", st.desc, got, l.msg, l.level, l.want)
				}
			}
		}
		if got := logs.attr("dns lookup recovered", keyFailures).Int64(); got != 4 {
			t.Errorf("recovered after %d failures, want 4", got)
		}
		if got := logs.attr("dns lookup recovered", keyDuration).Duration(); got != 4*time.Second {
			t.Errorf("recovered after %v, want 4s", got)
		}
		if got := logs.attr("dns lookup failed; keeping the last answer", keyBackends).Int64(); got != 2 {
			t.Errorf("failure logged keeping %d backends, want 2", got)
		}
		if got := logs.attr("backend vanished from dns; draining", keyConns).Int64(); got != 1 {
			t.Errorf("vanished backend logged with %d connections, want 1", got)
		}
		for _, msg := range []string{"backend discovered", "backend vanished from dns; draining", "vanished backend removed"} {
			if logs.count(slog.LevelInfo, msg) == 0 {
				t.Errorf("no record %q", msg)
			}
		}
	})
}

// Run follows the registry: a reload that changes a pool's discover
// restarts its watcher, which keeps the answer in force until it has one
// of its own; one that removes it stops the watcher; a new pool gets one.
func TestRunFollowsReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		z := newZone()
		z.set("app.test", TypeA, 0, addr("10.0.0.1"))
		z.set("other.test", TypeA, 0, addr("10.0.0.9"))
		pool := registry.PoolSpec{Name: "app", Check: testCheck, Discover: discoverSpec(time.Second)}
		store, stop := startDiscoverer(t, z, Options{}, pool)
		defer stop()
		asked := func(name string) int {
			z.mu.Lock()
			defer z.mu.Unlock()
			n := 0
			for _, q := range z.asked {
				if q.Name == name {
					n++
				}
			}
			return n
		}
		synctest.Wait()
		if found, _ := discovered(store, "app"); !slices.Equal(found, []string{"10.0.0.1:9001"}) {
			t.Fatalf("discovered %v, want 10.0.0.1:9001", found)
		}

		// A new interval restarts the watcher; its first lookup fails, and
		// what was found stays.
		z.fail("app.test", TypeA, errTimeout)
		before := asked("app.test")
		pool.Discover = discoverSpec(time.Hour)
		if _, err := store.Apply([]registry.PoolSpec{pool}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := asked("app.test"); n != before+1 {
			t.Errorf("after the reload, %d more lookups, want 1 at once", n-before)
		}
		if found, gone := discovered(store, "app"); !slices.Equal(found, []string{"10.0.0.1:9001"}) || len(gone) != 0 {
			t.Errorf("after a restart and a failure: discovered %v, vanished %v; want 10.0.0.1:9001 still found", found, gone)
		}

		// Another pool gets a watcher; app loses discovery, its watcher
		// stops, and the reload drops what only discovery held.
		other := registry.PoolSpec{Name: "other", Check: testCheck, Discover: &registry.Discover{Name: "other.test", Type: TypeA, Port: 80, Interval: time.Second}}
		pool.Discover = nil
		if _, err := store.Apply([]registry.PoolSpec{pool, other}); err != nil {
			t.Fatal(err)
		}
		before = asked("app.test")
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if n := asked("app.test"); n != before {
			t.Errorf("%d lookups of app.test after its pool stopped discovering, want none", n-before)
		}
		if bs, _ := store.PoolBackends("app"); len(bs) != 0 {
			t.Errorf("pool app backends = %+v, want none", bs)
		}
		if found, _ := discovered(store, "other"); !slices.Equal(found, []string{"10.0.0.9:80"}) {
			t.Errorf("pool other discovered %v, want 10.0.0.9:80", found)
		}
	})
}
