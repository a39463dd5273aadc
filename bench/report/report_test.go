package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

const fixture = "testdata/results.jsonl"

// defaultPeers is DefaultPeers split, as wsgate-bench report does.
var defaultPeers = strings.Split(DefaultPeers, ",")

func loadFixture(t *testing.T) *Summary {
	t.Helper()
	f, err := os.Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := Read(f, fixture)
	if err != nil {
		t.Fatalf("Read(%s) = %v", fixture, err)
	}
	return Summarize(recs, DefaultSelf, defaultPeers)
}

func TestScenarioName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{"rtt 64", Record{Mode: "rtt", Size: 64}, "rtt64"},
		{"rtt 16 KiB", Record{Mode: "rtt", Size: 16384}, "rtt16k"},
		{"throughput 16 KiB", Record{Mode: "throughput", Size: 16384}, "throughput16k"},
		{"connrate ignores size", Record{Mode: "connrate", Size: 64}, "connrate"},
		{"idle", Record{Mode: "idle"}, "idle"},
		{"explicit scenario wins", Record{Mode: "rtt", Size: 64, Scenario: "warm"}, "warm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.rec.scenarioName(); got != tc.want {
				t.Errorf("scenarioName(%+v) = %q, want %q", tc.rec, got, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{16, 15}, 15.5},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median(%v) changed its input to %v", tc.in, in)
				break
			}
		}
	}
}

func TestSummarizeMedians(t *testing.T) {
	t.Parallel()
	s := loadFixture(t)

	var got []string
	for _, tb := range s.tables {
		got = append(got, tb.scenario)
	}
	want := []string{"rtt64", "throughput16k", "connrate", "connresume", "idle", "custom"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("scenarios = %v, want %v", got, want)
	}

	rtt := s.table("rtt64")
	var labels []string
	for _, r := range rtt.rows {
		labels = append(labels, r.label)
	}
	if want := "wsgate,haproxy,nginx,caddy,direct"; strings.Join(labels, ",") != want {
		t.Errorf("rtt64 rows = %v, want %s", labels, want)
	}

	cells := []struct {
		scenario, label, metric string
		want                    float64
		runs                    int
	}{
		{"rtt64", "wsgate", "cpu_us_per_msg", 11, 3},
		{"rtt64", "wsgate", "p99_us", 200, 3},
		{"rtt64", "wsgate", "msgs_per_s", 200, 3},
		{"rtt64", "nginx", "cpu_us_per_msg", 15.5, 2},
		{"rtt64", "nginx", "p99_us", 185, 2},
		{"rtt64", "haproxy", "cpu_us_per_msg", 21, 3},
		{"rtt64", "direct", "p99_us", 50, 1},
		{"throughput16k", "wsgate", "mb_per_s", 80, 1},
		{"connrate", "wsgate", "cpu_us_per_handshake", 200, 1},
		{"idle", "haproxy", "rss_per_conn_bytes", 6000, 1},
	}
	for _, c := range cells {
		row := s.table(c.scenario).row(c.label)
		if row == nil {
			t.Errorf("%s: no row for %s", c.scenario, c.label)
			continue
		}
		got, ok := row.cells[c.metric]
		if !ok {
			t.Errorf("%s/%s/%s: missing", c.scenario, c.label, c.metric)
			continue
		}
		if got.median != c.want || got.n != c.runs {
			t.Errorf("%s/%s/%s = %v over %d runs, want %v over %d", c.scenario, c.label, c.metric, got.median, got.n, c.want, c.runs)
		}
	}
	if _, ok := rtt.row("direct").cells["cpu_us_per_msg"]; ok {
		t.Errorf("direct has a CPU figure without any proc data")
	}
	if got := rtt.row("wsgate").errors; got != 1 {
		t.Errorf("rtt64/wsgate errors = %d, want 1 (summed over runs)", got)
	}
}

func TestGoals(t *testing.T) {
	t.Parallel()
	s := loadFixture(t)
	tests := []struct {
		metric   string
		scenario string
		ratio    float64
		peer     string
		pass     bool
	}{
		{"round-trip p99 latency (64 B)", "rtt64", 200.0 / 150, "haproxy", false},
		{"round-trip p99.9 latency (64 B)", "rtt64", 120.0 / 205, "nginx", true},
		{"CPU per new connection (TLS + upgrade)", "connrate", 200.0 / 250, "nginx", true},
		{"RSS per idle connection", "idle", 5000.0 / 6000, "haproxy", false},
		{"CPU per 64 B round trip", "rtt64", 11 / 15.5, "nginx", true},
		// User time is CPU minus the kernel's part, over the runs that
		// report both: wsgate 10 - 7.5; nginx the median of 15 - 12 and
		// 16 - 12.
		{"user-space CPU per 64 B round trip", "rtt64", 2.5 / 3.5, "nginx", false},
		{"CPU per 16 KiB message", "throughput16k", 40.0 / 45, "haproxy", false},
	}
	if len(tests) != len(goals) {
		t.Fatalf("%d goals, want %d", len(goals), len(tests))
	}
	for i, tc := range tests {
		res := s.evaluate(goals[i])
		if res.goal.name != tc.metric {
			t.Errorf("goal %d = %q, want %q", i, res.goal.name, tc.metric)
		}
		if !res.ok || res.scenario != tc.scenario || math.Abs(res.ratio-tc.ratio) > 1e-9 || res.peer != tc.peer || res.pass != tc.pass {
			t.Errorf("evaluate(%q) = {ok %v, %s, %.4f, %s, pass %v}, want {ok true, %s, %.4f, %s, pass %v}",
				tc.metric, res.ok, res.scenario, res.ratio, res.peer, res.pass, tc.scenario, tc.ratio, tc.peer, tc.pass)
		}
	}
}

func TestGoalFallbackAndMissing(t *testing.T) {
	t.Parallel()
	in := `{"label":"wsgate","mode":"rtt","size":16384,"messages":1,"proc":{"cpu_us_per_msg":8}}
{"label":"caddy","mode":"rtt","size":16384,"messages":1,"proc":{"cpu_us_per_msg":10}}
`
	recs, err := Read(strings.NewReader(in), "in")
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(recs, DefaultSelf, defaultPeers)
	res := s.evaluate(goals[len(goals)-1])
	if !res.ok || res.scenario != "rtt16k" || res.ratio != 0.8 || !res.pass {
		t.Errorf("16 KiB goal without throughput16k = {ok %v, %q, %v, pass %v}, want {ok true, rtt16k, 0.8, pass true}",
			res.ok, res.scenario, res.ratio, res.pass)
	}
	if res := s.evaluate(goals[0]); res.ok {
		t.Errorf("p99 goal with no rtt64 data = ok, want n/a")
	}
	var md bytes.Buffer
	if err := s.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| CPU per 64 B round trip | rtt64 | ≤ 1.0× | — | — | n/a |") {
		t.Errorf("markdown lacks the n/a goal line:\n%s", md.String())
	}
	if strings.Contains(md.String(), "left alone") || strings.Contains(md.String(), "disturbed by the host") {
		t.Errorf("results without steal time got steal sections:\n%s", md.String())
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	s := loadFixture(t)
	var buf bytes.Buffer
	if err := s.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"| round-trip p99 latency (64 B) | rtt64 | ≤ 1.0× | 1.33× | haproxy | MISS |",
		"| round-trip p99.9 latency (64 B) | rtt64 | ≤ 1.0× | 0.59× | nginx | PASS |",
		"| CPU per new connection (TLS + upgrade) | connrate | ≤ 0.8× | 0.80× | nginx | PASS |",
		"| RSS per idle connection | idle | ≤ 0.5× | 0.83× | haproxy | MISS |",
		"| CPU per 64 B round trip | rtt64 | ≤ 1.0× | 0.71× | nginx | PASS |",
		"| user-space CPU per 64 B round trip | rtt64 | ≤ 0.7× | 0.71× | nginx | MISS |",
		"| CPU per 16 KiB message | throughput16k | ≤ 0.8× | 0.89× | haproxy | MISS |",
		"### rtt64",
		"| Proxy | runs | proxy CPU µs/msg | vs best peer | of which kernel µs | of which user µs | p50 µs | p99 µs | vs best peer | p99.9 µs | msgs/s | host steal % | errors |",
		// The kernel part is the median over the runs that report it:
		// one for wsgate (10 × 0.75/1), two for nginx (15 × 0.8, 16 × 0.75).
		// Host steal is the median of each run's highest CPU: 1 and 12.
		"| wsgate | 3 | 11.00 | 0.71× | 7.50 | 2.50 | 55 | 200 | 1.33× | 120 | 200 | 6.5 | 1 |",
		"| nginx | 2 | 15.50 | 1.00× | 12.00 | 3.50 | 80 | 185 | 1.23× | 205 | 100 | 0.5 | 0 |",
		"| haproxy | 3 | 21.00 | 1.35× | — | — | 70 | 150 | 1.00× | — | 100 | — | 0 |",
		"| direct (no proxy, ws://) | 1 | — | — | — | — | 20 | 50 | — | — | 500 | — | 0 |",
		// connrate with -resume is a scenario of its own, with the share
		// of handshakes that did resume.
		"### connresume",
		"| wsgate | 1 | 110.0 | 0.85× | — | 700 | 100 | — | 0 |",
		"| nginx | 1 | 130.0 | 1.00× | — | 650 | 75 | — | 0 |",
		"| direct (no proxy, ws://) | 1 | — | — | — | 900 | — | — | 0 |",
		// Over the calm runs only (steal recorded and at most 5%): wsgate's
		// first run (10 µs) against nginx's first (15 µs); goals without
		// calm runs on both sides are n/a.
		"### Goals over the runs the host left alone (steal ≤ 5%)",
		"| CPU per 64 B round trip | rtt64 | ≤ 1.0× | 0.67× | nginx | 1 / 1 | PASS |",
		"| CPU per new connection (TLS + upgrade) | connrate | ≤ 0.8× | — | — | — | n/a |",
		// Only the run above 5% is listed as disturbed, CPUs in order.
		"### Runs disturbed by the host",
		"| rtt64 | wsgate | 2026-11-27T03:31:06Z | cpu0 12.0%, cpu1 3.0% |",
		"| wsgate | 1 | 5,000 | 0.83× | 9,900 | 0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q; got:\n%s", want, md)
		}
	}
	if strings.Contains(md, "cpu0 1.0%") {
		t.Errorf("a run with 1%% steal is listed as disturbed:\n%s", md)
	}
}

func TestSVGIsXML(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"fixture", "empty"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := &Summary{self: DefaultSelf}
			if name == "fixture" {
				s = loadFixture(t)
			}
			var buf bytes.Buffer
			if err := s.WriteSVG(&buf); err != nil {
				t.Fatal(err)
			}
			dec := xml.NewDecoder(&buf)
			var root string
			rects, texts := 0, 0
			for {
				tok, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("SVG does not parse as XML: %v\n%s", err, buf.String())
				}
				if se, ok := tok.(xml.StartElement); ok {
					if root == "" {
						root = se.Name.Local
						if se.Name.Space != "http://www.w3.org/2000/svg" {
							t.Errorf("root namespace = %q, want the SVG namespace", se.Name.Space)
						}
					}
					switch se.Name.Local {
					case "rect":
						rects++
					case "text":
						texts++
					}
				}
			}
			if root != "svg" {
				t.Errorf("root element = %q, want svg", root)
			}
			if name == "fixture" {
				// Panels: rtt64 CPU (4 bars) and p99 (5), throughput16k CPU (2),
				// connrate CPU (3), connresume CPU (2), idle RSS (2), custom
				// p99 (1): 19 bars plus the background.
				if rects != 20 {
					t.Errorf("SVG has %d rects, want 20", rects)
				}
			} else if texts != 1 {
				t.Errorf("empty SVG has %d texts, want 1 (the notice)", texts)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	t.Parallel()
	good := `{"label":"wsgate","mode":"rtt","size":64}`
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"not json", good + "\n\n" + "wsgate rtt 64\n", "in.jsonl:3: not a wsgate-bench JSON result"},
		{"truncated", good + "\n" + `{"label":"x","mode":"rtt"` + "\n", "in.jsonl:2: not a wsgate-bench JSON result"},
		{"wrong type", `{"label":"x","mode":"rtt","size":"big"}`, "in.jsonl:1: not a wsgate-bench JSON result"},
		{"no label", good + "\n" + `{"mode":"rtt"}`, "in.jsonl:2: result has no label"},
		{"no mode", `{"label":"x"}`, "in.jsonl:1: result has no mode"},
		{"empty", "\n\n", "in.jsonl: no results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Read(strings.NewReader(tc.in), "in.jsonl")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Read() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestGolden pins the whole output for the fixture, byte for byte:
// results.md and results.svg in testdata were written by wsgate-bench
// report before this package was split out of it. After an intended change
// of the output, rewrite them with go test -run TestGolden -update.
func TestGolden(t *testing.T) {
	t.Parallel()
	s := loadFixture(t)
	for _, tc := range []struct {
		file  string
		write func(io.Writer) error
	}{
		{"testdata/results.md", s.WriteMarkdown},
		{"testdata/results.svg", s.WriteSVG},
	} {
		var got bytes.Buffer
		if err := tc.write(&got); err != nil {
			t.Fatalf("writing %s: %v", tc.file, err)
		}
		if *update {
			if err := os.WriteFile(tc.file, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("output differs from %s (rewrite it with -update if the change is intended):\n%s", tc.file, got.Bytes())
		}
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	s := loadFixture(t)
	if err := s.WriteMarkdown(failWriter{}); err == nil {
		t.Errorf("WriteMarkdown(failing writer) = nil, want the write error")
	}
	if err := s.WriteSVG(failWriter{}); err == nil {
		t.Errorf("WriteSVG(failing writer) = nil, want the write error")
	}
}

func TestFormatSteal(t *testing.T) {
	t.Parallel()
	got := FormatSteal(map[string]float64{"cpu10": 0.25, "cpu2": 12, "cpu0": 1.04})
	if want := "cpu0 1.0%, cpu2 12.0%, cpu10 0.2%"; got != want {
		t.Errorf("FormatSteal() = %q, want %q", got, want)
	}
}
