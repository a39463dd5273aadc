package proxy_test

import (
	"testing"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
)

// BenchmarkTunnelEchoMetrics is BenchmarkTunnelEcho with wsgate's metrics
// observer attached: the observer is called per upgrade and per tunnel
// end, never per message, so ns/op and allocs/op must match
// BenchmarkTunnelEcho's.
func BenchmarkTunnelEchoMetrics(b *testing.B) {
	store, err := registry.New()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := store.Apply([]registry.PoolSpec{{Name: "app"}}); err != nil {
		b.Fatal(err)
	}
	m := metrics.New(metrics.Options{Store: store, Balancer: balancer.New(store, balancer.Options{})})
	proxy.BenchTunnelEcho(b, proxy.Options{Observer: m})
	upgrades, _ := m.Totals()
	if upgrades["ok"] == 0 {
		b.Fatal("the metrics observer saw no upgrade")
	}
}
