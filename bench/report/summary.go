package report

import (
	"maps"
	"math"
	"slices"
	"sort"
)

// Summary is the medians of a set of records by scenario and label, ready
// to be written. It is not changed after Summarize returns it, so its
// writers may be called concurrently.
type Summary struct {
	self   string
	peers  []string
	tables []*table
	// disturbed are the runs with more than stealLimit steal, in input
	// order.
	disturbed []*Record
	// calm is the same summary over only the runs that recorded steal time
	// at or under stealLimit; nil when no run recorded it.
	calm *Summary
}

// cell is the median of one metric for one label in one scenario.
type cell struct {
	median float64
	n      int // runs that carried the figure
}

// row is one label within a scenario.
type row struct {
	label  string
	runs   int
	errors int64
	cells  map[string]cell // by metric key
}

// table is one scenario.
type table struct {
	scenario string
	mode     string
	metrics  []metric
	rows     []*row
}

// Summarize groups the records by scenario and label and takes the
// medians, over all runs and over the runs the host left alone (those
// whose steal time was recorded and stayed at or under 5%). self is the
// label the goals are about ([DefaultSelf] in wsgate-bench) and peers the
// labels it is compared with. The summary keeps pointers into records,
// which must not change afterwards.
func Summarize(records []Record, self string, peers []string) *Summary {
	s := build(records, self, peers)
	var calm []Record
	recorded := false
	for i := range records {
		r := &records[i]
		v, ok := r.maxSteal()
		switch {
		case !ok:
		case v <= stealLimit:
			calm = append(calm, *r)
		default:
			s.disturbed = append(s.disturbed, r)
		}
		recorded = recorded || ok
	}
	if recorded {
		s.calm = build(calm, self, peers)
	}
	return s
}

// build is Summarize without the steal-time views: the medians of records
// by scenario and label.
func build(records []Record, self string, peers []string) *Summary {
	type key struct{ scenario, label string }
	groups := map[key][]*Record{}
	modes := map[string]string{}
	for i := range records {
		r := &records[i]
		sc := r.scenarioName()
		if _, ok := modes[sc]; !ok {
			modes[sc] = r.Mode
		}
		k := key{sc, r.Label}
		groups[k] = append(groups[k], r)
	}

	s := &Summary{self: self, peers: peers}
	for _, sc := range ordered(slices.Collect(maps.Keys(modes)), scenarioOrder) {
		t := &table{scenario: sc, mode: modes[sc], metrics: metricsFor(modes[sc])}
		var labels []string
		for k := range groups {
			if k.scenario == sc {
				labels = append(labels, k.label)
			}
		}
		for _, label := range ordered(labels, labelOrder) {
			runs := groups[key{sc, label}]
			rw := &row{label: label, runs: len(runs), cells: map[string]cell{}}
			for _, r := range runs {
				rw.errors += r.Errors
			}
			for _, m := range t.metrics {
				var vals []float64
				for _, r := range runs {
					if v, ok := m.value(r); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
						vals = append(vals, v)
					}
				}
				if len(vals) > 0 {
					rw.cells[m.key] = cell{median: median(vals), n: len(vals)}
				}
			}
			t.rows = append(t.rows, rw)
		}
		s.tables = append(s.tables, t)
	}
	return s
}

// ordered sorts names by their position in order, unknown names last and
// alphabetically.
func ordered(names, order []string) []string {
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

// median returns the median; for an even count, the mean of the two
// middle values. vals must not be empty; it is not modified.
func median(vals []float64) float64 {
	v := slices.Clone(vals)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (t *table) row(label string) *row {
	for _, r := range t.rows {
		if r.label == label {
			return r
		}
	}
	return nil
}

func (s *Summary) table(scenario string) *table {
	for _, t := range s.tables {
		if t.scenario == scenario {
			return t
		}
	}
	return nil
}

// bestPeer returns the lowest median of a cost metric among the peers, and
// which peer it is. ok is false when no peer has the figure.
func (s *Summary) bestPeer(t *table, metric string) (best float64, who string, ok bool) {
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
func (s *Summary) ratio(t *table, label, metric string) (ratio float64, ok bool) {
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

// goalResult is a goal evaluated against the data.
type goalResult struct {
	goal     goal
	scenario string // the scenario used; "" when none had data
	ratio    float64
	ok       bool // a ratio could be computed
	pass     bool
	peer     string
}

func (s *Summary) evaluate(g goal) goalResult {
	res := goalResult{goal: g}
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
