package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// histExact nanoseconds each get a bucket of their own; above that, every
// power of two is split into histSub equal buckets, so a bucket is at most
// 1/histSub of its lower bound wide. Reporting the middle of a bucket is
// then within 1/(2*histSub) = 0.4% of any value in it.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histExact   = 2 * histSub      // values below this are recorded exactly
	histMaxBits = 40               // values from 2^40 ns (about 18 minutes) up are clamped
	histBuckets = histExact + (histMaxBits-histSubBits-1)*histSub
	histMaxNS   = 1<<histMaxBits - 1
)

// histogram records durations without allocating. It is not safe for
// concurrent use: give each goroutine its own and merge them at the end.
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max uint64 // exact, in nanoseconds; valid when n > 0
}

func newHistogram() *histogram { return new(histogram) }

func histIndex(v uint64) int {
	if v < histExact {
		return int(v)
	}
	exp := bits.Len64(v) - 1 // histSubBits+1 .. histMaxBits-1
	shift := exp - histSubBits
	mant := v >> shift // histSub .. 2*histSub-1
	return histExact + (exp-histSubBits-1)*histSub + int(mant-histSub)
}

// histMiddle is the value reported for bucket i: the middle of its range.
func histMiddle(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	k := i - histExact
	exp := histSubBits + 1 + k/histSub
	shift := exp - histSubBits
	low := uint64(histSub+k%histSub) << shift
	return low + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	if v > histMaxNS {
		v = histMaxNS
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// histRank is the 1-based rank of quantile q among n samples: the smallest
// rank whose share of samples is at least q. The tiny slack keeps
// 0.999*1000 from rounding up to 1000.
func histRank(q float64, n uint64) uint64 {
	r := uint64(math.Ceil(q*float64(n) - 1e-9))
	return min(max(r, 1), n)
}

// quantile returns the value at quantile q in [0, 1], or 0 with no samples.
// The first and last ranks are the exact minimum and maximum; the others
// are bucket middles, kept within [min, max].
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := histRank(q, h.n)
	switch rank {
	case 1:
		return time.Duration(h.min)
	case h.n:
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(histMiddle(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// latency summarises the histogram in microseconds, or nil when empty.
func (h *histogram) latency() *Latency {
	if h.n == 0 {
		return nil
	}
	us := func(d time.Duration) float64 { return math.Round(float64(d)/1e2) / 10 }
	return &Latency{
		P50:  us(h.quantile(0.50)),
		P90:  us(h.quantile(0.90)),
		P99:  us(h.quantile(0.99)),
		P999: us(h.quantile(0.999)),
		Max:  us(time.Duration(h.max)),
	}
}
