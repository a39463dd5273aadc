package metrics

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var check = &registry.HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 1, UnhealthyThreshold: 1}

// newMetrics returns Metrics over a registry holding pools app (checked,
// backends :9001 and :9002) and chat (unchecked, :9003).
func newMetrics(t testing.TB) (*Metrics, *registry.Store, *balancer.Balancer) {
	t.Helper()
	store, err := registry.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{
		{Name: "app", Check: check, Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 1}}},
		{Name: "chat", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9003", Weight: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	bal := balancer.New(store, balancer.Options{})
	return New(Options{Store: store, Balancer: bal}), store, bal
}

// gather returns the value of every series of the named metric (a
// histogram's sample count), keyed by its label values joined with ",".
func gather(t testing.TB, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			out[labelKey(s)] = value(s)
		}
	}
	return out
}

// labelKey joins a series' label values in the order wsgate declares
// them (the exposition sorts them by name).
func labelKey(s *dto.Metric) string {
	var vs []string
	for _, name := range []string{labelPool, labelBackend, labelInitiator, labelCode, labelResult, labelDirection, labelReason} {
		for _, lp := range s.GetLabel() {
			if lp.GetName() == name {
				vs = append(vs, lp.GetValue())
			}
		}
	}
	return strings.Join(vs, ",")
}

func value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.GetCounter().GetValue()
	case s.Gauge != nil:
		return s.GetGauge().GetValue()
	case s.Histogram != nil:
		return float64(s.GetHistogram().GetSampleCount())
	}
	return -1
}

func TestCodeLabel(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{proxy.CloseCodeNone, "none"},
		{1000, "1000"},
		{1001, "1001"},
		{1005, "1005"},
		{1015, "1015"},
		{1016, "other"},
		{999, "other"},
		{2999, "other"},
		{3000, "3000"},
		{4999, "4999"},
		{5000, "other"},
		{65535, "other"},
		{-1, "other"},
	} {
		if got := codeLabel(codeKey(tc.code)); got != tc.want {
			t.Errorf("codeLabel(codeKey(%d)) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// The scheduler's runtime metrics are there for tail-latency work.
func TestSchedulerMetrics(t *testing.T) {
	m, _, _ := newMetrics(t)
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"go_sched_latencies_seconds": false, "go_sched_pauses_total_gc_seconds": false, "go_goroutines": false}
	for _, mf := range mfs {
		if _, ok := want[mf.GetName()]; ok {
			want[mf.GetName()] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("%s missing from the scrape", name)
		}
	}
}

func TestSeriesExistFromTheStart(t *testing.T) {
	m, _, _ := newMetrics(t)
	upgrades := gather(t, m, "wsgate_upgrades_total")
	for _, pool := range []string{"app", "chat"} {
		for _, r := range upgradeResults {
			if v, ok := upgrades[pool+","+string(r)]; !ok || v != 0 {
				t.Errorf("wsgate_upgrades_total{pool=%q,result=%q} = %v, %v; want 0, present", pool, r, v, ok)
			}
		}
	}
	closes := gather(t, m, "wsgate_closes_total")
	if len(closes) != 6 || closes["app,client,none"] != 0 || closes["chat,proxy,none"] != 0 {
		t.Errorf("wsgate_closes_total = %v; want code none at 0 for each pool and initiator", closes)
	}
	// Only the checked pool's backends have probe series.
	checks := gather(t, m, "wsgate_health_checks_total")
	want := []string{"app,127.0.0.1:9001,fail", "app,127.0.0.1:9001,pass", "app,127.0.0.1:9002,fail", "app,127.0.0.1:9002,pass"}
	if got := slices.Sorted(maps.Keys(checks)); !slices.Equal(got, want) {
		t.Errorf("wsgate_health_checks_total series = %v, want %v", got, want)
	}
	if got := gather(t, m, "wsgate_config_reloads_total"); len(got) != 2 || got["ok"] != 0 || got["error"] != 0 {
		t.Errorf("wsgate_config_reloads_total = %v, want ok and error at 0", got)
	}
	limited := gather(t, m, "wsgate_limited_total")
	for _, r := range proxy.LimitReasons {
		if v, ok := limited[string(r)]; !ok || v != 0 {
			t.Errorf("wsgate_limited_total{reason=%q} = %v, %v; want 0, present", r, v, ok)
		}
	}
	tlsErrors := gather(t, m, "wsgate_tls_handshake_errors_total")
	for _, r := range []string{"timeout", "closed", "not_tls", "client_alert", "protocol"} {
		if v, ok := tlsErrors[r]; !ok || v != 0 {
			t.Errorf("wsgate_tls_handshake_errors_total{reason=%q} = %v, %v; want 0, present", r, v, ok)
		}
	}
}

func TestObserverEvents(t *testing.T) {
	m, _, _ := newMetrics(t)
	for _, ev := range []proxy.UpgradeEvent{
		{Pool: "app", Result: proxy.UpgradeOK, Duration: 2 * time.Millisecond},
		{Pool: "app", Result: proxy.UpgradeOK, Duration: 3 * time.Millisecond},
		{Pool: "app", Result: proxy.UpgradeNoBackend, Duration: time.Millisecond},
		{Pool: "chat", Result: proxy.UpgradeBadRequest, Duration: time.Microsecond},
		{Pool: "app", Result: "some_future_result", Duration: time.Millisecond},
	} {
		m.UpgradeDone(&ev)
	}
	for _, ev := range []proxy.TunnelEvent{
		{Pool: "app", ClosedBy: proxy.ClosedByClient, CloseCode: 1000, Duration: 90 * time.Second},
		{Pool: "app", ClosedBy: proxy.ClosedByClient, CloseCode: 1000, Duration: 2 * time.Hour},
		{Pool: "app", ClosedBy: proxy.ClosedByBackend, CloseCode: proxy.CloseCodeNone, Duration: time.Second},
		{Pool: "app", ClosedBy: proxy.ClosedByProxy, CloseCode: 1001, Duration: time.Second},
		{Pool: "chat", ClosedBy: proxy.ClosedByBackend, CloseCode: 4001, Duration: time.Second},
		{Pool: "chat", ClosedBy: proxy.ClosedByBackend, CloseCode: 2000, Duration: time.Second},
		{Pool: "chat", ClosedBy: proxy.ClosedByBackend, CloseCode: 5999, Duration: time.Second},
	} {
		m.TunnelClosed(&ev)
	}
	m.ProbeDone(&healthcheck.Probe{ID: registry.ID{Pool: "app", Address: "127.0.0.1:9001"}})
	m.ProbeDone(&healthcheck.Probe{ID: registry.ID{Pool: "app", Address: "127.0.0.1:9001"}, Err: errors.New("status 503"), Reason: "status 503"})
	m.ProbeDone(&healthcheck.Probe{ID: registry.ID{Pool: "app", Address: "127.0.0.1:9002"}, Err: errors.New("timeout"), Reason: "timeout"})
	m.Refused(&proxy.RefusalEvent{Reason: proxy.RefusedMaxConnections})
	m.Refused(&proxy.RefusalEvent{Reason: proxy.HandshakeNotTLS, TLS: true})
	m.Refused(&proxy.RefusalEvent{Reason: proxy.HandshakeNotTLS, TLS: true})
	m.Refused(&proxy.RefusalEvent{Reason: "some_future_reason", TLS: true})
	m.Reloaded(true)
	m.Reloaded(false)
	m.Reloaded(true)

	for _, tc := range []struct {
		metric string
		want   map[string]float64 // series not listed must be 0
	}{
		{"wsgate_upgrades_total", map[string]float64{"app,ok": 2, "app,no_backend": 1, "chat,bad_request": 1, "app,some_future_result": 1}},
		{"wsgate_upgrade_duration_seconds", map[string]float64{"app": 2}}, // ok only
		{"wsgate_connection_duration_seconds", map[string]float64{"app": 4, "chat": 3}},
		{"wsgate_closes_total", map[string]float64{
			"app,client,1000": 2, "app,backend,none": 1, "app,proxy,1001": 1,
			"chat,backend,4001": 1, "chat,backend,other": 2,
		}},
		{"wsgate_health_checks_total", map[string]float64{"app,127.0.0.1:9001,pass": 1, "app,127.0.0.1:9001,fail": 1, "app,127.0.0.1:9002,fail": 1}},
		{"wsgate_limited_total", map[string]float64{"max_connections": 1}},
		{"wsgate_tls_handshake_errors_total", map[string]float64{"not_tls": 2, "some_future_reason": 1}},
		{"wsgate_config_reloads_total", map[string]float64{"ok": 2, "error": 1}},
	} {
		got := gather(t, m, tc.metric)
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s{%s} = %v, want %v", tc.metric, k, got[k], v)
			}
		}
		for k, v := range got {
			if _, listed := tc.want[k]; !listed && v != 0 {
				t.Errorf("%s{%s} = %v, want 0", tc.metric, k, v)
			}
		}
	}

	// The connection histogram has buckets for tunnels of hours.
	mfs, _ := m.Gatherer().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "wsgate_connection_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if labelKey(s) != "app" {
				continue
			}
			for _, b := range s.GetHistogram().GetBucket() {
				if b.GetUpperBound() == 3600 && b.GetCumulativeCount() != 3 {
					t.Errorf("app tunnels of at most an hour = %d, want 3", b.GetCumulativeCount())
				}
			}
		}
	}

	ups, closes := m.Totals()
	if ups["ok"] != 2 || ups["no_backend"] != 1 || ups["bad_request"] != 1 || ups["some_future_result"] != 1 || ups["backend_error"] != 0 {
		t.Errorf("Totals() upgrades = %v", ups)
	}
	if closes["1000"] != 2 || closes["none"] != 1 || closes["1001"] != 1 || closes["4001"] != 1 || closes["other"] != 2 {
		t.Errorf("Totals() closes = %v", closes)
	}
}

func TestStateIsReadAtScrapeTime(t *testing.T) {
	m, store, bal := newMetrics(t)
	app1 := registry.ID{Pool: "app", Address: "127.0.0.1:9001"}
	var leases [3]balancer.Lease
	for i := range leases {
		if err := bal.Acquire("app", []string{"127.0.0.1:9002"}, &leases[i]); err != nil {
			t.Fatal(err)
		}
	}
	leases[0].Release()
	if _, err := store.SetDraining(registry.ID{Pool: "app", Address: "127.0.0.1:9002"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetHealth(app1, registry.HealthDown, "status 503"); err != nil {
		t.Fatal(err)
	}
	m.SetRelayer(relayed{{Pool: "app", Up: 100, Down: 250}, {Pool: "gone", Up: 7, Down: 8}})
	// 9002 reports 40 connections (every proxy's); 9003's report is gone.
	bal.ReportLoad(registry.ID{Pool: "app", Address: "127.0.0.1:9002"}, 40)
	bal.ReportLoad(registry.ID{Pool: "chat", Address: "127.0.0.1:9003"}, 5)
	bal.ForgetLoad(registry.ID{Pool: "chat", Address: "127.0.0.1:9003"})

	for _, tc := range []struct {
		metric string
		want   map[string]float64
	}{
		{"wsgate_backend_active_connections", map[string]float64{"app,127.0.0.1:9001": 2, "app,127.0.0.1:9002": 0, "chat,127.0.0.1:9003": 0}},
		{"wsgate_backend_connections_total", map[string]float64{"app,127.0.0.1:9001": 3, "app,127.0.0.1:9002": 0, "chat,127.0.0.1:9003": 0}},
		{"wsgate_backend_reported_connections", map[string]float64{"app,127.0.0.1:9002": 40}},
		{"wsgate_backend_healthy", map[string]float64{"app,127.0.0.1:9001": 0, "app,127.0.0.1:9002": 1, "chat,127.0.0.1:9003": 1}},
		{"wsgate_backend_draining", map[string]float64{"app,127.0.0.1:9001": 0, "app,127.0.0.1:9002": 1, "chat,127.0.0.1:9003": 0}},
		{"wsgate_relayed_bytes_total", map[string]float64{
			"app,client_to_backend": 100, "app,backend_to_client": 250,
			"chat,client_to_backend": 0, "chat,backend_to_client": 0,
			"gone,client_to_backend": 7, "gone,backend_to_client": 8,
		}},
		{"wsgate_config_generation", map[string]float64{"": 1}},
	} {
		got := gather(t, m, tc.metric)
		if len(got) != len(tc.want) {
			t.Errorf("%s = %v, want %v", tc.metric, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s{%s} = %v, want %v", tc.metric, k, g, v)
			}
		}
	}
}

type relayed []proxy.PoolBytes

func (r relayed) RelayedBytes() []proxy.PoolBytes { return r }

func TestRunFollowsTheRegistry(t *testing.T) {
	m, store, _ := newMetrics(t)
	done := make(chan error)
	go func() { done <- m.Run(t.Context()) }()
	// t.Context is cancelled just before cleanups run; Run returns then.
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})

	m.ProbeDone(&healthcheck.Probe{ID: registry.ID{Pool: "app", Address: "127.0.0.1:9002"}})
	// :9002 leaves, a new pool arrives, chat gets a health check.
	if _, err := store.Apply([]registry.PoolSpec{
		{Name: "app", Check: check, Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 1}}},
		{Name: "chat", Check: check, Backends: []registry.BackendSpec{{Address: "127.0.0.1:9003", Weight: 1}}},
		{Name: "new", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9004", Weight: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"app,127.0.0.1:9001,fail", "app,127.0.0.1:9001,pass", "chat,127.0.0.1:9003,fail", "chat,127.0.0.1:9003,pass"}
	proctest.WaitFor(t, "the health-check series to follow the registry", func() bool {
		return slices.Equal(slices.Sorted(maps.Keys(gather(t, m, "wsgate_health_checks_total"))), want)
	})
	if v, ok := gather(t, m, "wsgate_upgrades_total")["new,ok"]; !ok || v != 0 {
		t.Errorf("wsgate_upgrades_total{pool=new,result=ok} = %v, %v; want 0, present", v, ok)
	}
	if got := gather(t, m, "wsgate_config_generation")[""]; got != 2 {
		t.Errorf("wsgate_config_generation = %v, want 2", got)
	}
}

func TestMetricNamesLint(t *testing.T) {
	m, _, _ := newMetrics(t)
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "wsgate_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestObserverAllocations holds the observer methods to their promise:
// once a series exists, recording an event takes no allocation.
func TestObserverAllocations(t *testing.T) {
	m, _, _ := newMetrics(t)
	up := &proxy.UpgradeEvent{Pool: "app", Result: proxy.UpgradeOK, Duration: time.Millisecond}
	tun := &proxy.TunnelEvent{Pool: "app", ClosedBy: proxy.ClosedByClient, CloseCode: 1000, Duration: time.Minute}
	probe := &healthcheck.Probe{ID: registry.ID{Pool: "app", Address: "127.0.0.1:9001"}}
	refusal := &proxy.RefusalEvent{Reason: proxy.RefusedMaxConnections}
	for name, f := range map[string]func(){
		"UpgradeDone":  func() { m.UpgradeDone(up) },
		"TunnelClosed": func() { m.TunnelClosed(tun) },
		"ProbeDone":    func() { m.ProbeDone(probe) },
		"Refused":      func() { m.Refused(refusal) },
	} {
		f() // the first call may create the series
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

func BenchmarkObserver(b *testing.B) {
	m, _, _ := newMetrics(b)
	up := &proxy.UpgradeEvent{Pool: "app", Result: proxy.UpgradeOK, Duration: time.Millisecond}
	tun := &proxy.TunnelEvent{Pool: "app", ClosedBy: proxy.ClosedByClient, CloseCode: 1000, Duration: time.Minute}
	b.Run("UpgradeDone", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.UpgradeDone(up)
			}
		})
	})
	b.Run("TunnelClosed", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.TunnelClosed(tun)
			}
		})
	})
}
