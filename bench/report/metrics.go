package report

import "strings"

// Labels with a fixed meaning in the report.
const (
	// DefaultSelf is the label of the proxy the goals are about.
	DefaultSelf = "wsgate"
	// DefaultPeers are the labels that count as peers for "vs best peer",
	// comma-separated as "wsgate-bench report -peers" takes them.
	DefaultPeers = "haproxy,nginx,caddy"
	// direct is the backend measured without a proxy.
	direct = "direct"
)

// scenarioOrder and labelOrder put the tables and rows in the order
// compare.sh uses; anything else follows in alphabetical order.
var (
	scenarioOrder = []string{"rtt64", "rtt16k", "throughput16k", "connrate", "connresume", "idle"}
	labelOrder    = []string{"wsgate", "haproxy", "nginx", "caddy", "direct"}
)

// stealLimit is the steal percentage above which a run is listed as
// disturbed by the host.
const stealLimit = 5.0

// metric is one column of a scenario table.
type metric struct {
	key   string // stable name, used by the goals and in tests
	title string // column header
	// value extracts the figure from one run; ok is false when the run
	// does not carry it (a field the mode does not measure, or no -pid).
	value func(r *Record) (v float64, ok bool)
	// cost marks a per-unit cost (lower is better) that gets a
	// "vs best peer" column and a panel in the SVG chart.
	cost   bool
	digits int // decimals in the table
}

// metricsFor lists the columns for a mode.
func metricsFor(mode string) []metric {
	cpuMsg := metric{key: "cpu_us_per_msg", title: "proxy CPU µs/msg", cost: true, digits: 2,
		value: func(r *Record) (float64, bool) {
			if r.Proc == nil {
				return 0, false
			}
			return deref(r.Proc.CPUUsPerMsg)
		}}
	// kernel is the kernel's part of a per-unit CPU cost: the cost times
	// the run's system share. Results from before cpu_sys_s lack it.
	kernel := func(key string, digits int, cost func(p *Proc) *float64) metric {
		return metric{key: key, title: "of which kernel µs", digits: digits,
			value: func(r *Record) (float64, bool) {
				if r.Proc == nil || r.Proc.CPUS == nil || r.Proc.CPUSysS == nil || *r.Proc.CPUS <= 0 {
					return 0, false
				}
				c, ok := deref(cost(r.Proc))
				return c * *r.Proc.CPUSysS / *r.Proc.CPUS, ok
			}}
	}
	kernelMsg := kernel("kernel_us_per_msg", 2, func(p *Proc) *float64 { return p.CPUUsPerMsg })
	// user is the rest, the part a proxy's own code controls.
	userMsg := metric{key: "user_us_per_msg", title: "of which user µs", digits: 2,
		value: func(r *Record) (float64, bool) {
			c, ok := kernelMsg.value(r)
			if !ok {
				return 0, false
			}
			return *r.Proc.CPUUsPerMsg - c, true
		}}
	steal := metric{key: "steal_pct", title: "host steal %", digits: 1, value: (*Record).maxSteal}
	msgs := metric{key: "msgs_per_s", title: "msgs/s", digits: 0,
		value: func(r *Record) (float64, bool) { return r.MsgsPerS, r.Messages > 0 || r.MsgsPerS > 0 }}
	latency := func(key, title string, pick func(l *Latency) *float64, cost bool) metric {
		return metric{key: key, title: title, cost: cost, digits: 0,
			value: func(r *Record) (float64, bool) {
				if r.Latency == nil {
					return 0, false
				}
				return deref(pick(r.Latency))
			}}
	}
	switch mode {
	case "rtt":
		return []metric{
			cpuMsg,
			kernelMsg,
			userMsg,
			latency("p50_us", "p50 µs", func(l *Latency) *float64 { return l.P50 }, false),
			latency("p99_us", "p99 µs", func(l *Latency) *float64 { return l.P99 }, true),
			latency("p999_us", "p99.9 µs", func(l *Latency) *float64 { return l.P999 }, false),
			msgs,
			steal,
		}
	case "throughput":
		return []metric{
			cpuMsg,
			kernelMsg,
			{key: "mb_per_s", title: "MB/s", digits: 1,
				value: func(r *Record) (float64, bool) { return r.MBPerS, r.Messages > 0 || r.MBPerS > 0 }},
			msgs,
			steal,
		}
	case "connrate":
		return []metric{
			{key: "cpu_us_per_handshake", title: "proxy CPU µs/handshake", cost: true, digits: 1,
				value: func(r *Record) (float64, bool) {
					if r.Proc == nil {
						return 0, false
					}
					return deref(r.Proc.CPUUsPerHandshake)
				}},
			kernel("kernel_us_per_handshake", 1, func(p *Proc) *float64 { return p.CPUUsPerHandshake }),
			{key: "handshakes_per_s", title: "handshakes/s", digits: 0,
				value: func(r *Record) (float64, bool) {
					return r.HandshakesPerS, r.Handshakes > 0 || r.HandshakesPerS > 0
				}},
			// With -resume: the share of handshakes that did resume, so a
			// proxy that sends no tickets is not taken for a cheap one. A
			// ws:// target (direct) has no TLS to resume.
			{key: "resumed_pct", title: "resumed %", digits: 0,
				value: func(r *Record) (float64, bool) {
					if !r.Resume || r.Handshakes <= 0 || strings.HasPrefix(r.URL, "ws://") {
						return 0, false
					}
					return 100 * float64(r.Resumed) / float64(r.Handshakes), true
				}},
			steal,
		}
	case "idle":
		return []metric{
			{key: "rss_per_conn_bytes", title: "RSS bytes/idle conn", cost: true, digits: 0,
				value: func(r *Record) (float64, bool) {
					if r.Idle == nil {
						return 0, false
					}
					return deref(r.Idle.RSSPerConnBytes)
				}},
			{key: "idle_opened", title: "conns held", digits: 0,
				value: func(r *Record) (float64, bool) {
					if r.Idle == nil {
						return 0, false
					}
					return float64(r.Idle.Opened), true
				}},
		}
	}
	// An unknown mode still gets its throughput figures.
	return []metric{cpuMsg, msgs}
}

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// goal is one line of the goals table: self's median of metric in
// scenario, divided by the best peer's, must be at most limit. When the
// first scenario has no data, the next one in the list is used.
type goal struct {
	name      string
	scenarios []string
	metric    string
	limit     float64
}

// goals are the second performance round's (issue 14): tail latency,
// connection cost and memory ahead of the best peer, and the 64-byte CPU
// goal split into the total (at most parity: the kernel's loopback TCP is
// most of it for every proxy) and the user-space part a proxy controls.
var goals = []goal{
	{name: "round-trip p99 latency (64 B)", scenarios: []string{"rtt64"}, metric: "p99_us", limit: 1.0},
	{name: "round-trip p99.9 latency (64 B)", scenarios: []string{"rtt64"}, metric: "p999_us", limit: 1.0},
	{name: "CPU per new connection (TLS + upgrade)", scenarios: []string{"connrate"}, metric: "cpu_us_per_handshake", limit: 0.8},
	{name: "RSS per idle connection", scenarios: []string{"idle"}, metric: "rss_per_conn_bytes", limit: 0.5},
	{name: "CPU per 64 B round trip", scenarios: []string{"rtt64"}, metric: "cpu_us_per_msg", limit: 1.0},
	{name: "user-space CPU per 64 B round trip", scenarios: []string{"rtt64"}, metric: "user_us_per_msg", limit: 0.7},
	{name: "CPU per 16 KiB message", scenarios: []string{"throughput16k", "rtt16k"}, metric: "cpu_us_per_msg", limit: 0.8},
}
