// Package report turns the JSON lines that "wsgate-bench -json" prints
// (several runs per proxy and scenario) into a comparison: the median of
// each figure over the runs, a Markdown table per scenario plus a goals
// table, and a standalone SVG bar chart of the per-unit costs.
//
// [Read] parses the lines into [Record] values, [Summarize] groups them by
// scenario and label, and [Summary.WriteMarkdown] and [Summary.WriteSVG]
// render the result. "wsgate-bench report" is the command around it, and
// bench/compare.sh runs that after its runs.
//
// Labels "wsgate", "haproxy", "nginx", "caddy" and "direct" (the backend
// without a proxy) have fixed places in the tables and fixed colours in the
// chart; any other label follows them in alphabetical order.
package report
