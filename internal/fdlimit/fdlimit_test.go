package fdlimit

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestRaise(t *testing.T) {
	got, err := Raise()
	if err != nil {
		t.Fatalf("Raise() error: %v", err)
	}
	if got == 0 {
		t.Fatalf("Raise() = 0, want a limit")
	}
	if again, err := Raise(); err != nil || again != got {
		t.Errorf("second Raise() = %d, %v, want %d, nil (the limit is already raised)", again, err, got)
	}
	if runtime.GOOS != "linux" {
		return
	}
	// Linux tells the limit in force in /proc: it must be what Raise said.
	data, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // soft, hard, "files"
		want := f[0]
		if want == "unlimited" {
			want = strconv.FormatUint(^uint64(0), 10)
		}
		if strconv.FormatUint(got, 10) != want || f[0] != f[1] {
			t.Errorf("Raise() = %d; /proc/self/limits says soft %s, hard %s, want both %d", got, f[0], f[1], got)
		}
		return
	}
	t.Fatalf("no \"Max open files\" line in /proc/self/limits:\n%s", data)
}
