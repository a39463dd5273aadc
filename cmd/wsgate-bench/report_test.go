package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reportFixture and its golden outputs belong to package report; the
// command's defaults must reproduce them byte for byte.
const reportFixture = "../../bench/report/testdata/results"

func TestReportCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	header := filepath.Join(dir, "header.md")
	if err := os.WriteFile(header, []byte("## Machine\n\n- nproc: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	md, svg := filepath.Join(dir, "out.md"), filepath.Join(dir, "out.svg")
	var stdout, stderr bytes.Buffer
	if code := reportCmd([]string{"-in", reportFixture + ".jsonl", "-md", md, "-svg", svg, "-header", header}, &stdout, &stderr); code != 0 {
		t.Fatalf("reportCmd() = %d, want 0; stderr: %s", code, stderr.String())
	}
	wantMD, wantSVG := readFile(t, reportFixture+".md"), readFile(t, reportFixture+".svg")
	if got := readFile(t, md); got != "## Machine\n\n- nproc: 2\n\n"+wantMD {
		t.Errorf("markdown is not the header, a blank line, then the golden tables:\n%s", got)
	}
	if got := readFile(t, svg); got != wantSVG {
		t.Errorf("svg differs from %s.svg:\n%s", reportFixture, got)
	}

	stdout.Reset()
	if code := reportCmd([]string{"-in", reportFixture + ".jsonl"}, &stdout, &stderr); code != 0 || stdout.String() != wantMD {
		t.Errorf("reportCmd() without -md = %d, stdout %q; want 0 and the golden tables on stdout", code, stdout.String())
	}
	stdout.Reset()
	if code := reportCmd([]string{"-in", reportFixture + ".jsonl", "-self", "nginx", "-peers", " haproxy,,caddy "}, &stdout, &stderr); code != 0 ||
		!strings.HasPrefix(stdout.String(), "### Goals (nginx vs the best of haproxy, caddy)\n") {
		t.Errorf("reportCmd(-self nginx -peers ...) = %d, stdout %q; want 0 and goals of nginx against haproxy and caddy", code, stdout.String())
	}

	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"label\":\"a\",\"mode\":\"rtt\"}\noops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := reportCmd([]string{"-in", bad}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "bad.jsonl:2:") {
		t.Errorf("reportCmd(bad input) = %d, stderr %q; want 1 and the line number", code, stderr.String())
	}
	if code := reportCmd(nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("reportCmd(no -in) = %d, want 2", code)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
