package main

// report.go is "wsgate-bench report": it reads the JSON lines the load
// generator printed with -json (several runs per proxy and scenario), takes
// the median of each figure over the runs, and writes a Markdown comparison
// (one table per scenario plus the goals table) and a standalone SVG bar
// chart of the per-unit costs. bench/compare.sh runs it after the runs.
//
// Every identifier here starts with "report" so that this file can live in
// package main next to the load generator without name clashes.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// reportRecord is one JSON line of "wsgate-bench -json". Only the fields the
// report uses are decoded; unknown fields are ignored so that the generator
// can grow without breaking old reports.
type reportRecord struct {
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
	Errors         int64              `json:"errors"`
	Lat            *reportLatency     `json:"lat_us"`
	Idle           *reportIdle        `json:"idle"`
	Proc           *reportProc        `json:"proc"`
	StealPct       map[string]float64 `json:"steal_pct"`
	StartedAt      string             `json:"started_at"`
}

// reportMaxSteal is the highest per-CPU steal percentage of a run; ok is
// false for runs that did not record it.
func reportMaxSteal(r *reportRecord) (v float64, ok bool) {
	for _, s := range r.StealPct {
		v, ok = max(v, s), true
	}
	return v, ok
}

// reportStealLimit is the steal percentage above which a run is listed as
// disturbed by the host.
const reportStealLimit = 5.0

// reportLatency holds latency percentiles in microseconds.
type reportLatency struct {
	P50  *float64 `json:"p50"`
	P90  *float64 `json:"p90"`
	P99  *float64 `json:"p99"`
	P999 *float64 `json:"p999"`
	Max  *float64 `json:"max"`
}

// reportIdle is the idle mode's connection count and memory growth.
type reportIdle struct {
	Target          int      `json:"target"`
	Opened          int      `json:"opened"`
	Failed          int      `json:"failed"`
	RSSPerConnBytes *float64 `json:"rss_per_conn_bytes"`
}

// reportProc is the CPU and memory of the measured (-pid) processes.
type reportProc struct {
	CPUs              *float64 `json:"cpu_s"`
	CPUSysS           *float64 `json:"cpu_sys_s"`
	CPUusPerMsg       *float64 `json:"cpu_us_per_msg"`
	CPUusPerHandshake *float64 `json:"cpu_us_per_handshake"`
	RSSkB             *float64 `json:"rss_kb"`
}

// Labels with a fixed meaning in the report.
const (
	reportDefaultSelf  = "wsgate"
	reportDefaultPeers = "haproxy,nginx,caddy"
	reportDirect       = "direct"
)

// reportScenarioOrder and reportLabelOrder put the tables and rows in the
// order compare.sh uses; anything else follows in alphabetical order.
var (
	reportScenarioOrder = []string{"rtt64", "rtt16k", "throughput16k", "connrate", "idle"}
	reportLabelOrder    = []string{"wsgate", "haproxy", "nginx", "caddy", "direct"}
)

// reportMetric is one column of a scenario table.
type reportMetric struct {
	key   string // stable name, used by the goals and in tests
	title string // column header
	// value extracts the figure from one run; ok is false when the run
	// does not carry it (a field the mode does not measure, or no -pid).
	value func(r *reportRecord) (v float64, ok bool)
	// cost marks a per-unit cost (lower is better) that gets a
	// "vs best peer" column and a panel in the SVG chart.
	cost   bool
	digits int // decimals in the table
}

// reportMetricsFor lists the columns for a mode.
func reportMetricsFor(mode string) []reportMetric {
	cpuMsg := reportMetric{key: "cpu_us_per_msg", title: "proxy CPU µs/msg", cost: true, digits: 2,
		value: func(r *reportRecord) (float64, bool) {
			if r.Proc == nil {
				return 0, false
			}
			return reportDeref(r.Proc.CPUusPerMsg)
		}}
	// kernel is the kernel's part of a per-unit CPU cost: the cost times
	// the run's system share. Results from before cpu_sys_s lack it.
	kernel := func(key string, digits int, cost func(p *reportProc) *float64) reportMetric {
		return reportMetric{key: key, title: "of which kernel µs", digits: digits,
			value: func(r *reportRecord) (float64, bool) {
				if r.Proc == nil || r.Proc.CPUs == nil || r.Proc.CPUSysS == nil || *r.Proc.CPUs <= 0 {
					return 0, false
				}
				c, ok := reportDeref(cost(r.Proc))
				return c * *r.Proc.CPUSysS / *r.Proc.CPUs, ok
			}}
	}
	kernelMsg := kernel("kernel_us_per_msg", 2, func(p *reportProc) *float64 { return p.CPUusPerMsg })
	steal := reportMetric{key: "steal_pct", title: "host steal %", digits: 1, value: reportMaxSteal}
	msgs := reportMetric{key: "msgs_per_s", title: "msgs/s", digits: 0,
		value: func(r *reportRecord) (float64, bool) { return r.MsgsPerS, r.Messages > 0 || r.MsgsPerS > 0 }}
	latency := func(key, title string, pick func(l *reportLatency) *float64, cost bool) reportMetric {
		return reportMetric{key: key, title: title, cost: cost, digits: 0,
			value: func(r *reportRecord) (float64, bool) {
				if r.Lat == nil {
					return 0, false
				}
				return reportDeref(pick(r.Lat))
			}}
	}
	switch mode {
	case "rtt":
		return []reportMetric{
			cpuMsg,
			kernelMsg,
			latency("p50_us", "p50 µs", func(l *reportLatency) *float64 { return l.P50 }, false),
			latency("p99_us", "p99 µs", func(l *reportLatency) *float64 { return l.P99 }, true),
			msgs,
			steal,
		}
	case "throughput":
		return []reportMetric{
			cpuMsg,
			kernelMsg,
			{key: "mb_per_s", title: "MB/s", digits: 1,
				value: func(r *reportRecord) (float64, bool) { return r.MBPerS, r.Messages > 0 || r.MBPerS > 0 }},
			msgs,
			steal,
		}
	case "connrate":
		return []reportMetric{
			{key: "cpu_us_per_handshake", title: "proxy CPU µs/handshake", cost: true, digits: 1,
				value: func(r *reportRecord) (float64, bool) {
					if r.Proc == nil {
						return 0, false
					}
					return reportDeref(r.Proc.CPUusPerHandshake)
				}},
			kernel("kernel_us_per_handshake", 1, func(p *reportProc) *float64 { return p.CPUusPerHandshake }),
			{key: "handshakes_per_s", title: "handshakes/s", digits: 0,
				value: func(r *reportRecord) (float64, bool) {
					return r.HandshakesPerS, r.Handshakes > 0 || r.HandshakesPerS > 0
				}},
			steal,
		}
	case "idle":
		return []reportMetric{
			{key: "rss_per_conn_bytes", title: "RSS bytes/idle conn", cost: true, digits: 0,
				value: func(r *reportRecord) (float64, bool) {
					if r.Idle == nil {
						return 0, false
					}
					return reportDeref(r.Idle.RSSPerConnBytes)
				}},
			{key: "idle_opened", title: "conns held", digits: 0,
				value: func(r *reportRecord) (float64, bool) {
					if r.Idle == nil {
						return 0, false
					}
					return float64(r.Idle.Opened), true
				}},
		}
	}
	// An unknown mode still gets its throughput figures.
	return []reportMetric{cpuMsg, msgs}
}

func reportDeref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// reportGoal is one line of the goals table: wsgate's median of metric in
// scenario, divided by the best peer's, must be at most limit. When the
// first scenario has no data, the next one in the list is used.
type reportGoal struct {
	name      string
	scenarios []string
	metric    string
	limit     float64
}

var reportGoals = []reportGoal{
	{name: "CPU per 64 B round trip", scenarios: []string{"rtt64"}, metric: "cpu_us_per_msg", limit: 0.8},
	{name: "CPU per 16 KiB message", scenarios: []string{"throughput16k", "rtt16k"}, metric: "cpu_us_per_msg", limit: 0.8},
	{name: "CPU per new connection (TLS + upgrade)", scenarios: []string{"connrate"}, metric: "cpu_us_per_handshake", limit: 1.0},
	{name: "RSS per idle connection", scenarios: []string{"idle"}, metric: "rss_per_conn_bytes", limit: 1.0},
	{name: "round-trip p99 latency (64 B)", scenarios: []string{"rtt64"}, metric: "p99_us", limit: 1.0},
}

// reportCell is the median of one metric for one label in one scenario.
type reportCell struct {
	median float64
	n      int // runs that carried the figure
}

// reportRow is one label within a scenario.
type reportRow struct {
	label  string
	runs   int
	errors int64
	cells  map[string]reportCell // by metric key
}

// reportTable is one scenario.
type reportTable struct {
	scenario string
	mode     string
	metrics  []reportMetric
	rows     []*reportRow
}

// reportSummary is everything the writers need.
type reportSummary struct {
	self   string
	peers  []string
	tables []*reportTable
	// disturbed are the runs with more than reportStealLimit steal, in
	// input order.
	disturbed []*reportRecord
	// calm is the same summary over only the runs that recorded steal time
	// at or under reportStealLimit; nil when no run recorded it.
	calm *reportSummary
}

// reportCmd runs "wsgate-bench report". It returns the exit code: 0 on
// success, 1 when the input cannot be read or an output cannot be written,
// 2 for bad flags.
func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate-bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON lines `file` written by wsgate-bench -json (required; - for stdin)")
	md := fs.String("md", "", "write the Markdown tables to `file` (default: stdout)")
	svg := fs.String("svg", "", "write the SVG chart to `file` (default: none)")
	header := fs.String("header", "", "Markdown `file` copied verbatim above the tables (machine context)")
	self := fs.String("self", reportDefaultSelf, "`label` of the proxy the goals are about")
	peers := fs.String("peers", reportDefaultPeers, "comma-separated `labels` that count as peers for \"vs best peer\"")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *in == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: wsgate-bench report -in FILE [-md FILE] [-svg FILE] [-header FILE]")
		return 2
	}

	records, err := reportReadFile(*in)
	if err != nil {
		fmt.Fprintf(stderr, "wsgate-bench report: %v\n", err)
		return 1
	}
	var head []byte
	if *header != "" {
		if head, err = os.ReadFile(*header); err != nil {
			fmt.Fprintf(stderr, "wsgate-bench report: %v\n", err)
			return 1
		}
	}
	s := reportSummarize(records, *self, reportSplit(*peers))

	var mdBuf bytes.Buffer
	mdBuf.Write(head)
	if len(head) > 0 && !bytes.HasSuffix(head, []byte("\n\n")) {
		mdBuf.WriteString("\n")
	}
	reportWriteMarkdown(&mdBuf, s)
	if *md == "" || *md == "-" {
		_, err = stdout.Write(mdBuf.Bytes())
	} else {
		err = os.WriteFile(*md, mdBuf.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsgate-bench report: write markdown: %v\n", err)
		return 1
	}
	if *svg != "" {
		var svgBuf bytes.Buffer
		reportWriteSVG(&svgBuf, s)
		if err := os.WriteFile(*svg, svgBuf.Bytes(), 0o644); err != nil {
			fmt.Fprintf(stderr, "wsgate-bench report: write svg: %v\n", err)
			return 1
		}
	}
	return 0
}

func reportSplit(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func reportReadFile(path string) ([]reportRecord, error) {
	if path == "-" {
		return reportRead(os.Stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return reportRead(f, path)
}

// reportRead parses JSON lines. Blank lines are skipped. A line that is not
// a JSON object, or lacks label or mode, is an error naming the line.
func reportRead(r io.Reader, name string) ([]reportRecord, error) {
	var out []reportRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var rec reportRecord
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

// reportScenario names a result's scenario: its explicit scenario field,
// else the mode plus the message size for the message modes (rtt64,
// rtt16k, throughput16k), else the mode alone (connrate, idle).
func reportScenario(r *reportRecord) string {
	if r.Scenario != "" {
		return r.Scenario
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

// reportSummarize groups the records by scenario and label and takes the
// medians, over all runs and over the calm ones.
func reportSummarize(records []reportRecord, self string, peers []string) *reportSummary {
	s := reportBuild(records, self, peers)
	var calm []reportRecord
	recorded := false
	for i := range records {
		r := &records[i]
		v, ok := reportMaxSteal(r)
		switch {
		case !ok:
		case v <= reportStealLimit:
			calm = append(calm, *r)
		default:
			s.disturbed = append(s.disturbed, r)
		}
		recorded = recorded || ok
	}
	if recorded {
		s.calm = reportBuild(calm, self, peers)
	}
	return s
}

// reportBuild is reportSummarize without the steal-time views: the medians
// of records by scenario and label.
func reportBuild(records []reportRecord, self string, peers []string) *reportSummary {
	type key struct{ scenario, label string }
	groups := map[key][]*reportRecord{}
	modes := map[string]string{}
	for i := range records {
		r := &records[i]
		sc := reportScenario(r)
		if _, ok := modes[sc]; !ok {
			modes[sc] = r.Mode
		}
		k := key{sc, r.Label}
		groups[k] = append(groups[k], r)
	}

	s := &reportSummary{self: self, peers: peers}
	for _, sc := range reportOrdered(reportKeys(modes), reportScenarioOrder) {
		t := &reportTable{scenario: sc, mode: modes[sc], metrics: reportMetricsFor(modes[sc])}
		var labels []string
		for k := range groups {
			if k.scenario == sc {
				labels = append(labels, k.label)
			}
		}
		for _, label := range reportOrdered(labels, reportLabelOrder) {
			runs := groups[key{sc, label}]
			row := &reportRow{label: label, runs: len(runs), cells: map[string]reportCell{}}
			for _, r := range runs {
				row.errors += r.Errors
			}
			for _, m := range t.metrics {
				var vals []float64
				for _, r := range runs {
					if v, ok := m.value(r); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
						vals = append(vals, v)
					}
				}
				if len(vals) > 0 {
					row.cells[m.key] = reportCell{median: reportMedian(vals), n: len(vals)}
				}
			}
			t.rows = append(t.rows, row)
		}
		s.tables = append(s.tables, t)
	}
	return s
}

func reportKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// reportOrdered sorts names by their position in order, unknown names last
// and alphabetically.
func reportOrdered(names, order []string) []string {
	out := slices.Clone(names)
	rank := func(s string) int {
		if i := slices.Index(order, s); i >= 0 {
			return i
		}
		return len(order)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}

// reportMedian returns the median; for an even count, the mean of the two
// middle values. vals must not be empty; it is not modified.
func reportMedian(vals []float64) float64 {
	v := slices.Clone(vals)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (t *reportTable) row(label string) *reportRow {
	for _, r := range t.rows {
		if r.label == label {
			return r
		}
	}
	return nil
}

// bestPeer returns the lowest median of a cost metric among the peers, and
// which peer it is. ok is false when no peer has the figure.
func (s *reportSummary) bestPeer(t *reportTable, metric string) (best float64, who string, ok bool) {
	for _, p := range s.peers {
		r := t.row(p)
		if r == nil {
			continue
		}
		c, has := r.cells[metric]
		if !has {
			continue
		}
		if !ok || c.median < best {
			best, who, ok = c.median, p, true
		}
	}
	return best, who, ok
}

// ratio returns label's median of metric divided by the best peer's. ok is
// false when either figure is missing or the best peer's is not positive.
func (s *reportSummary) ratio(t *reportTable, label, metric string) (ratio float64, ok bool) {
	r := t.row(label)
	if r == nil {
		return 0, false
	}
	c, has := r.cells[metric]
	if !has {
		return 0, false
	}
	best, _, has := s.bestPeer(t, metric)
	if !has || best <= 0 {
		return 0, false
	}
	return c.median / best, true
}

func (s *reportSummary) table(scenario string) *reportTable {
	for _, t := range s.tables {
		if t.scenario == scenario {
			return t
		}
	}
	return nil
}

// reportGoalResult is a goal evaluated against the data.
type reportGoalResult struct {
	goal     reportGoal
	scenario string // the scenario used; "" when none had data
	ratio    float64
	ok       bool // a ratio could be computed
	pass     bool
	peer     string
}

func (s *reportSummary) evaluate(g reportGoal) reportGoalResult {
	res := reportGoalResult{goal: g}
	for _, sc := range g.scenarios {
		t := s.table(sc)
		if t == nil {
			continue
		}
		ratio, ok := s.ratio(t, s.self, g.metric)
		if !ok {
			continue
		}
		_, peer, _ := s.bestPeer(t, g.metric)
		res.scenario, res.ratio, res.ok, res.peer = sc, ratio, true, peer
		res.pass = ratio <= g.limit
		return res
	}
	return res
}

// reportWriteMarkdown writes the goals table and one table per scenario.
func reportWriteMarkdown(w io.Writer, s *reportSummary) {
	fmt.Fprintf(w, "### Goals (%s vs the best of %s)\n\n", s.self, strings.Join(s.peers, ", "))
	reportWriteGoals(w, s, false)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Figures are medians over the runs. \"vs best peer\" is the row's figure ÷ the lowest figure among")
	fmt.Fprintf(w, "%s (lower is better; the best peer shows 1.00×). \"—\" means not measured.\n", strings.Join(s.peers, ", "))
	if s.calm != nil {
		reportWriteCalmGoals(w, s.calm)
	}

	for _, t := range s.tables {
		fmt.Fprintf(w, "\n### %s\n\n", t.scenario)
		head := []string{"Proxy", "runs"}
		for _, m := range t.metrics {
			head = append(head, m.title)
			if m.cost {
				head = append(head, "vs best peer")
			}
		}
		head = append(head, "errors")
		fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
		fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(head)-1))
		for _, r := range t.rows {
			label := r.label
			if label == reportDirect {
				label = "direct (no proxy, ws://)"
			}
			cols := []string{label, fmt.Sprint(r.runs)}
			for _, m := range t.metrics {
				c, has := r.cells[m.key]
				if has {
					cols = append(cols, reportFormat(c.median, m.digits))
				} else {
					cols = append(cols, "—")
				}
				if m.cost {
					if ratio, ok := s.ratio(t, r.label, m.key); ok && r.label != reportDirect {
						cols = append(cols, fmt.Sprintf("%.2f×", ratio))
					} else {
						cols = append(cols, "—")
					}
				}
			}
			cols = append(cols, reportFormat(float64(r.errors), 0))
			fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
		}
	}
	reportWriteDisturbed(w, s)
}

// reportWriteCalmGoals writes the goals table again over the runs the host
// left alone, with how many runs are behind each side of the ratio.
func reportWriteCalmGoals(w io.Writer, s *reportSummary) {
	fmt.Fprintf(w, "\n### Goals over the runs the host left alone (steal ≤ %.0f%%)\n\n", reportStealLimit)
	fmt.Fprintf(w, "The same goals over only the runs whose steal time stayed at or under %.0f%% (those not listed under\n", reportStealLimit)
	fmt.Fprintln(w, "\"Runs disturbed by the host\"): a check on the table above when steal fell unevenly on the targets.")
	fmt.Fprintf(w, "Few runs make a weak median; the runs column counts them (%s / best peer).\n\n", s.self)
	reportWriteGoals(w, s, true)
}

// reportWriteGoals writes the goals table of s; with runs, a column of how
// many runs are behind each side of the ratio.
func reportWriteGoals(w io.Writer, s *reportSummary, runs bool) {
	head, rule, none := "| Goal | Scenario | Target | Measured | Best peer |", "|---|---|---|---|---|", " — | — |"
	if runs {
		head, rule, none = head+" runs |", rule+"---|", none+" — |"
	}
	fmt.Fprintln(w, head+" Result |")
	fmt.Fprintln(w, rule+"---|")
	for _, g := range reportGoals {
		res := s.evaluate(g)
		target := fmt.Sprintf("≤ %.1f×", g.limit)
		if !res.ok {
			fmt.Fprintf(w, "| %s | %s | %s |%s n/a |\n", g.name, strings.Join(g.scenarios, " or "), target, none)
			continue
		}
		measured := fmt.Sprintf("%.2f× | %s |", res.ratio, res.peer)
		if runs {
			t := s.table(res.scenario)
			n := func(label string) int { return t.row(label).cells[g.metric].n }
			measured += fmt.Sprintf(" %d / %d |", n(s.self), n(res.peer))
		}
		verdict := "MISS"
		if res.pass {
			verdict = "PASS"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s %s |\n", g.name, res.scenario, target, measured, verdict)
	}
}

// reportWriteDisturbed lists the runs during which the hypervisor took more
// than reportStealLimit of a CPU's time: their figures are in the medians,
// but a reader comparing the per-run lines should know which ones to doubt.
func reportWriteDisturbed(w io.Writer, s *reportSummary) {
	if len(s.disturbed) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Runs disturbed by the host\n\n")
	fmt.Fprintf(w, "In these runs the hypervisor ran other guests for more than %.0f%% of a CPU's time (steal time):\n", reportStealLimit)
	fmt.Fprintln(w, "every figure of such a run is worse than the machine's, whichever proxy it measured.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scenario | Proxy | started | host steal % per CPU |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range s.disturbed {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", reportScenario(r), r.Label, cmp.Or(r.StartedAt, "—"), stealLine(r.StealPct))
	}
}

// reportFormat prints v with the given decimals and thousands separators.
func reportFormat(v float64, digits int) string {
	s := fmt.Sprintf("%.*f", digits, v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// SVG layout, in pixels.
const (
	reportSVGWidth    = 760
	reportSVGLabelW   = 150
	reportSVGValueW   = 110
	reportSVGBarH     = 18
	reportSVGBarGap   = 6
	reportSVGTitleH   = 28
	reportSVGPanelGap = 18
	reportSVGMargin   = 16
)

// reportColors gives each well-known label a fixed colour; others cycle
// through the rest of the palette.
var reportColors = map[string]string{
	"wsgate":  "#2b7bb9",
	"haproxy": "#7a7a7a",
	"nginx":   "#3c9a5f",
	"caddy":   "#c9822b",
	"direct":  "#b0b0b0",
}

var reportPalette = []string{"#8e5ea2", "#c45850", "#4bc0c0", "#e8c3b9"}

// reportWriteSVG writes a standalone SVG: one panel per per-unit cost
// (scenario × metric), one horizontal bar per label with its value.
func reportWriteSVG(w io.Writer, s *reportSummary) {
	type bar struct {
		label string
		value float64
	}
	type panel struct {
		title string
		bars  []bar
		max   float64
	}
	var panels []panel
	for _, t := range s.tables {
		for _, m := range t.metrics {
			if !m.cost {
				continue
			}
			p := panel{title: fmt.Sprintf("%s — %s (lower is better)", t.scenario, m.title)}
			for _, r := range t.rows {
				c, has := r.cells[m.key]
				if !has {
					continue
				}
				p.bars = append(p.bars, bar{label: r.label, value: c.median})
				p.max = math.Max(p.max, c.median)
			}
			if len(p.bars) > 0 {
				panels = append(panels, p)
			}
		}
	}

	height := reportSVGMargin
	for _, p := range panels {
		height += reportSVGTitleH + len(p.bars)*(reportSVGBarH+reportSVGBarGap) + reportSVGPanelGap
	}
	if len(panels) == 0 {
		height += reportSVGTitleH
	}
	height += reportSVGMargin

	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		reportSVGWidth, height, reportSVGWidth, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	y := reportSVGMargin
	if len(panels) == 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d">no per-unit figures in the input</text>`+"\n", reportSVGMargin, y+16)
	}
	colorOf := map[string]string{}
	next := 0
	barMax := reportSVGWidth - reportSVGMargin - reportSVGLabelW - reportSVGValueW
	for _, p := range panels {
		fmt.Fprintf(w, `<text x="%d" y="%d" font-weight="bold" font-size="13">%s</text>`+"\n",
			reportSVGMargin, y+18, reportXMLEscape(p.title))
		y += reportSVGTitleH
		for _, b := range p.bars {
			c, ok := reportColors[b.label]
			if !ok {
				if c, ok = colorOf[b.label]; !ok {
					c = reportPalette[next%len(reportPalette)]
					colorOf[b.label] = c
					next++
				}
			}
			width := 0.0
			if p.max > 0 && b.value > 0 {
				width = math.Max(1, float64(barMax)*b.value/p.max)
			}
			x := reportSVGMargin + reportSVGLabelW
			fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n",
				x-8, y+reportSVGBarH-5, reportXMLEscape(b.label))
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
				x, y, width, reportSVGBarH, c)
			fmt.Fprintf(w, `<text x="%.1f" y="%d">%s</text>`+"\n",
				float64(x)+width+6, y+reportSVGBarH-5, reportXMLEscape(reportFormat(b.value, reportSVGDigits(b.value))))
			y += reportSVGBarH + reportSVGBarGap
		}
		y += reportSVGPanelGap
	}
	fmt.Fprintln(w, `</svg>`)
}

func reportSVGDigits(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	default:
		return 2
	}
}

func reportXMLEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}
