package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func() time.Duration) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = f()
		}
		return s
	}
	tests := []struct {
		name    string
		samples []time.Duration
	}{
		{"one sample", []time.Duration{1234567}},
		{"constant", gen(1000, func() time.Duration { return 50 * time.Microsecond })},
		{"small exact values", gen(1000, func() time.Duration { return time.Duration(rng.IntN(256)) })},
		{"uniform 10µs-10ms", gen(20000, func() time.Duration {
			return 10*time.Microsecond + time.Duration(rng.Int64N(int64(10*time.Millisecond)))
		})},
		{"exponential mean 500µs", gen(20000, func() time.Duration {
			return time.Duration(rng.ExpFloat64() * float64(500*time.Microsecond))
		})},
		{"bimodal with outliers", gen(10000, func() time.Duration {
			switch r := rng.IntN(1000); {
			case r == 0:
				return 3 * time.Second
			case r < 500:
				return 80*time.Microsecond + time.Duration(rng.IntN(1000))
			default:
				return 2*time.Millisecond + time.Duration(rng.IntN(100000))
			}
		})},
		{"powers of two edges", []time.Duration{255, 256, 257, 511, 512, 1 << 20, 1<<20 - 1, 1<<20 + 1}},
	}
	quantiles := []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistogram()
			for _, d := range tc.samples {
				h.record(d)
			}
			sorted := slices.Clone(tc.samples)
			slices.Sort(sorted)
			for _, q := range quantiles {
				want := sorted[histRank(q, uint64(len(sorted)))-1]
				got := h.quantile(q)
				if diff := (got - want).Abs(); float64(diff) > 0.01*float64(want)+1 {
					t.Errorf("quantile(%v) = %v, want %v within 1%%", q, got, want)
				}
			}
			if got, want := time.Duration(h.max), sorted[len(sorted)-1]; got != want {
				t.Errorf("max = %v, want %v exactly", got, want)
			}
		})
	}
}

func TestHistogramRank(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    float64
		n    uint64
		want uint64
	}{
		{0, 10, 1},
		{0.5, 10, 5},
		{0.999, 1000, 999},
		{0.99, 1000, 990},
		{0.9, 1, 1},
		{1, 7, 7},
	}
	for _, tc := range tests {
		if got := histRank(tc.q, tc.n); got != tc.want {
			t.Errorf("histRank(%v, %d) = %d, want %d", tc.q, tc.n, got, tc.want)
		}
	}
}

func TestHistogramMergeAndBounds(t *testing.T) {
	t.Parallel()
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := range 5000 {
		d := time.Duration(i*i) * time.Nanosecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	a.merge(newHistogram()) // an empty one changes nothing
	if *a != *all {
		t.Errorf("merged histogram differs from one fed every sample")
	}

	h := newHistogram()
	if got := h.latency(); got != nil {
		t.Errorf("latency() of an empty histogram = %+v, want nil", got)
	}
	h.record(-time.Second)   // clamped to 0
	h.record(24 * time.Hour) // clamped to the largest bucket
	if got, want := h.quantile(0), time.Duration(0); got != want {
		t.Errorf("quantile(0) = %v, want %v", got, want)
	}
	if got, want := h.quantile(1), time.Duration(histMaxNS); got != want {
		t.Errorf("quantile(1) = %v, want %v", got, want)
	}

	// Every bucket's middle maps back to that bucket.
	for i := range histBuckets {
		if got := histIndex(histMiddle(i)); got != i {
			t.Fatalf("histIndex(histMiddle(%d)) = %d", i, got)
		}
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := newHistogram()
	d := 1234 * time.Microsecond
	if n := testing.AllocsPerRun(1000, func() { h.record(d); d += 7 }); n != 0 {
		t.Errorf("record allocates %v times per call, want 0", n)
	}
}
