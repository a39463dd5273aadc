package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/discovery"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
)

// Label names and the values of fixed label sets.
const (
	labelPool      = "pool"
	labelBackend   = "backend"
	labelResult    = "result"
	labelInitiator = "initiator"
	labelCode      = "code"
	labelDirection = "direction"
	labelReason    = "reason"

	resultPass = "pass"
	resultFail = "fail"
	resultOK   = "ok"
	resultErr  = "error"

	// CodeNone is the code label of a tunnel that ended without a close
	// frame; CodeOther that of a close code outside the bounded set.
	CodeNone  = "none"
	CodeOther = "other"

	directionUp   = "client_to_backend"
	directionDown = "backend_to_client"
)

// upgradeResults are the results whose series every pool has from the
// start. A result the proxy adds later still counts, from its first use.
var upgradeResults = [...]proxy.UpgradeResult{
	proxy.UpgradeOK,
	proxy.UpgradeBadRequest,
	proxy.UpgradeForbiddenOrigin,
	proxy.UpgradeLimited,
	proxy.UpgradeNoBackend,
	proxy.UpgradeBackendError,
	proxy.UpgradeBackendRefused,
	proxy.UpgradeClientGone,
}

var initiators = [...]proxy.Initiator{proxy.ClosedByClient, proxy.ClosedByBackend, proxy.ClosedByProxy}

// Histogram buckets, in seconds. A handshake on a local network takes
// well under a millisecond to a few hundred (a dial timeout is seconds);
// a tunnel lives from a fraction of a second to days.
var (
	upgradeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	tunnelBuckets  = []float64{.1, 1, 5, 15, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 2 * 24 * 3600, 7 * 24 * 3600}
)

// Relayer reports the bytes relayed through each pool's tunnels so far, a
// figure that only grows; *proxy.Handler is one.
type Relayer interface {
	RelayedBytes() []proxy.PoolBytes
}

// Options configure Metrics.
type Options struct {
	// Store and Balancer are where the backend state and connection
	// counts are read at scrape time. Both required.
	Store    *registry.Store
	Balancer *balancer.Balancer
}

// Metrics is wsgate's set of Prometheus metrics. It implements
// proxy.Observer and healthcheck.Observer; all methods are safe for
// concurrent use. Create it with New, keep its per-pool and per-backend
// series in step with the registry with Run, and serve Handler.
type Metrics struct {
	reg     *prometheus.Registry
	store   *registry.Store
	bal     *balancer.Balancer
	relayer atomic.Pointer[relayerBox]

	upgrades       *prometheus.CounterVec
	upgradeSeconds *prometheus.HistogramVec
	tunnelSeconds  *prometheus.HistogramVec
	closes         *prometheus.CounterVec
	healthChecks   *prometheus.CounterVec
	tlsErrors      *prometheus.CounterVec
	limited        *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Counter
	reloadError    prometheus.Counter
	dnsErrors      *prometheus.CounterVec
	dnsEmpty       *prometheus.CounterVec

	// The series the observer methods use, found without a lock.
	pools       cowMap[string, *poolSeries]
	closeSeries cowMap[closeKey, prometheus.Counter]
	probeSeries cowMap[registry.ID, *probeSeries]
	tlsSeries   cowMap[proxy.RefusalReason, prometheus.Counter]
	limitSeries cowMap[proxy.RefusalReason, prometheus.Counter]
	dnsSeries   cowMap[string, *dnsSeries]
}

type relayerBox struct{ r Relayer }

// poolSeries are the series of one pool that every upgrade or tunnel end
// touches.
type poolSeries struct {
	upgrades       map[proxy.UpgradeResult]prometheus.Counter // every result of upgradeResults
	upgradeSeconds prometheus.Observer
	tunnelSeconds  prometheus.Observer
}

type probeSeries struct {
	pass, fail prometheus.Counter
}

// dnsSeries are the lookup counters of a discovering pool.
type dnsSeries struct {
	errs, empty prometheus.Counter
}

// closeKey identifies a wsgate_closes_total series; code is already
// bounded by codeKey.
type closeKey struct {
	pool string
	by   proxy.Initiator
	code int
}

var (
	_ proxy.Observer       = (*Metrics)(nil)
	_ healthcheck.Observer = (*Metrics)(nil)
	_ discovery.Observer   = (*Metrics)(nil)
)

// New returns Metrics registered in a new Prometheus registry, with the Go
// runtime and process collectors beside them. It starts no goroutine.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		store: opts.Store,
		bal:   opts.Balancer,
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_upgrades_total",
			Help: "WebSocket upgrade requests routed to a pool, by result: ok for every relayed 101, else why not.",
		}, []string{labelPool, labelResult}),
		upgradeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsgate_upgrade_duration_seconds",
			Help:    "Time from an upgrade request's arrival to the backend's 101 relayed to the client (successful upgrades).",
			Buckets: upgradeBuckets,
		}, []string{labelPool}),
		tunnelSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsgate_connection_duration_seconds",
			Help:    "Life of a WebSocket tunnel, from the 101 to the closing of both sockets.",
			Buckets: tunnelBuckets,
		}, []string{labelPool}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_closes_total",
			Help: "Tunnels ended, by who sent the first close frame (or whose connection ended first without one) and its close code (none: no close frame; other: a code outside 1000-1015 and 3000-4999).",
		}, []string{labelPool, labelInitiator, labelCode}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_health_checks_total",
			Help: "Active health-check probes, by result.",
		}, []string{labelPool, labelBackend, labelResult}),
		tlsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_tls_handshake_errors_total",
			Help: "TLS handshakes on the proxy listener that failed, by reason.",
		}, []string{labelReason}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_limited_total",
			Help: "Connections and upgrades refused by a limit, by the limit.",
		}, []string{labelReason}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_config_reloads_total",
			Help: "Config reloads (SIGHUP), by result: ok when applied, error when rejected (the running config stays).",
		}, []string{labelResult}),
		dnsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_discovery_errors_total",
			Help: "DNS lookups of a pool's discover name that got no answer (unreachable server, timeout, SERVFAIL); the last answer stayed in force.",
		}, []string{labelPool}),
		dnsEmpty: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_discovery_empty_total",
			Help: "DNS lookups of a pool's discover name that found no address (NXDOMAIN, no records); the last answer stayed in force.",
		}, []string{labelPool}),
	}
	m.reloadOK = m.reloads.WithLabelValues(resultOK)
	m.reloadError = m.reloads.WithLabelValues(resultErr)
	for _, r := range proxy.LimitReasons {
		m.limitSeries.get(r, m.limitedCounter)
	}
	for _, r := range proxy.HandshakeReasons {
		m.tlsSeries.get(r, m.tlsCounter)
	}
	m.reg.MustRegister(
		m.upgrades, m.upgradeSeconds, m.tunnelSeconds, m.closes, m.healthChecks,
		m.tlsErrors, m.limited, m.reloads, m.dnsErrors, m.dnsEmpty,
		stateCollector{m},
		// The scheduler's runtime metrics besides the classic go_*:
		// go_sched_latencies_seconds (how long goroutines waited to run,
		// the first place to look when tail latency grows) and the
		// stop-the-world pauses, GC's among them.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.sync()
	return m
}

// SetRelayer sets where wsgate_relayed_bytes_total is read at scrape
// time. Until it is called the metric reads zero for every pool.
func (m *Metrics) SetRelayer(r Relayer) {
	m.relayer.Store(&relayerBox{r})
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A failing collector (say /proc unreadable) costs its own metrics,
		// not the whole scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// Gatherer returns the registry, for tests and for embedding the metrics
// elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Run keeps the per-pool and per-backend series in step with the
// registry until ctx is done: it creates the series of new pools and
// checked backends at zero, and deletes the health-check series of
// backends that are gone. It returns nil when ctx is done.
func (m *Metrics) Run(ctx context.Context) error {
	for {
		poolsChanged, backendsChanged := m.sync()
		select {
		case <-poolsChanged:
		case <-backendsChanged:
		case <-ctx.Done():
			return nil
		}
	}
}

// sync creates and deletes series to match the registry and returns the
// channels that close when it changes.
func (m *Metrics) sync() (poolsChanged, backendsChanged <-chan struct{}) {
	pools, poolsChanged := m.store.Pools()
	backends, backendsChanged := m.store.Backends()
	checked := make(map[string]bool, len(pools))
	for _, p := range pools {
		m.pool(p.Name)
		checked[p.Name] = p.Check != nil
		if p.Discover != nil {
			m.dnsSeries.get(p.Name, m.newDNSSeries)
		}
	}
	want := make(map[registry.ID]bool, len(backends))
	for _, b := range backends {
		if checked[b.Pool] {
			want[b.ID()] = true
			m.probeSeries.get(b.ID(), m.newProbeSeries)
		}
	}
	// A probe that ends just after its backend left recreates the series;
	// the next change to the registry deletes them again.
	for _, id := range m.probeSeries.removeUnless(func(id registry.ID) bool { return want[id] }) {
		m.healthChecks.DeletePartialMatch(prometheus.Labels{labelPool: id.Pool, labelBackend: id.Address})
	}
	return poolsChanged, backendsChanged
}

// pool returns the series of a pool, creating them on first use.
func (m *Metrics) pool(name string) *poolSeries {
	return m.pools.get(name, m.newPoolSeries)
}

func (m *Metrics) newPoolSeries(name string) *poolSeries {
	ps := &poolSeries{
		upgrades:       make(map[proxy.UpgradeResult]prometheus.Counter, len(upgradeResults)),
		upgradeSeconds: m.upgradeSeconds.WithLabelValues(name),
		tunnelSeconds:  m.tunnelSeconds.WithLabelValues(name),
	}
	for _, r := range upgradeResults {
		ps.upgrades[r] = m.upgrades.WithLabelValues(name, string(r))
	}
	for _, by := range initiators {
		m.closeSeries.get(closeKey{pool: name, by: by, code: proxy.CloseCodeNone}, m.newCloseCounter)
	}
	return ps
}

func (m *Metrics) newProbeSeries(id registry.ID) *probeSeries {
	return &probeSeries{
		pass: m.healthChecks.WithLabelValues(id.Pool, id.Address, resultPass),
		fail: m.healthChecks.WithLabelValues(id.Pool, id.Address, resultFail),
	}
}

func (m *Metrics) newDNSSeries(pool string) *dnsSeries {
	return &dnsSeries{errs: m.dnsErrors.WithLabelValues(pool), empty: m.dnsEmpty.WithLabelValues(pool)}
}

func (m *Metrics) newCloseCounter(k closeKey) prometheus.Counter {
	return m.closes.WithLabelValues(k.pool, string(k.by), codeLabel(k.code))
}

func (m *Metrics) limitedCounter(r proxy.RefusalReason) prometheus.Counter {
	return m.limited.WithLabelValues(string(r))
}

func (m *Metrics) tlsCounter(r proxy.RefusalReason) prometheus.Counter {
	return m.tlsErrors.WithLabelValues(string(r))
}

// UpgradeDone counts an upgrade and, for a relayed 101, its duration.
func (m *Metrics) UpgradeDone(ev *proxy.UpgradeEvent) {
	ps := m.pool(ev.Pool)
	if c, ok := ps.upgrades[ev.Result]; ok {
		c.Inc()
	} else {
		m.upgrades.WithLabelValues(ev.Pool, string(ev.Result)).Inc()
	}
	if ev.Result == proxy.UpgradeOK {
		ps.upgradeSeconds.Observe(ev.Duration.Seconds())
	}
}

// TunnelClosed counts a tunnel's end and records its life.
func (m *Metrics) TunnelClosed(ev *proxy.TunnelEvent) {
	m.pool(ev.Pool).tunnelSeconds.Observe(ev.Duration.Seconds())
	k := closeKey{pool: ev.Pool, by: ev.ClosedBy, code: codeKey(ev.CloseCode)}
	m.closeSeries.get(k, m.newCloseCounter).Inc()
}

// Refused counts a refusal by a limit, or a failed TLS handshake.
func (m *Metrics) Refused(ev *proxy.RefusalEvent) {
	if ev.TLS {
		m.tlsSeries.get(ev.Reason, m.tlsCounter).Inc()
		return
	}
	m.limitSeries.get(ev.Reason, m.limitedCounter).Inc()
}

// ProbeDone counts an active health-check probe.
func (m *Metrics) ProbeDone(p *healthcheck.Probe) {
	ps := m.probeSeries.get(p.ID, m.newProbeSeries)
	if p.Err == nil {
		ps.pass.Inc()
	} else {
		ps.fail.Inc()
	}
}

// LookupDone counts a DNS lookup of a discovering pool that failed or
// found nothing.
func (m *Metrics) LookupDone(l *discovery.Lookup) {
	switch {
	case l.Err != nil:
		m.dnsSeries.get(l.Pool, m.newDNSSeries).errs.Inc()
	case l.Empty:
		m.dnsSeries.get(l.Pool, m.newDNSSeries).empty.Inc()
	}
}

// Reloaded counts a config reload, applied or rejected.
func (m *Metrics) Reloaded(applied bool) {
	if applied {
		m.reloadOK.Inc()
	} else {
		m.reloadError.Inc()
	}
}

// Close codes with a label of their own; see the package documentation.
const (
	minProtocolCode, maxProtocolCode = 1000, 1015
	minAppCode, maxAppCode           = 3000, 4999
	codeOther                        = -1
)

// codeKey maps a close code to the bounded set: itself when it has a
// label of its own, proxy.CloseCodeNone for none, codeOther otherwise.
func codeKey(code int) int {
	switch {
	case code == proxy.CloseCodeNone,
		code >= minProtocolCode && code <= maxProtocolCode,
		code >= minAppCode && code <= maxAppCode:
		return code
	}
	return codeOther
}

// codeLabel is the code label of a codeKey.
func codeLabel(k int) string {
	switch k {
	case proxy.CloseCodeNone:
		return CodeNone
	case codeOther:
		return CodeOther
	}
	return strconv.Itoa(k)
}
