package report

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Record is one JSON line of "wsgate-bench -json". Only the fields the
// report uses are decoded; unknown fields are ignored so that the generator
// can grow without breaking old reports. Figures a run did not measure are
// nil (or zero for counts).
type Record struct {
	Label          string             `json:"label"`
	Scenario       string             `json:"scenario"`
	Mode           string             `json:"mode"`
	Size           int                `json:"size"`
	Conns          int                `json:"conns"`
	Window         int                `json:"window"`
	DurationS      float64            `json:"duration_s"`
	Messages       int64              `json:"messages"`
	MsgsPerS       float64            `json:"msgs_per_s"`
	MBPerS         float64            `json:"mb_per_s"`
	Handshakes     int64              `json:"handshakes"`
	HandshakesPerS float64            `json:"handshakes_per_s"`
	URL            string             `json:"url"`
	Resume         bool               `json:"resume"`
	Resumed        int64              `json:"resumed"`
	Errors         int64              `json:"errors"`
	Latency        *Latency           `json:"lat_us"`
	Idle           *Idle              `json:"idle"`
	Proc           *Proc              `json:"proc"`
	StealPct       map[string]float64 `json:"steal_pct"`
	StartedAt      string             `json:"started_at"`
}

// Latency holds latency percentiles in microseconds.
type Latency struct {
	P50  *float64 `json:"p50"`
	P90  *float64 `json:"p90"`
	P99  *float64 `json:"p99"`
	P999 *float64 `json:"p999"`
	Max  *float64 `json:"max"`
}

// Idle is the idle mode's connection count and memory growth.
type Idle struct {
	Target          int      `json:"target"`
	Opened          int      `json:"opened"`
	Failed          int      `json:"failed"`
	RSSPerConnBytes *float64 `json:"rss_per_conn_bytes"`
}

// Proc is the CPU and memory of the measured (-pid) processes.
type Proc struct {
	CPUS              *float64 `json:"cpu_s"`
	CPUSysS           *float64 `json:"cpu_sys_s"`
	CPUUsPerMsg       *float64 `json:"cpu_us_per_msg"`
	CPUUsPerHandshake *float64 `json:"cpu_us_per_handshake"`
	RSSKB             *float64 `json:"rss_kb"`
}

// Read parses JSON lines from r; name (a file name, or "stdin") prefixes
// its errors. Blank lines are skipped. A line that is not a JSON object, or
// lacks label or mode, is an error naming the line, and so is an input
// without any result.
func Read(r io.Reader, name string) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(text, &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: not a wsgate-bench JSON result: %w", name, line, err)
		}
		switch {
		case rec.Label == "":
			return nil, fmt.Errorf("%s:%d: result has no label; run wsgate-bench with -label NAME", name, line)
		case rec.Mode == "":
			return nil, fmt.Errorf("%s:%d: result has no mode; want rtt, throughput, connrate or idle", name, line)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no results", name)
	}
	return out, nil
}

// scenarioName names the record's scenario: its explicit scenario field,
// else the mode plus the message size for the message modes (rtt64,
// rtt16k, throughput16k), else connresume for connrate with -resume, else
// the mode alone (connrate, idle).
func (r *Record) scenarioName() string {
	if r.Scenario != "" {
		return r.Scenario
	}
	if r.Mode == "connrate" && r.Resume {
		return "connresume"
	}
	switch r.Mode {
	case "connrate", "idle":
		return r.Mode
	}
	if r.Size <= 0 {
		return r.Mode
	}
	if r.Size%1024 == 0 {
		return fmt.Sprintf("%s%dk", r.Mode, r.Size/1024)
	}
	return fmt.Sprintf("%s%d", r.Mode, r.Size)
}

// maxSteal is the highest per-CPU steal percentage of a run; ok is false
// for runs that did not record it.
func (r *Record) maxSteal() (v float64, ok bool) {
	for _, s := range r.StealPct {
		v, ok = max(v, s), true
	}
	return v, ok
}

// FormatSteal formats per-CPU steal percentages (a record's StealPct) as
// "cpu0 1.2%, cpu1 0.4%", in CPU order.
func FormatSteal(steal map[string]float64) string {
	cpus := slices.Collect(maps.Keys(steal))
	slices.SortFunc(cpus, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b)) // cpu2 before cpu10
	})
	parts := make([]string, len(cpus))
	for i, c := range cpus {
		parts[i] = fmt.Sprintf("%s %.1f%%", c, steal[c])
	}
	return strings.Join(parts, ", ")
}
