// Package gcpolicy applies wsgate's garbage collector policy: the GC
// percent (what GOGC sets) and the soft memory limit (what GOMEMLIMIT
// sets), from the config file's runtime section, at start and on every
// reload. The environment variables, when set, win over the file, as they
// would for any Go program: the runtime has applied them already, and
// Apply leaves that setting alone and says so.
//
// Why wsgate sets them at all: an idle tunnel is a few kilobytes of live
// heap, and with the runtime's default (GOGC=100) the heap may grow to
// twice the live data before a collection; after a burst of TLS handshakes,
// which leave tens of kilobytes of garbage each, that headroom stays
// resident. A lower GC percent keeps the heap closer to the live data at
// no CPU per message (a proxy allocates little per message), at the price
// of collector time when handshakes come in bulk while many connections
// are held; a small heap keeps MinHeadroom (Tuner), so a proxy with few
// connections collects no more often than any Go program. The memory
// limit is a soft ceiling: near it the collector runs more often, and the
// runtime's scavenger returns freed memory to the operating system,
// instead of the process growing into the kernel's OOM killer. See
// docs/benchmarks.md (the idle memory profile) for the measurements
// behind the defaults.
package gcpolicy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults, for a config file without a runtime section.
const (
	// DefaultGCPercent is the GC percent wsgate runs with: the heap may
	// grow 10% over the live data between collections (the runtime's
	// default is 100), and at least MinHeadroom (see Tuner). With 9,900
	// idle wss connections held it cut the resident memory per connection
	// from about 14 KB to about 9 KB; per relayed message it costs nothing
	// measurable. Its price is collector time in a burst of new
	// connections while many are held: opening 9,900 took about 40% more
	// CPU than at 100 (docs/benchmarks.md, the idle memory profile).
	DefaultGCPercent = 10
	// DefaultMemoryLimitPercent makes the soft memory limit 90% of the
	// memory available to the process: its cgroup's limit when it has one
	// (a container), else the host's memory.
	DefaultMemoryLimitPercent = 90
	// MinMemoryLimit is the smallest memory limit accepted: below it the
	// collector would run all the time for wsgate's own baseline.
	MinMemoryLimit = 32 << 20
)

// Off is the GC percent that turns the collector's percent-based pacing off
// (GOGC=off): it then runs only to keep under the memory limit, which must
// be set.
const Off = -1

// Policy is the collector's configuration.
type Policy struct {
	// GCPercent is the heap growth over the live data that starts a
	// collection, as GOGC; Off leaves only the memory limit. 0 means
	// DefaultGCPercent.
	GCPercent int
	// MemoryLimit is the soft memory limit. Its zero value means none.
	MemoryLimit Limit
}

// Default is the policy of a config file without a runtime section.
func Default() Policy {
	return Policy{GCPercent: DefaultGCPercent, MemoryLimit: Limit{Percent: DefaultMemoryLimitPercent}}
}

// Limit is a memory limit: a number of bytes, or a percent of the memory
// available to the process (see Available). The zero value is no limit.
type Limit struct {
	Bytes   int64
	Percent float64 // of Available; used when Bytes is 0
}

// IsZero reports whether l is no limit.
func (l Limit) IsZero() bool { return l.Bytes == 0 && l.Percent == 0 }

// String is l as the config file writes it.
func (l Limit) String() string {
	switch {
	case l.Bytes > 0:
		return FormatBytes(l.Bytes)
	case l.Percent > 0:
		return strconv.FormatFloat(l.Percent, 'f', -1, 64) + "%"
	}
	return "off"
}

// ParseLimit parses a memory limit as the config file writes it: bytes
// with an optional unit (B, KiB, MiB, GiB, TiB, as GOMEMLIMIT takes them),
// a percent such as 90%, or off (or 0) for none. The problem, when there
// is one, says what is wrong without repeating s.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return Limit{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
			return Limit{}, errors.New("a percent must be more than 0 and at most 100")
		}
		return Limit{Percent: v}, nil
	}
	b, err := ParseBytes(s)
	if err != nil {
		return Limit{}, err
	}
	if b < MinMemoryLimit {
		return Limit{}, fmt.Errorf("below the smallest limit, %s, under which the collector would run all the time", FormatBytes(MinMemoryLimit))
	}
	return Limit{Bytes: b}, nil
}

// units are the byte units ParseBytes takes, largest first.
var units = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseBytes parses a whole number of bytes with an optional unit: B, KiB,
// MiB, GiB or TiB (powers of 1024, as GOMEMLIMIT takes them).
func ParseBytes(s string) (int64, error) {
	num, shift := s, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = strings.TrimSpace(n), u.shift
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 {
		return 0, errors.New("not a whole number of bytes with a unit (B, KiB, MiB, GiB or TiB)")
	}
	if v > math.MaxInt64>>shift {
		return 0, errors.New("too large")
	}
	return v << shift, nil
}

// FormatBytes writes b in the largest unit it is at least one of: whole
// when that unit divides it (512MiB), else to a tenth (21.2GiB, as a limit
// from a percent usually is).
func FormatBytes(b int64) string {
	for _, u := range units {
		if u.shift == 0 || b < 1<<u.shift {
			continue
		}
		if b%(1<<u.shift) == 0 {
			return strconv.FormatInt(b>>u.shift, 10) + u.suffix
		}
		return strconv.FormatFloat(float64(b)/float64(int64(1)<<u.shift), 'f', 1, 64) + u.suffix
	}
	return strconv.FormatInt(b, 10) + "B"
}

// Source says where a setting in force came from.
type Source string

const (
	FromConfig Source = "config"      // the config file, or its default
	FromEnv    Source = "environment" // GOGC or GOMEMLIMIT, which win
)

// Applied is what Apply put in force.
type Applied struct {
	// GCPercent is the GC percent in force (Off for off), from
	// GCPercentFrom; with FromEnv, GOGC is its text.
	GCPercent     int
	GCPercentFrom Source
	GOGC          string
	// MemoryLimit is the limit in force in bytes (math.MaxInt64 for none),
	// from MemoryLimitFrom; with FromEnv, GOMEMLIMIT is its text. For a
	// percent, Available is what it was taken of, and AvailableFrom says
	// whose memory that is ("cgroup" or "host").
	MemoryLimit     int64
	MemoryLimitFrom Source
	GOMEMLIMIT      string
	Available       int64
	AvailableFrom   string
}

// Env is what Apply reads of the process's surroundings: its environment
// variables, and the file system where /proc and /sys are (for Available).
type Env struct {
	Getenv func(string) string
	Root   fs.FS
}

// OSEnv is the process's own environment and root file system.
func OSEnv() Env { return Env{Getenv: os.Getenv, Root: os.DirFS("/")} }

// Apply puts p in force, except a setting whose environment variable
// (GOGC, GOMEMLIMIT) env has set: the runtime has applied that one at
// start, and it stays. It fails, changing nothing, when a percent limit
// cannot be resolved (no memory size can be read) or when the collector
// would be off with no limit.
func Apply(p Policy, env Env) (Applied, error) {
	var a Applied
	a.GOGC, a.GOMEMLIMIT = env.Getenv("GOGC"), env.Getenv("GOMEMLIMIT")
	if p.GCPercent == 0 {
		p.GCPercent = DefaultGCPercent
	}
	limit := int64(math.MaxInt64)
	if a.GOMEMLIMIT == "" && !p.MemoryLimit.IsZero() {
		limit = p.MemoryLimit.Bytes
		if limit == 0 {
			avail, from, err := Available(env.Root)
			if err != nil {
				return Applied{}, fmt.Errorf("memory limit %s: %w", p.MemoryLimit, err)
			}
			a.Available, a.AvailableFrom = avail, from
			limit = max(int64(float64(avail)*p.MemoryLimit.Percent/100), MinMemoryLimit)
		}
	}
	if a.GOGC == "" && p.GCPercent == Off && a.GOMEMLIMIT == "" && limit == math.MaxInt64 {
		return Applied{}, errors.New("gc_percent off needs a memory limit, or the heap grows without bound")
	}
	if a.GOMEMLIMIT == "" {
		debug.SetMemoryLimit(limit)
		a.MemoryLimit, a.MemoryLimitFrom = limit, FromConfig
	} else {
		a.MemoryLimit, a.MemoryLimitFrom = debug.SetMemoryLimit(-1), FromEnv // -1 only reads it
	}
	if a.GOGC == "" {
		debug.SetGCPercent(p.GCPercent)
		a.GCPercent, a.GCPercentFrom = p.GCPercent, FromConfig
	} else {
		a.GCPercent, a.GCPercentFrom = gcPercent(), FromEnv
	}
	return a, nil
}

// gcPercent reads the GC percent in force (Off for off) without changing
// it, which debug.SetGCPercent cannot.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return Off
	}
	v := s[0].Value.Uint64()
	if v > math.MaxInt32 {
		return Off
	}
	return int(v)
}

// The files Available reads, relative to the root file system.
const (
	procCgroup  = "proc/self/cgroup"
	cgroupRoot  = "sys/fs/cgroup"
	procMeminfo = "proc/meminfo"
)

// Available returns the memory available to the process whose root file
// system is root (os.DirFS("/")), and whose limit that is: its cgroup's
// memory limit ("cgroup": the lowest of its cgroup v2 hierarchy's
// memory.max, or cgroup v1's memory.limit_in_bytes) when it has one below
// the host's memory, else the host's memory ("host", MemTotal).
func Available(root fs.FS) (int64, string, error) {
	host, err := hostMemory(root)
	if err != nil {
		return 0, "", err
	}
	if cg, ok := cgroupLimit(root); ok && cg < host {
		return cg, "cgroup", nil
	}
	return host, "host", nil
}

// hostMemory is MemTotal of /proc/meminfo, in bytes.
func hostMemory(root fs.FS) (int64, error) {
	data, err := fs.ReadFile(root, procMeminfo)
	if err != nil {
		return 0, fmt.Errorf("cannot read the host's memory size: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb > 0 {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no MemTotal in %s", procMeminfo)
}

// cgroupLimit returns the memory limit of the process's cgroup, if it has
// one it can read.
func cgroupLimit(root fs.FS) (int64, bool) {
	data, err := fs.ReadFile(root, procCgroup)
	if err != nil {
		return 0, false
	}
	best, found := int64(math.MaxInt64), false
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controllers:path
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "": // cgroup v2: every level up to the root limits
			for dir := path.Clean("/" + f[2]); ; dir = path.Dir(dir) {
				if v, ok := readLimit(root, path.Join(cgroupRoot, dir, "memory.max")); ok && v < best {
					best, found = v, true
				}
				if dir == "/" {
					break
				}
			}
		case slices.Contains(strings.Split(f[1], ","), "memory"): // cgroup v1
			for _, dir := range []string{path.Join(cgroupRoot, "memory", f[2]), path.Join(cgroupRoot, "memory")} {
				if v, ok := readLimit(root, path.Join(dir, "memory.limit_in_bytes")); ok && v < best {
					best, found = v, true
				}
			}
		}
	}
	return best, found
}

// readLimit reads a cgroup memory limit file: a number of bytes, or "max"
// (none).
func readLimit(root fs.FS, name string) (int64, bool) {
	data, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return v, err == nil && v > 0
}

// MinHeadroom is how much the heap may always grow between collections,
// whatever the GC percent: the runtime's own minimum heap at its default
// GOGC=100. A low percent keeps a large heap (many idle tunnels) close to
// its live data; on a small heap it would only make the collector run
// more often than the runtime's default would (a proxy with few
// connections and many handshakes: one every few hundred), for no memory
// worth saving. See Tuner.
const MinHeadroom = 4 << 20

// Tuner puts a Policy in force (Apply, at start and on every reload) and,
// while Run runs, keeps the heap's headroom at least MinHeadroom: when the
// live heap is small, it raises the GC percent in force so that
// live × percent / 100 is MinHeadroom (never above the runtime's default
// of 100, nor below the policy's percent). It does nothing of that when
// GOGC is set or the percent is off. Safe for concurrent use.
type Tuner struct {
	env Env

	mu      sync.Mutex
	percent int // the policy's GC percent, 0 when the tuner must not touch it
	inForce int // the percent the tuner last set
}

// NewTuner returns a Tuner that reads env (OSEnv(), or a test's). It
// changes nothing until Apply.
func NewTuner(env Env) *Tuner {
	return &Tuner{env: env}
}

// Apply puts p in force (see the package function Apply) and, unless GOGC
// is set or p's percent is off, lets Run raise the percent for a small
// heap from then on.
func (t *Tuner) Apply(p Policy) (Applied, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.GCPercent == 0 {
		p.GCPercent = DefaultGCPercent
	}
	// Put the tuned percent in force at once: the policy's alone, on a
	// heap still small, would start a collection at the next allocation.
	tuned := p
	if p.GCPercent != Off {
		tuned.GCPercent = tunedPercent(p.GCPercent, liveHeap())
	}
	a, err := Apply(tuned, t.env)
	if err != nil {
		return a, err
	}
	t.percent, t.inForce = 0, a.GCPercent
	if a.GCPercentFrom == FromConfig {
		a.GCPercent = p.GCPercent
		if p.GCPercent != Off {
			t.percent = p.GCPercent
		}
	}
	return a, nil
}

// tuneInterval is how often Run looks at the live heap: it changes with
// the number of connections, over seconds.
const tuneInterval = time.Second

// Run keeps the headroom (see Tuner) until ctx is done. It returns nil.
func (t *Tuner) Run(ctx context.Context) error {
	tick := time.NewTicker(tuneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.mu.Lock()
			t.tuneLocked()
			t.mu.Unlock()
		}
	}
}

// tuneLocked sets the percent for the live heap, if it changed.
func (t *Tuner) tuneLocked() {
	if t.percent == 0 {
		return
	}
	if p := tunedPercent(t.percent, liveHeap()); p != t.inForce {
		debug.SetGCPercent(p)
		t.inForce = p
	}
}

// tunedPercent is the GC percent for a live heap of live bytes: percent,
// raised (up to 100) so that the headroom is at least MinHeadroom. It
// moves in steps of 5 points, so that a heap that hovers does not make it
// change at every look.
func tunedPercent(percent int, live uint64) int {
	if percent >= 100 {
		return percent
	}
	if live == 0 {
		return 100
	}
	need := int((MinHeadroom*100 + live - 1) / live)
	need = (need + 4) / 5 * 5
	return min(100, max(percent, need))
}

// liveHeap is the heap the last collection marked live, in bytes.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
