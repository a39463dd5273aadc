// Package bench holds the benchmark scripts (compare.sh, scale.sh) and,
// here, a smoke test that runs scale.sh at its smallest (Linux: the
// script reads /proc).
package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScaleScript runs bench/scale.sh with real processes at a tiny size
// (1 process × 50 connections, then 2 processes × 50 on one port) and
// checks what it reports: every connection held, by wsgate's count, and
// no failure. The full run (4 × 9,600) takes minutes and stays out of CI.
func TestScaleScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs two phases")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "scale.sh", "-procs", "2", "-conns", "50", "-single-conns", "50",
		"-backends", "2", "-hold", "1s", "-echo-duration", "1s", "-echo-conns", "4", "-out", out)
	// SIGTERM, not SIGKILL, on timeout or when this test binary dies (a
	// -timeout panic): the script's trap then stops every process it
	// started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 30 * time.Second
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scale.sh: %v\n%s", err, output)
	}

	want := map[string]int{"1proc": 1, "2proc": 2}
	held := map[string]int{}
	for _, row := range readTSV(t, filepath.Join(out, "results.tsv")) {
		phase := row["phase"]
		if _, ok := want[phase]; !ok {
			t.Errorf("results.tsv: phase %q, want one of 1proc, 2proc", phase)
			continue
		}
		want[phase]--
		n, err := strconv.Atoi(row["connections"])
		if err != nil {
			t.Fatalf("results.tsv: connections %q: %v", row["connections"], err)
		}
		held[phase] += n
		if row["refused"] != "0" || row["upgrades_not_ok"] != "0" {
			t.Errorf("results.tsv: phase %s process %s refused %s, upgrades not ok %s; want 0",
				phase, row["process"], row["refused"], row["upgrades_not_ok"])
		}
	}
	for phase, left := range want {
		if left != 0 {
			t.Errorf("results.tsv: %d rows of phase %s missing or extra", left, phase)
		}
	}
	for phase, n := range map[string]int{"1proc": 50, "2proc": 100} {
		if held[phase] != n {
			t.Errorf("phase %s held %d connections, want %d", phase, held[phase], n)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(md), "- failures: **0**"); got != 2 {
		t.Errorf("results.md reports no failure in %d phases, want 2:\n%s", got, md)
	}
}

// readTSV reads a tab-separated file with a header line into one map per
// row.
func readTSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var head []string
	var rows []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if head == nil {
			head = fields
			continue
		}
		if len(fields) != len(head) {
			t.Fatalf("%s: %d fields in %q, want %d", path, len(fields), sc.Text(), len(head))
		}
		row := map[string]string{}
		for i, h := range head {
			row[h] = fields[i]
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
