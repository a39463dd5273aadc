// Command tracestat summarizes a Go execution trace (from wsgate's
// /debug/pprof/trace with admin.pprof: true) for tail-latency work: how
// long goroutines waited to run once runnable (the scheduler's queueing),
// how long they ran, and how long each GC mark phase took.
//
//	cd tools/tracestat && go run . trace.out
//
// docs/benchmarks.md#tail-latency-64-byte-round-trips has what it showed.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracestat TRACE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	r, err := trace.NewReader(f)
	if err != nil {
		panic(err)
	}
	runnableAt := map[trace.GoID]trace.Time{}
	var delays []time.Duration
	var runs []time.Duration
	runningAt := map[trace.GoID]trace.Time{}
	var gcStart trace.Time
	var gcs []time.Duration
	var first, last trace.Time
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		switch ev.Kind() {
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			id := st.Resource.Goroutine()
			from, to := st.Goroutine()
			if to == trace.GoRunnable {
				runnableAt[id] = ev.Time()
			}
			if to == trace.GoRunning {
				if t0, ok := runnableAt[id]; ok && from == trace.GoRunnable {
					delays = append(delays, ev.Time().Sub(t0))
				}
				delete(runnableAt, id)
				runningAt[id] = ev.Time()
			}
			if from == trace.GoRunning {
				if t0, ok := runningAt[id]; ok {
					runs = append(runs, ev.Time().Sub(t0))
				}
				delete(runningAt, id)
			}
		case trace.EventRangeBegin:
			if ev.Range().Name == "GC concurrent mark phase" {
				gcStart = ev.Time()
			}
		case trace.EventRangeEnd:
			if ev.Range().Name == "GC concurrent mark phase" && gcStart != 0 {
				gcs = append(gcs, ev.Time().Sub(gcStart))
			}
		}
	}
	pct := func(name string, d []time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		if len(d) == 0 {
			return
		}
		q := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		fmt.Printf("%s: n=%d mean=%v p50=%v p90=%v p99=%v p99.9=%v max=%v\n", name, len(d), sum/time.Duration(len(d)), q(.5), q(.9), q(.99), q(.999), d[len(d)-1])
	}
	fmt.Printf("trace span %v\n", last.Sub(first))
	pct("runnable->running (sched delay)", delays)
	pct("running slice", runs)
	pct("GC mark phase", gcs)
}
