package balancer

import (
	"testing"

	"github.com/wsgate/wsgate/registry"
)

func id(i int) registry.ID { return registry.ID{Pool: "app", Address: addr(i)} }

// TestReportedLoadBalancesTheTotal: the backends report 30, 30 and 0
// connections (another proxy's) while this process holds none. Least
// connections fills the third up to the others first, counting its own
// picks on top of the reports, then spreads evenly; Counts stays this
// process's own.
func TestReportedLoadBalancesTheTotal(t *testing.T) {
	b, _ := newBalancer(t, Options{Rand: seeded()}, pool("app", 1, 1, 1))
	for i, n := range []int64{30, 30, 0} {
		b.ReportLoad(id(i), n)
	}
	got := map[string]int{}
	for i := range 60 {
		l := acquire(t, b, "app")
		if i < 30 && l.Address != addr(2) {
			t.Fatalf("Acquire() #%d = %s, want %s (reported 0 against 30)", i, l.Address, addr(2))
		}
		got[l.Address]++
	}
	want := map[string]int{addr(0): 10, addr(1): 10, addr(2): 40}
	for i := range 3 {
		a := addr(i)
		if got[a] != want[a] {
			t.Errorf("%s got %d of 60, want %d (totals 40 each)", a, got[a], want[a])
		}
		if active, _ := b.Counts(id(i)); active != int64(want[a]) {
			t.Errorf("Counts(%s) active = %d, want this process's own %d", a, active, want[a])
		}
	}
	if n, ok := b.Reported(id(0)); n != 30 || !ok {
		t.Errorf("Reported(%s) = %d, %v; want 30, true", addr(0), n, ok)
	}
}

// TestLoadFigure follows one backend's load through reports, opens and
// closes.
func TestLoadFigure(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1))
	c := b.counter(id(0))
	for _, step := range []struct {
		desc   string
		do     func()
		want   int64
		wantOK bool // a report stands
	}{
		{"no report: own count", func() { c.active.Add(4) }, 4, false},
		{"report 10 with 4 own", func() { b.ReportLoad(id(0), 10) }, 10, true},
		{"3 opens since", func() { c.active.Add(3) }, 13, true},
		{"7 closes since", func() { c.active.Add(-7) }, 6, true},
		{"report 0 with none own", func() { b.ReportLoad(id(0), 0) }, 0, true},
		{"5 opens since", func() { c.active.Add(5) }, 5, true},
		{"report 0 with 5 own still in flight", func() { b.ReportLoad(id(0), 0) }, 0, true},
		{"their 5 closes: never below 0", func() { c.active.Add(-5) }, 0, true},
		{"negative report is 0", func() { b.ReportLoad(id(0), -8) }, 0, true},
		{"huge report is capped", func() { b.ReportLoad(id(0), 1<<40) }, maxLoad, true},
		{"capped with opens too", func() { c.active.Add(2) }, maxLoad, true},
		{"forgotten: own count again", func() { b.ForgetLoad(id(0)) }, 2, false},
		{"a new report", func() { b.ReportLoad(id(0), 7) }, 7, true},
	} {
		step.do()
		if got := c.load(); got != step.want {
			t.Errorf("%s: load() = %d, want %d", step.desc, got, step.want)
		}
		if _, ok := b.Reported(id(0)); ok != step.wantOK {
			t.Errorf("%s: Reported() ok = %v, want %v", step.desc, ok, step.wantOK)
		}
	}
	if active, _ := b.Counts(id(0)); active != 2 {
		t.Errorf("Counts() active = %d, want 2 (own, whatever was reported)", active)
	}
}

// After ForgetLoad the policies count this process's connections only.
func TestForgetLoad(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1, 1))
	b.ReportLoad(id(0), 100)
	hold(t, b, "app", 2, 1, 3)
	if l := acquire(t, b, "app"); l.Address != addr(1) {
		t.Fatalf("Acquire() with 100 reported on %s = %s, want %s", addr(0), l.Address, addr(1))
	}
	b.ForgetLoad(id(0))
	if n, ok := b.Reported(id(0)); ok {
		t.Errorf("Reported() after ForgetLoad = %d, true; want false", n)
	}
	for i := range 4 {
		if l := acquire(t, b, "app"); l.Address != addr(0) {
			t.Fatalf("Acquire() #%d after ForgetLoad = %s, want %s (0 own against 4)", i, l.Address, addr(0))
		}
	}
}

// A report for a backend the balancer has no counter for is dropped: it
// must not create one (rebuild would never drop it) nor stand for a
// backend added later.
func TestReportUnknownBackend(t *testing.T) {
	b, s := newBalancer(t, Options{}, pool("app", 1))
	b.ReportLoad(id(1), 5)
	b.ForgetLoad(id(1))
	if n := len(b.counters); n != 1 {
		t.Errorf("%d counters after reports on an unknown backend, want 1", n)
	}
	if _, err := s.Apply([]registry.PoolSpec{pool("app", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	b.rebuild()
	if n, ok := b.Reported(id(1)); ok {
		t.Errorf("Reported(%s) of a backend added after its report = %d, true; want false", addr(1), n)
	}
}

// A report belongs to the counter, so it survives a rebuild (a reload that
// keeps the backend) like the counts do.
func TestReportSurvivesRebuild(t *testing.T) {
	b, s := newBalancer(t, Options{}, pool("app", 1, 1))
	b.ReportLoad(id(0), 9)
	if _, err := s.Apply([]registry.PoolSpec{pool("app", 2, 1)}); err != nil {
		t.Fatal(err)
	}
	b.rebuild()
	if n, ok := b.Reported(id(0)); n != 9 || !ok {
		t.Errorf("Reported() after a rebuild = %d, %v; want 9, true", n, ok)
	}
}

// The connections an older process of a binary upgrade holds are in the
// backend's report: while one stands they are not added again; without
// one they are.
func TestReportedLoadAndInherited(t *testing.T) {
	b, _ := newBalancer(t, Options{}, pool("app", 1))
	c := b.counter(id(0))
	b.SetInherited(map[registry.ID]int64{id(0): 6})
	c.active.Add(2)
	if got := c.load(); got != 8 {
		t.Errorf("load() with 2 own and 6 inherited = %d, want 8", got)
	}
	b.ReportLoad(id(0), 8) // the backend counts the old process's 6 and our 2
	if got := c.load(); got != 8 {
		t.Errorf("load() with a report of 8 = %d, want 8 (the inherited are in it)", got)
	}
	b.ForgetLoad(id(0))
	if got := c.load(); got != 8 {
		t.Errorf("load() after ForgetLoad = %d, want 8 (own and inherited)", got)
	}
}

// BenchmarkAcquireReported is BenchmarkAcquire with a report standing for
// every backend: the pick reads the report's atomics too.
func BenchmarkAcquireReported(b *testing.B) {
	benchmarkAcquire(b, func(bal *Balancer, n int) {
		for i := range n {
			bal.ReportLoad(id(i), int64(i%7))
		}
	})
}
