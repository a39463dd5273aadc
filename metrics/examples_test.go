package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/registry"
)

// metricName finds metric names in PromQL and prose.
var metricName = regexp.MustCompile(`\b(?:wsgate|go|process)_[a-z_]+\b`)

// exported returns the names /metrics has once every wsgate metric has a
// series, histograms with their _bucket, _sum and _count series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m, _ := newDiscoveryMetrics(t)
	m.bal.ReportLoad(registry.ID{Pool: "app", Address: "127.0.0.1:9001"}, 1) // a series only while a report stands
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// wsgateMetrics are the contract's metrics, and those of DNS discovery.
var wsgateMetrics = []string{
	"wsgate_backend_active_connections", "wsgate_backend_connections_total",
	"wsgate_backend_reported_connections", "wsgate_backend_healthy", "wsgate_backend_draining",
	"wsgate_upgrades_total", "wsgate_upgrade_duration_seconds", "wsgate_connection_duration_seconds",
	"wsgate_closes_total", "wsgate_relayed_bytes_total", "wsgate_health_checks_total",
	"wsgate_tls_handshake_errors_total", "wsgate_limited_total",
	"wsgate_config_reloads_total", "wsgate_config_generation",
	"wsgate_discovery_backends", "wsgate_discovery_errors_total", "wsgate_discovery_empty_total",
}

func TestContractMetricsExported(t *testing.T) {
	names := exported(t)
	for _, n := range wsgateMetrics {
		if !names[n] {
			t.Errorf("/metrics has no %s", n)
		}
	}
	for n := range names {
		if strings.HasPrefix(n, "wsgate_") && !slices.Contains(wsgateMetrics, strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")) {
			t.Errorf("%s is exported but not in this test's list (nor, probably, the README)", n)
		}
	}
}

// TestGrafanaDashboard checks examples/grafana-dashboard.json: valid JSON,
// every panel queries something, every metric it names exists, and every
// wsgate metric is on it.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("examples/grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard has title %q and %d panels", dash.Title, len(dash.Panels))
	}
	names := exported(t)
	used := make(map[string]bool)
	check := func(where, expr string) {
		for _, n := range metricName.FindAllString(expr, -1) {
			if !names[n] {
				t.Errorf("%s: %s is not a metric wsgate exports", where, n)
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
		}
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q has no title or no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		check("variable", v.Definition)
	}
	for _, n := range wsgateMetrics {
		if !used[n] {
			t.Errorf("the dashboard shows nothing of %s", n)
		}
	}
}

// TestREADMEMetrics checks that the README documents every wsgate metric
// and that its Metrics section names no metric that does not exist.
func TestREADMEMetrics(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, n := range wsgateMetrics {
		if !strings.Contains(readme, "`"+n) {
			t.Errorf("README does not document %s", n)
		}
	}
	// Only the Metrics section: elsewhere a wsgate_ word may be, say, a
	// build tag.
	_, section, _ := strings.Cut(readme, "\n## Metrics\n")
	section, _, _ = strings.Cut(section, "\n## ")
	if section == "" {
		t.Fatal("README has no Metrics section")
	}
	names := exported(t)
	for _, n := range metricName.FindAllString(section, -1) {
		if strings.HasPrefix(n, "wsgate_") && !names[n] {
			t.Errorf("README names %s, which wsgate does not export", n)
		}
	}
}
