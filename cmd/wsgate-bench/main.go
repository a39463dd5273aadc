// Command wsgate-bench is a WebSocket load generator for ws:// and wss://
// endpoints that echo every message (wsgate-backend's /ws, directly or
// through a proxy). It measures the target and, with -pid, what the proxy
// under test spends per message or handshake: on a shared, noisy machine
// those per-unit costs compare better than raw rates.
//
// Usage:
//
//	wsgate-bench [flags]       a load run; -mode selects the scenario
//	wsgate-bench report ...    turn -json lines into tables (package bench/report)
//
// Modes:
//
//	rtt         -c connections, each a closed loop: send one message, wait for
//	            its echo, repeat. Round trips per second and latency percentiles.
//	throughput  -c connections, each keeping -window messages in flight.
//	            Messages and payload MB (1e6 bytes) echoed per second.
//	connrate    -c workers, each repeating: TCP connect, full TLS 1.3 handshake
//	            (no resumption; key exchange X25519), upgrade, one echo, close
//	            handshake, TCP close. Sequences per second and their latency.
//	idle        open -c connections (64 at a time), one echo each, hold them
//	            for -duration. With -pid, the proxy's RSS per connection.
//	            SIGTERM or Ctrl-C during the hold ends it early; either way
//	            every connection then gets a close handshake, whose answers
//	            are awaited while they keep coming (2s without one ends the
//	            wait). Several generators can share a target: bench/scale.sh.
//
// With -json the human summary goes to stderr and one JSON line (see Result
// in result.go) to stdout. Exit status: 0 when something was measured, 1
// when nothing was (every attempt failed, or interrupted during warm-up),
// 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/bench/report"
	"github.com/wsgate/wsgate/internal/fdlimit"
)

const (
	name = "wsgate-bench"

	modeRTT        = "rtt"
	modeThroughput = "throughput"
	modeConnRate   = "connrate"
	modeIdle       = "idle"

	// retryPause is how long a worker waits after a failure before it dials
	// again, so that a dead target is not hammered in a tight loop.
	retryPause = 50 * time.Millisecond
	// maxSize bounds -size.
	maxSize = 64 << 20
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "report" {
		return reportCmd(args[1:], stdout, stderr)
	}
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	for _, pid := range opts.pids {
		if _, err := readProcCPU(pid); err != nil {
			fmt.Fprintf(stderr, "%s: -pid: %v\n", name, err)
			return 1
		}
	}
	d, err := newDialer(opts.url, opts.size, opts.sources, opts.insecure, opts.resume, opts.caFile, opts.serverName)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	b := &bench{opts: opts, dialer: d, stderr: stderr, reached: make(chan struct{})}
	limit, err := fdlimit.Raise()
	if err != nil {
		b.note("%v", err)
	}
	if limit > 0 && opts.mode == modeIdle && uint64(opts.conns)+64 > limit {
		b.note("this process may open at most %d files; -c %d will not fit", limit, opts.conns)
	}

	res := b.run(ctx)

	summary := stdout
	if opts.json {
		summary = stderr
	}
	b.printSummary(summary, res)
	if opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "%s: write json: %v\n", name, err)
			return 1
		}
	}
	if res.Messages == 0 && res.Handshakes == 0 && (res.Idle == nil || res.Idle.Opened == 0) {
		return 1
	}
	return 0
}

// options are the parsed and validated flags.
type options struct {
	url        string
	host       string // the URL's host without the port
	mode       string
	conns      int
	size       int
	window     int
	duration   time.Duration
	warmup     time.Duration
	n          int64
	insecure   bool
	resume     bool
	caFile     string
	serverName string
	pids       procSet
	sources    []netip.Addr
	json       bool
	label      string
	quiet      bool
}

const usageHead = `usage: wsgate-bench [flags]            a load run; -mode selects the scenario
       wsgate-bench report -in FILE ...  compare the -json lines of several runs

Modes: rtt (closed-loop echo, latency), throughput (-window in flight per
connection), connrate (fresh TCP+TLS+upgrade+echo+close per handshake),
idle (open -c connections and hold them; with -pid, proxy RSS per connection).
File-descriptor limits are 20000 per process on the benchmark machines: a
proxy holding 2 fds per connection tops out near 9,900 idle connections.

Flags:
`

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	rawURL := fs.String("url", "wss://127.0.0.1:8443/ws", "ws:// or wss:// `URL` that echoes every message")
	mode := fs.String("mode", modeRTT, "scenario `M`: rtt | throughput | connrate | idle")
	conns := fs.Int("c", 0, "`N` connections (default: rtt 50, throughput 20, connrate 8 workers, idle 1000 to open)")
	size := fs.Int("size", 64, "message size in `bytes`")
	window := fs.Int("window", 16, "throughput: `W` messages in flight per connection")
	duration := fs.Duration("duration", 0, "measured `D` (default 10s); idle: how long to hold once all are open (default 5s)")
	warmup := fs.Duration("warmup", time.Second, "traffic before measuring starts, not counted (not for idle)")
	n := fs.Int64("n", 0, "connrate: stop after `N` measured handshakes (-duration still caps the run); 0 = run for -duration")
	insecure := fs.Bool("insecure", false, "do not verify the server certificate")
	resume := fs.Bool("resume", false, "connrate: resume TLS sessions (the workers share a client session cache), measuring resumed handshakes instead of full ones")
	caFile := fs.String("ca", "", "trust the PEM CA certificates in `FILE` instead of the system roots")
	serverName := fs.String("server-name", "", "TLS SNI and verification `name` (default: the URL host)")
	var pids pidList
	fs.Var(&pids, "pid", "`PID` of a process to measure (CPU over the window, RSS); repeat or comma-separate to sum several")
	sourceSpec := fs.String("source-ips", "", "`SPEC`: local addresses to spread connections over, e.g. 127.0.0.2-127.0.0.250,127.0.1.1 (default: for idle and connrate against a 127.x host, "+defaultLoopbackSources+"; none = let the kernel choose)")
	jsonOut := fs.Bool("json", false, "after the summary (then on stderr), print one JSON line with all results to stdout")
	label := fs.String("label", "", "`name` of the thing measured (wsgate, haproxy, direct...), copied into the JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := options{
		url: *rawURL, mode: *mode, conns: *conns, size: *size, window: *window,
		duration: *duration, warmup: *warmup, n: *n, insecure: *insecure, resume: *resume, caFile: *caFile,
		serverName: *serverName, pids: procSet(pids), json: *jsonOut, label: *label, quiet: *quiet,
	}
	var bad []string
	badf := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if fs.NArg() > 0 {
		badf("unexpected arguments %q", fs.Args())
	}
	if u, err := url.Parse(o.url); err != nil {
		badf("-url: %v", err)
	} else if u.Scheme != "ws" && u.Scheme != "wss" || u.Hostname() == "" {
		badf("-url %q: want ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH", o.url)
	} else {
		o.host = u.Hostname()
	}

	defaultConns := map[string]int{modeRTT: 50, modeThroughput: 20, modeConnRate: 8, modeIdle: 1000}
	def, ok := defaultConns[o.mode]
	if !ok {
		badf("-mode %q: want rtt, throughput, connrate or idle", o.mode)
	}
	if !set["c"] {
		o.conns = def
	} else if o.conns <= 0 {
		badf("-c %d: must be positive", o.conns)
	}
	if !set["duration"] {
		o.duration = 10 * time.Second
		if o.mode == modeIdle {
			o.duration = 5 * time.Second
		}
	} else if o.duration <= 0 {
		badf("-duration %s: must be positive", o.duration)
	}
	if o.size < 0 || o.size > maxSize {
		badf("-size %d: must be 0 to %d", o.size, maxSize)
	}
	if o.window <= 0 {
		badf("-window %d: must be positive", o.window)
	} else if set["window"] && o.mode != modeThroughput {
		badf("-window: only for -mode throughput")
	}
	if o.warmup < 0 {
		badf("-warmup %s: must not be negative", o.warmup)
	} else if set["warmup"] && o.mode == modeIdle {
		badf("-warmup: not for -mode idle")
	}
	if o.mode == modeIdle {
		o.warmup = 0
	}
	if o.n < 0 {
		badf("-n %d: must not be negative", o.n)
	} else if o.n > 0 && o.mode != modeConnRate {
		badf("-n: only for -mode connrate")
	}
	if o.insecure && o.caFile != "" {
		badf("-insecure and -ca: choose one")
	}

	spec := *sourceSpec
	if !set["source-ips"] && (o.mode == modeIdle || o.mode == modeConnRate) && isLoopback4(o.host) {
		spec = defaultLoopbackSources
	}
	sources, err := parseSourceIPs(spec)
	if err != nil {
		badf("-source-ips: %v", err)
	}
	o.sources = sources

	if len(bad) > 0 {
		for _, msg := range bad {
			fmt.Fprintf(stderr, "%s: %s\n", name, msg)
		}
		return options{}, errors.New("bad flags")
	}
	return o, nil
}

// pidList is the repeatable -pid flag.
type pidList []int

func (p *pidList) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, pid := range *p {
		s[i] = strconv.Itoa(pid)
	}
	return strings.Join(s, ",")
}

func (p *pidList) Set(v string) error {
	for f := range strings.SplitSeq(v, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid <= 0 {
			return fmt.Errorf("%q: want a process id", f)
		}
		*p = append(*p, pid)
	}
	return nil
}

// bench is one load run: the options, the dialer and the counters that all
// workers share.
type bench struct {
	opts   options
	dialer *dialer
	stderr io.Writer

	measuring atomic.Bool   // inside the measured window
	stopping  atomic.Bool   // the measured window is over: finish up
	total     atomic.Int64  // units (messages, handshakes) over the whole run, for progress
	count     atomic.Int64  // units inside the measured window
	reached   chan struct{} // closed when count reaches -n
	startNano atomic.Int64  // when the measured window began, for progress
	resumed   atomic.Int64  // connrate -resume: handshakes that resumed a session

	errs [numErrorKinds]atomic.Int64

	mu       sync.Mutex
	firstErr [numErrorKinds]string
	notes    []string
	win      window // the measured window, once over
}

// window is what was measured around the measured window.
type window struct {
	start, end time.Time
	proxyCPU   cpuTimes           // summed over -pid
	proxyRSS   int64              // kB, at the end
	procErr    error              // reading /proc failed; proxy figures unknown
	selfCPU    time.Duration      // this process
	steal      map[string]float64 // per CPU, % of the window; nil if unknown
}

func (w *window) seconds() float64 { return w.end.Sub(w.start).Seconds() }

func (b *bench) run(ctx context.Context) *Result {
	res := &Result{
		Label:     b.opts.label,
		Mode:      b.opts.mode,
		URL:       b.opts.url,
		Conns:     b.opts.conns,
		Size:      b.opts.size,
		GoVersion: runtime.Version(),
		StartedAt: time.Now().Format(time.RFC3339),
	}
	switch b.opts.mode {
	case modeRTT:
		b.runRTT(ctx, res)
	case modeThroughput:
		res.Window = b.opts.window
		b.runThroughput(ctx, res)
	case modeConnRate:
		b.runConnRate(ctx, res)
		res.Resume = b.opts.resume
		res.Resumed = b.resumed.Load()
	case modeIdle:
		b.runIdle(ctx, res)
	}
	for i := range b.errs {
		res.Errors += b.errs[i].Load()
	}
	if len(b.win.steal) > 0 {
		res.StealPct = b.win.steal
	}
	return res
}

// note adds a line to the summary.
func (b *bench) note(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notes = append(b.notes, fmt.Sprintf(format, a...))
}

// fail counts an error by its kind and keeps the first of each kind.
func (b *bench) fail(err error) {
	kind := errRead
	var ke *kindError
	if errors.As(err, &ke) {
		kind = ke.kind
	}
	if b.errs[kind].Add(1) == 1 {
		b.mu.Lock()
		b.firstErr[kind] = err.Error()
		b.mu.Unlock()
	}
}

// completed counts one message or handshake, and records its latency in h
// (if not nil) when it falls inside the measured window.
func (b *bench) completed(h *histogram, d time.Duration) {
	b.completedResumed(h, d, false)
}

// completedResumed is completed for a handshake, saying whether it
// resumed a TLS session.
func (b *bench) completedResumed(h *histogram, d time.Duration, resumed bool) {
	b.total.Add(1)
	if !b.measuring.Load() {
		return
	}
	n := b.count.Add(1)
	if b.opts.n > 0 && n > b.opts.n {
		// Finished after -n was reached by another worker: not counted.
		b.count.Add(-1)
		return
	}
	if resumed {
		b.resumed.Add(1)
	}
	if h != nil {
		h.record(d)
	}
	if n == b.opts.n {
		close(b.reached)
	}
}

// pause waits d, or less if ctx ends first.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// measure runs the timeline of a load mode once its workers are started:
// warm-up, then the measured window until -duration passes, -n is reached
// or ctx ends. It samples the -pid processes at both ends.
func (b *bench) measure(ctx context.Context, unit string) window {
	stopProgress := b.startProgress(b.loadProgress(unit))
	defer stopProgress()

	pause(ctx, b.opts.warmup)
	var w window
	cpu0, err := b.opts.pids.cpu()
	w.procErr = err
	host0, hostErr := readCPUStats()
	self0 := selfCPU()
	w.start = time.Now()
	b.startNano.Store(w.start.UnixNano())
	b.measuring.Store(ctx.Err() == nil)

	t := time.NewTimer(b.opts.duration)
	select {
	case <-t.C:
	case <-b.reached:
	case <-ctx.Done():
	}
	t.Stop()
	b.measuring.Store(false)
	w.end = time.Now()
	if ctx.Err() != nil {
		b.note("interrupted: the figures cover %.2fs", w.seconds())
	}
	w.selfCPU = selfCPU() - self0
	if hostErr == nil {
		if host1, err := readCPUStats(); err == nil {
			w.steal = stealPct(host0, host1)
		}
	}
	if len(b.opts.pids) > 0 && w.procErr == nil {
		var cpu1 cpuTimes
		if cpu1, err = b.opts.pids.cpu(); err == nil {
			w.proxyCPU = cpu1.sub(cpu0)
			w.proxyRSS, err = b.opts.pids.rssKB()
		}
		w.procErr = err
	}
	if w.procErr != nil {
		b.note("-pid: %v", w.procErr)
	}
	return w
}

// stopWorkers ends a load mode's workers: it sets the stopping flag and
// cancels stop, gives them closeWait*2 to finish their close handshakes,
// then cancels hard (which closes every connection) and waits for them.
func (b *bench) stopWorkers(wg *sync.WaitGroup, stop, hard context.CancelFunc) {
	b.stopping.Store(true)
	stop()
	if !waitWithin(wg, 2*closeWait) {
		hard()
		wg.Wait()
	}
	hard()
}

// doneChan returns a channel that closes once wg is done. The goroutine
// behind it waits for wg: the caller must make wg finish.
func doneChan(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// waitWithin waits for wg up to d and reports whether it finished in time.
// When it did not, a goroutine still waits for wg; the caller must make it
// finish.
func waitWithin(wg *sync.WaitGroup, d time.Duration) bool {
	done := doneChan(wg)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// procResult turns the window into the proc section, dividing the CPU by
// units (messages or handshakes).
func (b *bench) procResult(w window) *Proc {
	if len(b.opts.pids) == 0 || w.procErr != nil {
		return nil
	}
	return &Proc{
		PIDs:    b.opts.pids,
		CPUS:    round(w.proxyCPU.total.Seconds(), 3),
		CPUSysS: round(w.proxyCPU.sys.Seconds(), 3),
		RSSKB:   w.proxyRSS,
	}
}

// kernelShare is ", N% in the kernel" for the summary, or "" when no CPU
// was counted.
func kernelShare(p *Proc) string {
	if p.CPUS <= 0 {
		return ""
	}
	return fmt.Sprintf(", %.0f%% in the kernel", 100*p.CPUSysS/p.CPUS)
}

// perUnitUS is CPU microseconds per unit, or 0 without units.
func perUnitUS(cpu time.Duration, units int64) float64 {
	if units <= 0 {
		return 0
	}
	return round(float64(cpu.Microseconds())/float64(units), 3)
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

func rate(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return round(float64(n)/seconds, 1)
}

// startProgress prints line() to stderr once a second until the returned
// function is called; with -quiet it does nothing.
func (b *bench) startProgress(line func(elapsed time.Duration) string) (stop func()) {
	if b.opts.quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				fmt.Fprintf(b.stderr, "%s: %s\n", name, line(now.Sub(start)))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// loadProgress is the progress line of the load modes: the rate over the
// last second, the average over the measured window so far, the errors.
func (b *bench) loadProgress(unit string) func(time.Duration) string {
	var last int64
	var lastAt time.Duration
	return func(elapsed time.Duration) string {
		total := b.total.Load()
		now := rate(total-last, (elapsed - lastAt).Seconds())
		last, lastAt = total, elapsed
		phase, avg := "warm-up", ""
		if b.measuring.Load() {
			phase = "measuring"
			if secs := time.Since(time.Unix(0, b.startNano.Load())).Seconds(); secs > 0 {
				avg = fmt.Sprintf(", average %.0f", float64(b.count.Load())/secs)
			}
		} else if b.stopping.Load() || b.startNano.Load() != 0 {
			phase = "stopping"
		}
		return fmt.Sprintf("%4.0fs %-9s %9.0f %s/s%s, %d errors", elapsed.Seconds(), phase, now, unit, avg, b.errorCount())
	}
}

func (b *bench) errorCount() int64 {
	var n int64
	for i := range b.errs {
		n += b.errs[i].Load()
	}
	return n
}

// printSummary writes the human summary. The per-unit proxy CPU comes
// first among the proxy figures: on a shared machine it is the one to
// compare.
func (b *bench) printSummary(w io.Writer, r *Result) {
	label := ""
	if r.Label != "" {
		label = " [" + r.Label + "]"
	}
	fmt.Fprintf(w, "%s %s%s %s\n", name, r.Mode, label, r.URL)
	win := b.win
	switch r.Mode {
	case modeRTT, modeThroughput:
		extra := ""
		if r.Mode == modeThroughput {
			extra = fmt.Sprintf(", %d in flight each", r.Window)
		}
		fmt.Fprintf(w, "  %d connections, %d-byte messages%s, measured %.2fs after %s warm-up\n",
			r.Conns, r.Size, extra, r.DurationS, b.opts.warmup)
		fmt.Fprintf(w, "  messages      %d  (%.0f msg/s", r.Messages, r.MsgsPerS)
		if r.Mode == modeThroughput {
			fmt.Fprintf(w, ", %.2f MB/s", r.MBPerS)
		}
		fmt.Fprintln(w, ")")
	case modeConnRate:
		fmt.Fprintf(w, "  %d workers, %d-byte echo, measured %.2fs after %s warm-up\n",
			r.Conns, r.Size, r.DurationS, b.opts.warmup)
		fmt.Fprintf(w, "  handshakes    %d  (%.1f/s)\n", r.Handshakes, r.HandshakesPerS)
		if b.opts.resume {
			fmt.Fprintf(w, "  resumed       %d of them\n", r.Resumed)
		}
	case modeIdle:
		id := r.Idle
		fmt.Fprintf(w, "  opened %d of %d (%d failed), held %.2fs\n", id.Opened, id.Target, id.Failed, r.DurationS)
		if id.RSSPerConnBytes != nil {
			fmt.Fprintf(w, "  proxy RSS per connection:  %d bytes   (%d kB before, %d kB after)\n",
				*id.RSSPerConnBytes, *id.RSSBeforeKB, *id.RSSAfterKB)
		}
		fmt.Fprintln(w, "  note: file-descriptor limits are 20000 per process on these machines, so a proxy")
		fmt.Fprintln(w, "        holding 2 fds per connection (client + backend) tops out near 9,900")
		for _, pid := range b.opts.pids {
			switch lim, err := readOpenFileLimit(pid); {
			case err != nil:
			case lim < 0:
				fmt.Fprintf(w, "        pid %d may open any number of files\n", pid)
			default:
				fmt.Fprintf(w, "        pid %d may open %d files\n", pid, lim)
			}
		}
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "  latency µs    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	fmt.Fprintf(w, "  errors        %d", r.Errors)
	var kinds []string
	for k := range numErrorKinds {
		if n := b.errs[k].Load(); n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(kinds) > 0 {
		fmt.Fprintf(w, "  (%s)", strings.Join(kinds, ", "))
	}
	fmt.Fprintln(w)
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range numErrorKinds {
		if e := b.firstErr[k]; e != "" {
			fmt.Fprintf(w, "    first %s error: %s\n", k, e)
		}
	}
	units, unit := r.Messages, "message"
	if r.Mode == modeConnRate {
		units, unit = r.Handshakes, "handshake"
	}
	if p := r.Proc; p != nil {
		pids := (*pidList)(&p.PIDs).String()
		switch {
		case p.CPUUsPerMsg > 0:
			fmt.Fprintf(w, "  PROXY CPU     %.2f µs per message    (%.3f s over %.2fs%s, pids %s)\n", p.CPUUsPerMsg, p.CPUS, r.DurationS, kernelShare(p), pids)
		case p.CPUUsPerHandshake > 0:
			fmt.Fprintf(w, "  PROXY CPU     %.1f µs per handshake  (%.3f s over %.2fs%s, pids %s)\n", p.CPUUsPerHandshake, p.CPUS, r.DurationS, kernelShare(p), pids)
		default:
			fmt.Fprintf(w, "  proxy CPU     %.3f s over %.2fs%s, pids %s\n", p.CPUS, r.DurationS, kernelShare(p), pids)
		}
		fmt.Fprintf(w, "  proxy RSS     %d kB\n", p.RSSKB)
	}
	if len(r.StealPct) > 0 {
		fmt.Fprintf(w, "  host steal    %s  (time the hypervisor ran other guests; more than a few %% disturbs every figure)\n", report.FormatSteal(r.StealPct))
	}
	if r.Mode != modeIdle && win.end.After(win.start) {
		fmt.Fprintf(w, "  bench CPU     %.3f s (%.0f%% of one core)", win.selfCPU.Seconds(), 100*win.selfCPU.Seconds()/win.seconds())
		if units > 0 {
			fmt.Fprintf(w, ", %.2f µs per %s", perUnitUS(win.selfCPU, units), unit)
		}
		fmt.Fprintln(w)
	}
	for _, n := range b.notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
