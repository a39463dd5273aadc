package main

// Result is one run of wsgate-bench, printed with -json as a single line of
// JSON on stdout after the human summary (which then goes to stderr). The
// field names are a stable interface: "wsgate-bench report" and scripts
// parse them. Fields a mode does not measure are omitted; a decoder that
// leaves them at zero reads them correctly.
//
//	label             -label, the name of the thing measured ("wsgate", "haproxy", "direct")
//	mode              rtt | throughput | connrate | idle
//	url               the target URL
//	conns             -c: connections (rtt, throughput), workers (connrate), connections to open (idle)
//	size              -size: message payload in bytes
//	window            throughput only: -window, messages in flight per connection
//	duration_s        the measured window in seconds as it really was (shorter after Ctrl-C);
//	                  idle: how long all connections were held
//	messages          rtt, throughput: echoes received inside the measured window
//	msgs_per_s        rtt, throughput: messages / duration_s (for rtt, round trips per second)
//	mb_per_s          throughput: payload bytes echoed per second / 1e6
//	handshakes        connrate: complete sequences (TCP connect, full TLS 1.3 handshake,
//	                  upgrade, one echo, close handshake, TCP close) inside the window
//	handshakes_per_s  connrate: handshakes / duration_s
//	resume            connrate with -resume: true (the report calls the scenario connresume)
//	resumed           connrate with -resume: handshakes inside the window that resumed a session
//	errors            always present: failures over the whole run, warm-up and closing included
//	                  (dial and handshake failures, read or write failures, unexpected
//	                  closes, wrong echoes)
//	lat_us            rtt: per round trip; connrate: per whole sequence. Microseconds:
//	  p50 p90 p99 p999 max   percentiles from a log-bucketed histogram (within 0.4%); max is exact
//	idle              idle only:
//	  target          -c, connections asked for
//	  opened          connections that completed the upgrade and one echo
//	  failed          connections that did not
//	  rss_before_kb   with -pid: summed VmRSS of the PIDs before the first connection
//	  rss_after_kb    with -pid: summed VmRSS once all were open and had settled for up to 1s
//	  rss_per_conn_bytes  with -pid: (rss_after_kb - rss_before_kb) * 1024 / opened
//	proc              with -pid only:
//	  pids            the PIDs measured; figures are sums over them
//	  cpu_s           user+system CPU seconds of the PIDs over the measured window
//	                  (idle: over the hold, after all connections were open)
//	  cpu_sys_s       the part of cpu_s spent in the kernel (system time: system
//	                  calls, and the TCP/IP work the kernel charges to them)
//	  cpu_us_per_msg  rtt, throughput: CPU microseconds per echoed message
//	  cpu_us_per_handshake  connrate: CPU microseconds per handshake
//	  rss_kb          summed VmRSS at the end of the measured window
//	steal_pct         rtt, throughput, connrate: per CPU ("cpu0", ...), the percentage
//	                  of the measured window the hypervisor ran something else on
//	                  it (steal time in /proc/stat). Above a few percent the run was
//	                  disturbed by other guests on the host: its per-unit costs and
//	                  latencies are worse than the machine's, for any proxy.
//	go_version        the Go version wsgate-bench was built with
//	started_at        when the run started, RFC 3339
type Result struct {
	Label          string  `json:"label"`
	Mode           string  `json:"mode"`
	URL            string  `json:"url"`
	Conns          int     `json:"conns"`
	Size           int     `json:"size"`
	Window         int     `json:"window,omitempty"`
	DurationS      float64 `json:"duration_s"`
	Messages       int64   `json:"messages,omitempty"`
	MsgsPerS       float64 `json:"msgs_per_s,omitempty"`
	MBPerS         float64 `json:"mb_per_s,omitempty"`
	Handshakes     int64   `json:"handshakes,omitempty"`
	HandshakesPerS float64 `json:"handshakes_per_s,omitempty"`
	// Resume is -resume: connrate resumed TLS sessions where it could.
	Resume bool `json:"resume,omitempty"`
	// Resumed counts the handshakes that resumed a TLS session (-resume).
	Resumed   int64              `json:"resumed,omitempty"`
	Errors    int64              `json:"errors"`
	Latency   *Latency           `json:"lat_us,omitempty"`
	Idle      *Idle              `json:"idle,omitempty"`
	Proc      *Proc              `json:"proc,omitempty"`
	StealPct  map[string]float64 `json:"steal_pct,omitempty"`
	GoVersion string             `json:"go_version"`
	StartedAt string             `json:"started_at"`
}

// Latency holds latency percentiles in microseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Idle is the outcome of the idle mode. The RSS fields are nil without -pid,
// so a measured zero is still printed.
type Idle struct {
	Target          int    `json:"target"`
	Opened          int    `json:"opened"`
	Failed          int    `json:"failed"`
	RSSBeforeKB     *int64 `json:"rss_before_kb,omitempty"`
	RSSAfterKB      *int64 `json:"rss_after_kb,omitempty"`
	RSSPerConnBytes *int64 `json:"rss_per_conn_bytes,omitempty"`
}

// Proc is what -pid measured. The per-unit costs are omitted when nothing
// was counted to divide by.
type Proc struct {
	PIDs              []int   `json:"pids"`
	CPUS              float64 `json:"cpu_s"`
	CPUSysS           float64 `json:"cpu_sys_s"`
	CPUUsPerMsg       float64 `json:"cpu_us_per_msg,omitempty"`
	CPUUsPerHandshake float64 `json:"cpu_us_per_handshake,omitempty"`
	RSSKB             int64   `json:"rss_kb"`
}
