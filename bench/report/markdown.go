package report

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the goals table, the goals again over the runs the
// host left alone (when steal time was recorded), one table per scenario
// and the runs disturbed by the host. It returns w's error, if any.
func (s *Summary) WriteMarkdown(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "### Goals (%s vs the best of %s)\n\n", s.self, strings.Join(s.peers, ", "))
	s.writeGoals(&b, false)
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "Figures are medians over the runs. \"vs best peer\" is the row's figure ÷ the lowest figure among")
	fmt.Fprintf(&b, "%s (lower is better; the best peer shows 1.00×). \"—\" means not measured.\n", strings.Join(s.peers, ", "))
	if s.calm != nil {
		s.calm.writeCalmGoals(&b)
	}
	for _, t := range s.tables {
		s.writeTable(&b, t)
	}
	s.writeDisturbed(&b)
	_, err := w.Write(b.Bytes())
	return err
}

// writeTable writes one scenario's table.
func (s *Summary) writeTable(b *bytes.Buffer, t *table) {
	fmt.Fprintf(b, "\n### %s\n\n", t.scenario)
	head := []string{"Proxy", "runs"}
	for _, m := range t.metrics {
		head = append(head, m.title)
		if m.cost {
			head = append(head, "vs best peer")
		}
	}
	head = append(head, "errors")
	fmt.Fprintf(b, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(b, "|---|%s\n", strings.Repeat("---:|", len(head)-1))
	for _, r := range t.rows {
		label := r.label
		if label == direct {
			label = "direct (no proxy, ws://)"
		}
		cols := []string{label, fmt.Sprint(r.runs)}
		for _, m := range t.metrics {
			c, has := r.cells[m.key]
			if has {
				cols = append(cols, format(c.median, m.digits))
			} else {
				cols = append(cols, "—")
			}
			if m.cost {
				if ratio, ok := s.ratio(t, r.label, m.key); ok && r.label != direct {
					cols = append(cols, fmt.Sprintf("%.2f×", ratio))
				} else {
					cols = append(cols, "—")
				}
			}
		}
		cols = append(cols, format(float64(r.errors), 0))
		fmt.Fprintf(b, "| %s |\n", strings.Join(cols, " | "))
	}
}

// writeCalmGoals writes the goals table of s, the summary over the runs the
// host left alone, with how many runs are behind each side of the ratio.
func (s *Summary) writeCalmGoals(b *bytes.Buffer) {
	fmt.Fprintf(b, "\n### Goals over the runs the host left alone (steal ≤ %.0f%%)\n\n", stealLimit)
	fmt.Fprintf(b, "The same goals over only the runs whose steal time stayed at or under %.0f%% (those not listed under\n", stealLimit)
	fmt.Fprintln(b, "\"Runs disturbed by the host\"): a check on the table above when steal fell unevenly on the targets.")
	fmt.Fprintf(b, "Few runs make a weak median; the runs column counts them (%s / best peer).\n\n", s.self)
	s.writeGoals(b, true)
}

// writeGoals writes the goals table of s; with runs, a column of how many
// runs are behind each side of the ratio.
func (s *Summary) writeGoals(b *bytes.Buffer, runs bool) {
	head, rule, none := "| Goal | Scenario | Target | Measured | Best peer |", "|---|---|---|---|---|", " — | — |"
	if runs {
		head, rule, none = head+" runs |", rule+"---|", none+" — |"
	}
	fmt.Fprintln(b, head+" Result |")
	fmt.Fprintln(b, rule+"---|")
	for _, g := range goals {
		res := s.evaluate(g)
		target := fmt.Sprintf("≤ %.1f×", g.limit)
		if !res.ok {
			fmt.Fprintf(b, "| %s | %s | %s |%s n/a |\n", g.name, strings.Join(g.scenarios, " or "), target, none)
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
		fmt.Fprintf(b, "| %s | %s | %s | %s %s |\n", g.name, res.scenario, target, measured, verdict)
	}
}

// writeDisturbed lists the runs during which the hypervisor took more than
// stealLimit of a CPU's time: their figures are in the medians, but a
// reader comparing the per-run lines should know which ones to doubt.
func (s *Summary) writeDisturbed(b *bytes.Buffer) {
	if len(s.disturbed) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Runs disturbed by the host\n\n")
	fmt.Fprintf(b, "In these runs the hypervisor ran other guests for more than %.0f%% of a CPU's time (steal time):\n", stealLimit)
	fmt.Fprintln(b, "every figure of such a run is worse than the machine's, whichever proxy it measured.")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| Scenario | Proxy | started | host steal % per CPU |")
	fmt.Fprintln(b, "|---|---|---|---|")
	for _, r := range s.disturbed {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", r.scenarioName(), r.Label, cmp.Or(r.StartedAt, "—"), FormatSteal(r.StealPct))
	}
}

// format prints v with the given decimals and thousands separators.
func format(v float64, digits int) string {
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
