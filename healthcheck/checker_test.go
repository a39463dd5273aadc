package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quietLog = slog.New(slog.DiscardHandler)

var errFail = errors.New("scripted failure")

// script is a ProbeFunc that answers from a list (the last result
// repeats; answers beyond the list report nothing) and records the
// backend's health as each probe starts, which is the verdict of all
// probes before it.
type script struct {
	store   *registry.Store
	id      registry.ID
	results []error
	answers []Answer

	mu     sync.Mutex
	before []registry.Health
}

func (s *script) probe(ctx context.Context, addr string, _ registry.HealthCheck) (Answer, error) {
	b, _ := s.store.Backend(s.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.before)
	s.before = append(s.before, b.Health)
	var ans Answer
	if n < len(s.answers) {
		ans = s.answers[n]
	}
	if n >= len(s.results) {
		n = len(s.results) - 1
	}
	return ans, s.results[n]
}

func (s *script) history() []registry.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]registry.Health(nil), s.before...)
}

const (
	U = registry.HealthUnknown
	Y = registry.HealthUp
	N = registry.HealthDown
)

func testCheck() *registry.HealthCheck {
	return &registry.HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: 500 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
}

// A check's zero fields are probed with their defaults; set ones are kept.
func TestZeroFieldsTakeDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got := make(chan registry.HealthCheck, 1)
		probe := func(_ context.Context, _ string, check registry.HealthCheck) (Answer, error) {
			select {
			case got <- check:
			default:
			}
			return Answer{}, nil
		}
		_, _, stop := startChecker(t, &registry.HealthCheck{Timeout: 100 * time.Millisecond, ExpectedStatus: 204}, probe)
		defer stop()
		want := registry.HealthCheck{
			Path: DefaultPath, Interval: DefaultInterval, Timeout: 100 * time.Millisecond,
			HealthyThreshold: DefaultHealthyThreshold, UnhealthyThreshold: DefaultUnhealthyThreshold, ExpectedStatus: 204,
		}
		if check := <-got; check != want {
			t.Errorf("probed with %+v, want %+v", check, want)
		}
	})
}

// startChecker runs a Checker over one pool with one backend inside the
// current synctest bubble.
func startChecker(t *testing.T, check *registry.HealthCheck, probe ProbeFunc) (*Checker, *registry.Store, func()) {
	t.Helper()
	return startCheckerOn(t, newStore(t), check, probe)
}

func newStore(t *testing.T) *registry.Store {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func startCheckerOn(t *testing.T, store *registry.Store, check *registry.HealthCheck, probe ProbeFunc) (*Checker, *registry.Store, func()) {
	t.Helper()
	if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}}, Check: check}}); err != nil {
		t.Fatal(err)
	}
	c := New(store, Options{Probe: probe, Logger: quietLog})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	return c, store, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
}

func TestThresholds(t *testing.T) {
	ok := error(nil)
	for _, tc := range []struct {
		name      string
		healthy   int
		unhealthy int
		results   []error
		// want[i] is the health after probes 0..i-1.
		want []registry.Health
	}{
		{"first pass is up at once", 2, 2, []error{ok}, []registry.Health{U, Y, Y}},
		{"first failure is down at once", 2, 2, []error{errFail}, []registry.Health{U, N, N}},
		{"down after unhealthy_threshold failures in a row", 2, 2,
			[]error{ok, errFail, ok, errFail, errFail, ok},
			[]registry.Health{U, Y, Y, Y, Y, N, N}},
		{"up after healthy_threshold passes in a row", 3, 2,
			[]error{errFail, ok, errFail, ok, ok, ok, errFail},
			[]registry.Health{U, N, N, N, N, N, Y, Y}},
		{"thresholds of one flip at once", 1, 1,
			[]error{ok, errFail, ok},
			[]registry.Health{U, Y, N, Y}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				check := testCheck()
				check.HealthyThreshold, check.UnhealthyThreshold = tc.healthy, tc.unhealthy
				s := &script{store: newStore(t), id: registry.ID{Pool: "app", Address: "127.0.0.1:9001"}, results: tc.results}
				_, _, stop := startCheckerOn(t, s.store, check, s.probe)
				defer stop()
				// Interval 1s, less up to 10%: len(want) probes fit in this.
				time.Sleep(time.Duration(len(tc.want)) * 1100 * time.Millisecond)
				synctest.Wait()
				got := s.history()
				if len(got) < len(tc.want) {
					t.Fatalf("%d probes ran, want at least %d", len(got), len(tc.want))
				}
				for i, w := range tc.want {
					if got[i] != w {
						t.Errorf("health after %d probes = %v, want %v (history %v)", i, got[i], w, got[:len(tc.want)])
					}
				}
			})
		})
	}
}

// A backend that DNS discovery added is pending: no connections until a
// probe concludes, and the first one decides at once, as for a configured
// backend's first probe (not healthy_threshold passes, as for a down one).
func TestPendingFirstVerdict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result error
		want   registry.Health
	}{
		{"first pass is up", nil, Y},
		{"first failure is down", errFail, N},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newStore(t)
				id := registry.ID{Pool: "app", Address: "10.0.0.2:9001"}
				check := testCheck()
				check.HealthyThreshold = 3
				discover := &registry.Discover{Name: "app.example", Type: "A", Port: 9001, Interval: time.Second}
				if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Check: check, Discover: discover}}); err != nil {
					t.Fatal(err)
				}
				if _, err := store.SetDiscovered("app", []registry.BackendSpec{{Address: id.Address}}, nil); err != nil {
					t.Fatal(err)
				}
				s := &script{store: store, id: id, results: []error{tc.result}}
				c := New(store, Options{Probe: s.probe, Logger: quietLog})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- c.Run(ctx) }()
				defer func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Run() = %v, want nil", err)
					}
				}()
				time.Sleep(check.Interval / 2) // the first probe goes out within interval/20
				synctest.Wait()
				if h := s.history(); len(h) != 1 || h[0] != registry.HealthPending {
					t.Fatalf("health before each probe = %v, want one probe of a pending backend", h)
				}
				if b, _ := store.Backend(id); b.Health != tc.want {
					t.Errorf("health after the first probe = %v, want %v", b.Health, tc.want)
				}
			})
		})
	}
}

func TestDownWithinIntervalTimesThresholdPlusTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		dead := false
		probe := func(ctx context.Context, _ string, _ registry.HealthCheck) (Answer, error) {
			mu.Lock()
			d := dead
			mu.Unlock()
			if !d {
				return Answer{}, nil
			}
			<-ctx.Done() // a dead backend that never answers: the timeout ends the probe
			return Answer{}, ctx.Err()
		}
		check := testCheck()
		_, store, stop := startChecker(t, check, probe)
		defer stop()
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		time.Sleep(3 * time.Second)
		if b, _ := store.Backend(id); b.Health != registry.HealthUp {
			t.Fatalf("health = %v, want up", b.Health)
		}
		mu.Lock()
		dead = true
		mu.Unlock()
		start := time.Now()
		for {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			b, _ := store.Backend(id)
			if b.Health == registry.HealthDown {
				if b.HealthReason != "timeout" {
					t.Errorf("reason = %q, want timeout", b.HealthReason)
				}
				break
			}
		}
		// The promise: interval × unhealthy_threshold + timeout.
		limit := check.Interval*time.Duration(check.UnhealthyThreshold) + check.Timeout
		if took := time.Since(start); took > limit {
			t.Errorf("marked down %v after the backend died, want within %v", took, limit)
		}
	})
}

func TestPassiveFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		s := &script{store: newStore(t), id: id, results: []error{nil}}
		c, store, stop := startCheckerOn(t, s.store, testCheck(), s.probe)
		defer stop()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if b, _ := store.Backend(id); b.Health != registry.HealthUp {
			t.Fatalf("health = %v, want up", b.Health)
		}
		probesBefore := len(s.history())
		c.ReportFailure("app", "127.0.0.1:9001", errors.New("dial tcp: connect: connection refused"))
		synctest.Wait()
		b, _ := store.Backend(id)
		if b.Health != registry.HealthDown || !strings.HasPrefix(b.HealthReason, "passive: ") {
			t.Fatalf("after ReportFailure: health %v (%q), want down with a passive reason", b.Health, b.HealthReason)
		}
		// healthy_threshold (2) passing probes bring it back.
		for b.Health != registry.HealthUp {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			b, _ = store.Backend(id)
		}
		if n := len(s.history()) - probesBefore; n != 2 {
			t.Errorf("came back after %d probes, want 2 (healthy_threshold)", n)
		}
		// Unknown backends and pools are ignored.
		c.ReportFailure("app", "127.0.0.1:1", errFail)
		c.ReportFailure("nope", "127.0.0.1:9001", errFail)
	})
}

func TestReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		probe := func(context.Context, string, registry.HealthCheck) (Answer, error) { return Answer{}, errFail }
		_, store, stop := startChecker(t, testCheck(), probe)
		defer stop()
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		time.Sleep(time.Second)
		synctest.Wait()
		if b, _ := store.Backend(id); b.Health != registry.HealthDown {
			t.Fatalf("health = %v, want down", b.Health)
		}
		// The pool loses its check: the backend is no longer judged.
		if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: id.Address, Weight: 1}}}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if b, _ := store.Backend(id); b.Health != registry.HealthUnknown {
			t.Errorf("health after the check was removed = %v, want unknown", b.Health)
		}
		// The backend is removed altogether: its prober stops (goleak and
		// synctest would notice a leftover goroutine).
		if _, err := store.Apply([]registry.PoolSpec{{Name: "app", Check: testCheck()}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
	})
}

// statusServer answers /healthz with a status (and X-Backend-Connections
// values) that the test sets and records what each probe sent.
type statusServer struct {
	mu     sync.Mutex
	status int
	conns  []string
	delay  time.Duration
	ua     string
	host   string
}

func (s *statusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ua, s.host = r.UserAgent(), r.Host
	status, delay := s.status, s.delay
	if s.conns != nil {
		w.Header()[ConnectionsHeader] = s.conns
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, strings.Repeat("x", 100<<10)) // more than a probe reads
}

func TestHTTPProbe(t *testing.T) {
	ss := &statusServer{status: 200}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	dir := proctest.SocketDir(t)
	sock := filepath.Join(dir, "b.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	usrv := httptest.NewUnstartedServer(ss)
	usrv.Listener = uln
	usrv.Start()
	defer usrv.Close()

	refused := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		a := ln.Addr().String()
		ln.Close()
		return a
	}()

	hp := newHTTPProber()
	defer hp.client.CloseIdleConnections()
	for _, tc := range []struct {
		name       string
		addr       string
		status     int
		expected   int
		delay      time.Duration
		wantReason string // "" = pass
	}{
		{"200 passes", addr, 200, 0, 0, ""},
		{"204 passes", addr, 204, 0, 0, ""},
		{"503 fails", addr, 503, 0, 0, "status 503"},
		{"302 fails, not followed", addr, 302, 0, 0, "status 302"},
		{"expected status", addr, 200, 204, 0, "status 200"},
		{"refused", refused, 200, 0, 0, "connection refused"},
		{"timeout", addr, 200, 0, 2 * time.Second, "timeout"},
		{"unix socket", "unix:" + sock, 200, 0, 0, ""},
		{"missing unix socket", "unix:" + sock + ".gone", 200, 0, 0, "no such socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss.mu.Lock()
			ss.status, ss.delay = tc.status, tc.delay
			ss.mu.Unlock()
			check := *testCheck()
			check.Timeout = 200 * time.Millisecond
			check.ExpectedStatus = tc.expected
			ctx, cancel := context.WithTimeout(context.Background(), check.Timeout)
			defer cancel()
			_, err := hp.probe(ctx, tc.addr, check)
			got := ""
			if err != nil {
				got = reason(err)
			}
			if got != tc.wantReason {
				t.Errorf("probe(%s) reason = %q (%v), want %q", tc.addr, got, err, tc.wantReason)
			}
		})
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ua != UserAgent {
		t.Errorf("User-Agent = %q, want %q", ss.ua, UserAgent)
	}
}

func TestProbeSendsBackendHost(t *testing.T) {
	ss := &statusServer{status: 200}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	if _, err := newHTTPProber().probe(context.Background(), addr, *testCheck()); err != nil {
		t.Fatal(err)
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.host != addr {
		t.Errorf("Host = %q, want the backend's address %q", ss.host, addr)
	}
}

// probeLog is an Observer that keeps every probe result.
type probeLog struct {
	mu     sync.Mutex
	probes []Probe
}

func (l *probeLog) ProbeDone(p *Probe) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.probes = append(l.probes, *p)
}

func TestObserverSeesEveryProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		s := &script{store: newStore(t), id: id, results: []error{nil, errFail, &statusError{code: 503}, nil}}
		if _, err := s.store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: id.Address, Weight: 1}}, Check: testCheck()}}); err != nil {
			t.Fatal(err)
		}
		obs := &probeLog{}
		c := New(s.store, Options{Probe: s.probe, Observer: obs, Logger: quietLog})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()
		time.Sleep(3500 * time.Millisecond) // four probes, one a second
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if len(obs.probes) != 4 {
			t.Fatalf("observer saw %d probes, want 4", len(obs.probes))
		}
		wantReason := []string{"", errFail.Error(), "status 503", ""}
		for i, p := range obs.probes {
			if p.ID != id || (p.Err == nil) != (wantReason[i] == "") || p.Reason != wantReason[i] {
				t.Errorf("probe %d = %+v, want id %v, reason %q", i, p, id, wantReason[i])
			}
		}
	})
}

func TestHTTPProbeReadsConnections(t *testing.T) {
	ss := &statusServer{}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	hp := newHTTPProber()
	for _, tc := range []struct {
		name     string
		status   int
		conns    []string // nil: no header
		want     int64
		reported bool
		bad      bool
		fails    bool
	}{
		{name: "no header", status: 200},
		{name: "a count", status: 200, conns: []string{"12"}, want: 12, reported: true},
		{name: "zero", status: 200, conns: []string{"0"}, want: 0, reported: true},
		{name: "the largest", status: 200, conns: []string{"9223372036854775807"}, want: 1<<63 - 1, reported: true},
		{name: "a failing probe still reports", status: 503, conns: []string{"7"}, want: 7, reported: true, fails: true},
		{name: "negative", status: 200, conns: []string{"-1"}, bad: true},
		{name: "plus sign", status: 200, conns: []string{"+3"}, bad: true},
		{name: "fraction", status: 200, conns: []string{"1.5"}, bad: true},
		{name: "trailing junk", status: 200, conns: []string{"12abc"}, bad: true},
		{name: "a list", status: 200, conns: []string{"1, 2"}, bad: true},
		{name: "empty", status: 200, conns: []string{""}, bad: true},
		{name: "too large", status: 200, conns: []string{"9223372036854775808"}, bad: true},
		{name: "twice", status: 200, conns: []string{"1", "2"}, bad: true},
		{name: "bad on a failing probe", status: 503, conns: []string{"x"}, bad: true, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss.mu.Lock()
			ss.status, ss.conns = tc.status, tc.conns
			ss.mu.Unlock()
			ans, err := hp.probe(context.Background(), addr, *testCheck())
			if (err != nil) != tc.fails {
				t.Errorf("probe() error = %v, want failure %v (the status decides)", err, tc.fails)
			}
			if ans.Connections != tc.want || ans.Reported != tc.reported || (ans.BadReport != nil) != tc.bad {
				t.Errorf("probe() answer = %+v, want %d, reported %v, bad %v", ans, tc.want, tc.reported, tc.bad)
			}
		})
	}
}

// loadLog is a LoadReporter that records each call and when it came.
type loadLog struct {
	mu     sync.Mutex
	start  time.Time
	calls  []string
	called []time.Duration
}

func (l *loadLog) record(call string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, call)
	l.called = append(l.called, time.Since(l.start))
}

func (l *loadLog) ReportLoad(_ registry.ID, n int64) { l.record(fmt.Sprintf("report %d", n)) }
func (l *loadLog) ForgetLoad(registry.ID)            { l.record("forget") }

var _ LoadReporter = (*loadLog)(nil)

// runLoad runs a Checker with s's probe and load as its LoadReporter for
// d, then stops it.
func runLoad(t *testing.T, s *script, load *loadLog, log *slog.Logger, d time.Duration) {
	t.Helper()
	if _, err := s.store.Apply([]registry.PoolSpec{{Name: "app", Backends: []registry.BackendSpec{{Address: s.id.Address, Weight: 1}}, Check: testCheck()}}); err != nil {
		t.Fatal(err)
	}
	load.start = time.Now()
	c := New(s.store, Options{Probe: s.probe, Load: load, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(d)
	synctest.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

// Every answer with a count is reported, pass or fail; a report with no
// successor for three intervals is withdrawn at the next probe; the one
// standing when the prober stops is withdrawn then.
func TestLoadReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		bad := Answer{BadReport: errFail}
		s := &script{store: newStore(t), id: id,
			results: []error{nil, errFail, nil, errFail, nil, nil, nil, nil, nil},
			answers: []Answer{{Connections: 5, Reported: true}, {Connections: 7, Reported: true}, {}, {}, bad, {}, {}, {Connections: 3, Reported: true}},
		}
		load := &loadLog{}
		runLoad(t, s, load, quietLog, 8500*time.Millisecond) // probes 0-8, one a second less jitter
		load.mu.Lock()
		defer load.mu.Unlock()
		want := []string{"report 5", "report 7", "forget", "report 3", "forget"}
		if !slices.Equal(load.calls, want) {
			t.Fatalf("LoadReporter calls = %q, want %q", load.calls, want)
		}
		// Probes are 0.9 to 1 s apart: the first probe 3 s or more after
		// the report of 7 (probe 1) is probe 4 or 5.
		if held := load.called[2] - load.called[1]; held < 3*time.Second || held > 4*time.Second {
			t.Errorf("a report stood %v without a successor, want 3 to 4 intervals (3-4s)", held)
		}
	})
}

// A bad header is ignored, nothing is reported, and it is logged at most
// once a minute, with how many went unlogged.
func TestBadLoadReportLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		id := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
		answers := make([]Answer, 200)
		for i := range answers {
			answers[i] = Answer{BadReport: errors.New("X-Backend-Connections \"x\": not a non-negative integer")}
		}
		s := &script{store: newStore(t), id: id, results: []error{nil}, answers: answers}
		var buf proctest.SyncBuffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		load := &loadLog{}
		runLoad(t, s, load, log, 150*time.Second)
		var lines []string
		for l := range strings.Lines(buf.String()) {
			if strings.Contains(l, "backend load report ignored") {
				lines = append(lines, l)
			}
		}
		// At 0 s, at the first probe from 60 s on, and from 120 s on.
		if len(lines) != 3 {
			t.Fatalf("%d log records of %d bad reports, want 3:\n%s", len(lines), len(s.history()), strings.Join(lines, ""))
		}
		if !strings.Contains(lines[0], "suppressed=0") || strings.Contains(lines[1], "suppressed=0 ") || !strings.Contains(lines[1], `err="X-Backend-Connections`) {
			t.Errorf("log records = %q; want the error, and the second to count the unlogged", lines)
		}
		load.mu.Lock()
		defer load.mu.Unlock()
		if len(load.calls) != 0 {
			t.Errorf("LoadReporter calls = %q, want none", load.calls)
		}
	})
}
