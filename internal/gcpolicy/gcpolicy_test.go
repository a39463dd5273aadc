package gcpolicy

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want Limit
		ok   bool
	}{
		{"off", Limit{}, true},
		{"0", Limit{}, true},
		{"90%", Limit{Percent: 90}, true},
		{"12.5%", Limit{Percent: 12.5}, true},
		{"100%", Limit{Percent: 100}, true},
		{"512MiB", Limit{Bytes: 512 << 20}, true},
		{"2GiB", Limit{Bytes: 2 << 30}, true},
		{"1TiB", Limit{Bytes: 1 << 40}, true},
		{"65536KiB", Limit{Bytes: 64 << 20}, true},
		{"134217728", Limit{Bytes: 128 << 20}, true},
		{"134217728B", Limit{Bytes: 128 << 20}, true},
		{"0%", Limit{}, false},
		{"101%", Limit{}, false},
		{"NaN%", Limit{}, false},
		{"1MiB", Limit{}, false}, // below MinMemoryLimit
		{"1.5GiB", Limit{}, false},
		{"1GB", Limit{}, false},
		{"-1GiB", Limit{}, false},
		{"9999999TiB", Limit{}, false},
		{"lots", Limit{}, false},
	}
	for _, tc := range tests {
		got, err := ParseLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestLimitString(t *testing.T) {
	for _, tc := range []struct {
		l    Limit
		want string
	}{
		{Limit{}, "off"},
		{Limit{Percent: 90}, "90%"},
		{Limit{Bytes: 512 << 20}, "512MiB"},
		{Limit{Bytes: 3 << 30}, "3GiB"},
		{Limit{Bytes: 1000}, "1000B"},
		{Limit{Bytes: 22792742092}, "21.2GiB"},
	} {
		if got := tc.l.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.l, got, tc.want)
		}
		if l, err := ParseLimit(tc.want); err == nil && l != tc.l && tc.l.Bytes >= MinMemoryLimit {
			t.Errorf("ParseLimit(%q) = %+v, want %+v back", tc.want, l, tc.l)
		}
	}
}

// fakeRoot is a root file system holding files (path: content).
func fakeRoot(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, content := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return fsys
}

const meminfo8G = "MemTotal:        8388608 kB\nMemFree:         1000000 kB\n"

func TestAvailable(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  int64
		from  string
	}{
		{"no cgroup", map[string]string{"proc/meminfo": meminfo8G}, 8 << 30, "host"},
		{"cgroup v2 without a limit", map[string]string{
			"proc/meminfo":     meminfo8G,
			"proc/self/cgroup": "0::/system.slice/wsgate.service\n",
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": "max\n",
		}, 8 << 30, "host"},
		{"cgroup v2, the service's limit", map[string]string{
			"proc/meminfo":     meminfo8G,
			"proc/self/cgroup": "0::/system.slice/wsgate.service\n",
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": "536870912\n",
			"sys/fs/cgroup/system.slice/memory.max":                "max\n",
		}, 512 << 20, "cgroup"},
		{"cgroup v2, a parent's lower limit", map[string]string{
			"proc/meminfo":     meminfo8G,
			"proc/self/cgroup": "0::/system.slice/wsgate.service\n",
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": "1073741824\n",
			"sys/fs/cgroup/system.slice/memory.max":                "268435456\n",
		}, 256 << 20, "cgroup"},
		{"cgroup v2 in a container (namespaced root)", map[string]string{
			"proc/meminfo":             meminfo8G,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "2147483648\n",
		}, 2 << 30, "cgroup"},
		{"cgroup v1", map[string]string{
			"proc/meminfo":     meminfo8G,
			"proc/self/cgroup": "12:cpuset:/\n11:memory:/docker/abc\n1:name=systemd:/docker/abc\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
		}, 1 << 30, "cgroup"},
		{"cgroup v1 unlimited", map[string]string{
			"proc/meminfo":     meminfo8G,
			"proc/self/cgroup": "11:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 8 << 30, "host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := Available(fakeRoot(tc.files))
			if err != nil || got != tc.want || from != tc.from {
				t.Errorf("Available() = %d, %q, %v; want %d, %q", got, from, err, tc.want, tc.from)
			}
		})
	}
	t.Run("no meminfo", func(t *testing.T) {
		if _, _, err := Available(fakeRoot(map[string]string{"proc/self/cgroup": "0::/\n"})); err == nil {
			t.Error("Available() without /proc/meminfo succeeded")
		}
	})
}

// keepGC restores the test process's GC settings when the test ends.
func keepGC(t *testing.T) {
	pct := debug.SetGCPercent(100)
	debug.SetGCPercent(pct)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(limit)
	})
}

// env is an Env with the variables vars on a host of 8 GiB.
func env(vars map[string]string) Env {
	return Env{Getenv: func(k string) string { return vars[k] }, Root: fakeRoot(map[string]string{"proc/meminfo": meminfo8G})}
}

func TestApply(t *testing.T) {
	keepGC(t)

	a, err := Apply(Policy{GCPercent: 30, MemoryLimit: Limit{Percent: 50}}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Applied{GCPercent: 30, GCPercentFrom: FromConfig, MemoryLimit: 4 << 30, MemoryLimitFrom: FromConfig, Available: 8 << 30, AvailableFrom: "host"}
	if a != want {
		t.Errorf("Apply = %+v, want %+v", a, want)
	}
	if got := debug.SetMemoryLimit(-1); got != 4<<30 {
		t.Errorf("memory limit in force = %d, want %d", got, int64(4<<30))
	}
	if got := gcPercent(); got != 30 {
		t.Errorf("GC percent in force = %d, want 30", got)
	}

	// No limit: none in force.
	if a, err = Apply(Policy{GCPercent: 40}, env(nil)); err != nil || a.MemoryLimit != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("Apply without a limit = %+v, %v; limit in force %d", a, err, debug.SetMemoryLimit(-1))
	}

	// The environment wins, and is left as the runtime applied it.
	debug.SetGCPercent(70)
	debug.SetMemoryLimit(300 << 20)
	a, err = Apply(Policy{GCPercent: 30, MemoryLimit: Limit{Bytes: 1 << 30}}, env(map[string]string{"GOGC": "70", "GOMEMLIMIT": "300MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	want = Applied{GCPercent: 70, GCPercentFrom: FromEnv, GOGC: "70", MemoryLimit: 300 << 20, MemoryLimitFrom: FromEnv, GOMEMLIMIT: "300MiB"}
	if a != want {
		t.Errorf("Apply with GOGC and GOMEMLIMIT = %+v, want %+v", a, want)
	}
	if got := gcPercent(); got != 70 {
		t.Errorf("GC percent in force = %d, want GOGC's 70", got)
	}

	// Off needs a limit; nothing changes when refused.
	if _, err := Apply(Policy{GCPercent: Off}, env(nil)); err == nil {
		t.Error("Apply(off, no limit) succeeded")
	}
	if got := gcPercent(); got != 70 {
		t.Errorf("GC percent after a refused Apply = %d, want 70", got)
	}
	// A percent limit that cannot be resolved changes nothing either.
	if _, err := Apply(Policy{GCPercent: 20, MemoryLimit: Limit{Percent: 90}}, Env{Getenv: env(nil).Getenv, Root: fstest.MapFS{}}); err == nil || gcPercent() != 70 {
		t.Errorf("Apply with no readable memory size = %v, GC percent %d; want an error and 70 kept", err, gcPercent())
	}
}

func TestTunedPercent(t *testing.T) {
	tests := []struct {
		percent int
		live    uint64
		want    int
	}{
		{25, 200 << 20, 25}, // a large heap: the policy's percent
		{25, 16 << 20, 25},  // 4 MiB headroom at 25%
		{25, 8 << 20, 50},
		{25, 5 << 20, 80},
		{25, 1 << 20, 100}, // never above the runtime's default
		{25, 0, 100},
		{150, 1 << 20, 150}, // a percent above 100 is left alone
		{10, 30 << 20, 15},  // 13.3 rounded up to a step of 5
	}
	for _, tc := range tests {
		if got := tunedPercent(tc.percent, tc.live); got != tc.want {
			t.Errorf("tunedPercent(%d, %d MiB) = %d, want %d", tc.percent, tc.live>>20, got, tc.want)
		}
	}
}

func TestTunerLeavesGOGC(t *testing.T) {
	keepGC(t)
	debug.SetGCPercent(80)
	tu := NewTuner(env(map[string]string{"GOGC": "80"}))
	if _, err := tu.Apply(Policy{GCPercent: 10}); err != nil {
		t.Fatal(err)
	}
	tu.mu.Lock()
	tu.tuneLocked()
	tu.mu.Unlock()
	if got := gcPercent(); got != 80 {
		t.Errorf("GC percent with GOGC=80 set = %d, want 80", got)
	}
	tu = NewTuner(env(nil))
	if _, err := tu.Apply(Policy{GCPercent: 10}); err != nil {
		t.Fatal(err)
	}
	if got, want := gcPercent(), tunedPercent(10, liveHeap()); got != want {
		t.Errorf("GC percent after Apply(10) = %d, want the tuned %d", got, want)
	}
}
