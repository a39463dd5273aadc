package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wsgate/wsgate/bench/report"
)

// reportCmd runs "wsgate-bench report": it reads the JSON lines the load
// generator printed with -json and writes the comparison that package
// report makes of them, as Markdown and optionally SVG. It returns the exit
// code: 0 on success, 1 when the input cannot be read or an output cannot
// be written, 2 for bad flags.
func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate-bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON lines `file` written by wsgate-bench -json (required; - for stdin)")
	md := fs.String("md", "", "write the Markdown tables to `file` (default: stdout)")
	svg := fs.String("svg", "", "write the SVG chart to `file` (default: none)")
	header := fs.String("header", "", "Markdown `file` copied verbatim above the tables (machine context)")
	self := fs.String("self", report.DefaultSelf, "`label` of the proxy the goals are about")
	peers := fs.String("peers", report.DefaultPeers, "comma-separated `labels` that count as peers for \"vs best peer\"")
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

	records, err := readResults(*in)
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
	s := report.Summarize(records, *self, splitLabels(*peers))

	var mdBuf bytes.Buffer
	mdBuf.Write(head)
	if len(head) > 0 && !bytes.HasSuffix(head, []byte("\n\n")) {
		mdBuf.WriteString("\n")
	}
	if err := s.WriteMarkdown(&mdBuf); err != nil {
		fmt.Fprintf(stderr, "wsgate-bench report: write markdown: %v\n", err)
		return 1
	}
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
		err := s.WriteSVG(&svgBuf)
		if err == nil {
			err = os.WriteFile(*svg, svgBuf.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "wsgate-bench report: write svg: %v\n", err)
			return 1
		}
	}
	return 0
}

// splitLabels splits a comma-separated list, dropping empty items.
func splitLabels(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// readResults reads a file of wsgate-bench -json lines; "-" is stdin.
func readResults(path string) ([]report.Record, error) {
	if path == "-" {
		return report.Read(os.Stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return report.Read(f, path)
}
