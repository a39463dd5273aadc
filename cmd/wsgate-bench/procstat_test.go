package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestProcSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-pid reads /proc, which only Linux has")
	}
	ps := procSet{os.Getpid()}
	before, err := ps.cpu()
	if err != nil {
		t.Fatalf("cpu() error: %v", err)
	}
	// Spin until the kernel has charged at least two clock ticks more, or
	// give up after two seconds.
	var sink uint64
	var after cpuTimes
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		for i := range 1_000_000 {
			sink += uint64(i) * uint64(i)
		}
		if after, err = ps.cpu(); err != nil {
			t.Fatalf("cpu() error: %v", err)
		}
		if after.total-before.total >= 2*time.Second/clockTicks {
			break
		}
	}
	_ = sink
	if d := after.sub(before); d.total < 2*time.Second/clockTicks || d.sys < 0 || d.sys > d.total {
		t.Errorf("cpu() went from %+v to %+v over a busy loop, want the total to grow and the system part within it", before, after)
	}

	rss, err := ps.rssKB()
	if err != nil || rss <= 0 {
		t.Errorf("rssKB() = %d, %v, want > 0", rss, err)
	}
	if lim, err := readOpenFileLimit(os.Getpid()); err != nil || lim == 0 {
		t.Errorf("readOpenFileLimit() = %d, %v, want non-zero", lim, err)
	}
	if _, err := (procSet{os.Getpid(), 1 << 30}).cpu(); err == nil {
		t.Errorf("cpu() of a missing pid: no error")
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		in           string
		utime, stime uint64
		wantErr      bool
	}{
		{"plain", "1234 (nginx) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 200", 250, 75, false},
		{"name with spaces and parens", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1", 3, 4, false},
		{"no name", "77 a R 1", 0, 0, true},
		{"too short", "77 (x) R 1 2 3", 0, 0, true},
		{"not a number", "77 (x) R 1 77 77 0 -1 0 0 0 0 0 x 4 0", 0, 0, true},
		{"stime not a number", "77 (x) R 1 77 77 0 -1 0 0 0 0 0 3 y 0", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, s, err := parseProcStat([]byte(tc.in))
			if (err != nil) != tc.wantErr || u != tc.utime || s != tc.stime {
				t.Errorf("parseProcStat() = %d, %d, %v; want %d, %d (error %v)", u, s, err, tc.utime, tc.stime, tc.wantErr)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	t.Parallel()
	status := "Name:\tnginx\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t1\n"
	if got, err := parseStatusKB([]byte(status), "VmRSS:"); err != nil || got != 12345 {
		t.Errorf("parseStatusKB(VmRSS) = %d, %v, want 12345", got, err)
	}
	if _, err := parseStatusKB([]byte("Name:\tkthreadd\n"), "VmRSS:"); err == nil {
		t.Errorf("parseStatusKB without VmRSS: no error")
	}
	if _, err := parseStatusKB([]byte("VmRSS:\t12 MB\n"), "VmRSS:"); err == nil {
		t.Errorf("parseStatusKB with a bad unit: no error")
	}
}

func TestParseCPUStats(t *testing.T) {
	t.Parallel()
	before := "cpu  10 0 10 100 0 0 0 5 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 5 0 0\nintr 1 2 3\n"
	after := "cpu  40 0 40 200 0 0 0 25 0 0\ncpu0 20 0 20 100 0 0 0 10 0 0\ncpu1 20 0 20 100 0 0 0 20 2 0\nintr 1 2 3\n"
	b, err := parseCPUStats([]byte(before))
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseCPUStats([]byte(after))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || a["cpu1"] != (cpuStat{steal: 20, total: 160}) {
		t.Errorf("parseCPUStats = %+v, want cpu0 and cpu1, cpu1 = {20 160} (guest not added)", a)
	}
	// cpu0: 10 of 90 ticks stolen; cpu1: 15 of 95.
	got := stealPct(b, a)
	if len(got) != 2 || got["cpu0"] != 11.1 || got["cpu1"] != 15.8 {
		t.Errorf("stealPct = %v, want cpu0 11.1, cpu1 15.8", got)
	}
	if _, err := parseCPUStats([]byte("cpu0 1 2 3\n")); err == nil {
		t.Error("a short cpu line: no error")
	}
	if _, err := parseCPUStats([]byte("intr 1\n")); err == nil {
		t.Error("no cpu lines: no error")
	}
	if _, err := readCPUStats(); err != nil && runtime.GOOS == "linux" {
		t.Errorf("readCPUStats on this machine: %v", err)
	}
}

func TestSelfCPU(t *testing.T) {
	// Spin until selfCPU has counted 20ms more, or give up after two
	// seconds: every system's clock for CPU time is finer than that.
	before := selfCPU()
	var sink uint64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && selfCPU()-before < 20*time.Millisecond; {
		for i := range 1_000_000 {
			sink += uint64(i) * uint64(i)
		}
	}
	_ = sink
	if d := selfCPU() - before; d < 20*time.Millisecond || d > time.Minute {
		t.Errorf("selfCPU() grew by %v over a busy loop, want at least 20ms", d)
	}
}
