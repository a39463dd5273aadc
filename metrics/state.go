package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsgate/wsgate/registry"
)

// The metrics read at scrape time.
var (
	activeDesc = prometheus.NewDesc("wsgate_backend_active_connections",
		"WebSocket connections a backend holds now, upgrades in flight included (active_connections of /api/backends).",
		[]string{labelPool, labelBackend}, nil)
	totalDesc = prometheus.NewDesc("wsgate_backend_connections_total",
		"WebSocket connections given to a backend since start, across reloads (total_connections of /api/backends).",
		[]string{labelPool, labelBackend}, nil)
	healthyDesc = prometheus.NewDesc("wsgate_backend_healthy",
		"1 unless the backend's health checks, or a connection it refused, have it down, or it was discovered and waits for its first probe.",
		[]string{labelPool, labelBackend}, nil)
	reportedDesc = prometheus.NewDesc("wsgate_backend_reported_connections",
		"WebSocket connections the backend holds from every proxy, as its last health check reported them (X-Backend-Connections); no series while no report stands.",
		[]string{labelPool, labelBackend}, nil)
	drainingDesc = prometheus.NewDesc("wsgate_backend_draining",
		"1 while the backend is drained (no new connections): by an operator, or because it vanished from its pool's DNS answer.",
		[]string{labelPool, labelBackend}, nil)
	discoveredDesc = prometheus.NewDesc("wsgate_discovery_backends",
		"Addresses in a discovering pool's DNS answer in force (the last one that found any).",
		[]string{labelPool}, nil)
	relayedDesc = prometheus.NewDesc("wsgate_relayed_bytes_total",
		"Bytes relayed through a pool's tunnels, WebSocket framing included, TLS not.",
		[]string{labelPool, labelDirection}, nil)
	generationDesc = prometheus.NewDesc("wsgate_config_generation",
		"The config generation in force: 1 at start, one more for each reload applied.",
		nil, nil)
)

// stateCollector reads the metrics that mirror state, at scrape time, from
// the registry, the balancer's counters and the proxy's tally: they cannot
// drift from /api/backends.
type stateCollector struct{ m *Metrics }

var _ prometheus.Collector = stateCollector{}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{activeDesc, totalDesc, reportedDesc, healthyDesc, drainingDesc, discoveredDesc, relayedDesc, generationDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	pools, _ := c.m.store.Pools()
	discovered := make(map[string]int)
	for _, p := range pools {
		if p.Discover != nil {
			discovered[p.Name] = 0
		}
	}
	backends, _ := c.m.store.Backends()
	for _, b := range backends {
		active, total := c.m.bal.Counts(b.ID())
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active), b.Pool, b.Address)
		ch <- prometheus.MustNewConstMetric(totalDesc, prometheus.CounterValue, float64(total), b.Pool, b.Address)
		if n, ok := c.m.bal.Reported(b.ID()); ok {
			ch <- prometheus.MustNewConstMetric(reportedDesc, prometheus.GaugeValue, float64(n), b.Pool, b.Address)
		}
		ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, bit(b.Health.Serves()), b.Pool, b.Address)
		ch <- prometheus.MustNewConstMetric(drainingDesc, prometheus.GaugeValue, bit(b.State() == registry.StateDraining), b.Pool, b.Address)
		if _, ok := discovered[b.Pool]; ok && b.Discovered {
			discovered[b.Pool]++
		}
	}
	for pool, n := range discovered {
		ch <- prometheus.MustNewConstMetric(discoveredDesc, prometheus.GaugeValue, float64(n), pool)
	}

	// Every configured pool, at zero before its first tunnel; and pools
	// that are gone but relayed bytes before, so the counters never drop.
	up := make(map[string]int64, len(pools))
	down := make(map[string]int64, len(pools))
	for _, p := range pools {
		up[p.Name], down[p.Name] = 0, 0
	}
	if box := c.m.relayer.Load(); box != nil {
		for _, pb := range box.r.RelayedBytes() {
			up[pb.Pool] += pb.Up
			down[pb.Pool] += pb.Down
		}
	}
	for pool, n := range up {
		ch <- prometheus.MustNewConstMetric(relayedDesc, prometheus.CounterValue, float64(n), pool, directionUp)
		ch <- prometheus.MustNewConstMetric(relayedDesc, prometheus.CounterValue, float64(down[pool]), pool, directionDown)
	}

	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(c.m.store.Generation()))
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Totals returns the upgrades since start by result ("ok", "no_backend",
// ...) and the tunnel ends by code label ("1000", "1001", "none", ...),
// each summed over pools and initiators. It reads the counters
// wsgate_upgrades_total and wsgate_closes_total, so it agrees with
// /metrics; the maps are the caller's.
func (m *Metrics) Totals() (upgrades map[string]int64, closes map[string]int64) {
	return sumBy(m.upgrades, labelResult), sumBy(m.closes, labelCode)
}

// sumBy sums the counters c collects by the value of one label.
func sumBy(c prometheus.Collector, label string) map[string]int64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	out := make(map[string]int64)
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) != nil {
			continue
		}
		for _, lp := range pb.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += int64(pb.GetCounter().GetValue())
			}
		}
	}
	return out
}
