package report

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
)

// SVG layout, in pixels.
const (
	svgWidth    = 760
	svgLabelW   = 150
	svgValueW   = 110
	svgBarH     = 18
	svgBarGap   = 6
	svgTitleH   = 28
	svgPanelGap = 18
	svgMargin   = 16
)

// colors gives each well-known label a fixed colour; others cycle through
// palette.
var (
	colors = map[string]string{
		"wsgate":  "#2b7bb9",
		"haproxy": "#7a7a7a",
		"nginx":   "#3c9a5f",
		"caddy":   "#c9822b",
		"direct":  "#b0b0b0",
	}
	palette = []string{"#8e5ea2", "#c45850", "#4bc0c0", "#e8c3b9"}
)

// WriteSVG writes a standalone SVG chart: one panel per per-unit cost
// (scenario × metric), one horizontal bar per label with its value. It
// returns w's error, if any.
func (s *Summary) WriteSVG(w io.Writer) error {
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

	height := svgMargin
	for _, p := range panels {
		height += svgTitleH + len(p.bars)*(svgBarH+svgBarGap) + svgPanelGap
	}
	if len(panels) == 0 {
		height += svgTitleH
	}
	height += svgMargin

	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	y := svgMargin
	if len(panels) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no per-unit figures in the input</text>`+"\n", svgMargin, y+16)
	}
	colorOf := map[string]string{}
	next := 0
	barMax := svgWidth - svgMargin - svgLabelW - svgValueW
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold" font-size="13">%s</text>`+"\n",
			svgMargin, y+18, xmlEscape(p.title))
		y += svgTitleH
		for _, br := range p.bars {
			c, ok := colors[br.label]
			if !ok {
				if c, ok = colorOf[br.label]; !ok {
					c = palette[next%len(palette)]
					colorOf[br.label] = c
					next++
				}
			}
			width := 0.0
			if p.max > 0 && br.value > 0 {
				width = math.Max(1, float64(barMax)*br.value/p.max)
			}
			x := svgMargin + svgLabelW
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n",
				x-8, y+svgBarH-5, xmlEscape(br.label))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
				x, y, width, svgBarH, c)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n",
				float64(x)+width+6, y+svgBarH-5, xmlEscape(format(br.value, svgDigits(br.value))))
			y += svgBarH + svgBarGap
		}
		y += svgPanelGap
	}
	fmt.Fprintln(&b, `</svg>`)
	_, err := w.Write(b.Bytes())
	return err
}

// svgDigits is how many decimals a bar's value gets: fewer as it grows.
func svgDigits(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	default:
		return 2
	}
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}
