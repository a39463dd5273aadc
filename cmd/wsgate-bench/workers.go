package main

import (
	"context"
	"sync"
)

// runWorkers runs -c workers, each given its own stop and hard contexts and
// its own histogram, through the measured window, then stops them and
// returns the histograms merged. stop ends the workers' loops (a worker
// still in the middle of something finishes it); hard aborts what takes
// too long after that.
func (b *bench) runWorkers(ctx context.Context, unit string, work func(stop, hard context.Context, h *histogram)) *histogram {
	stopCtx, stop := context.WithCancel(ctx)
	hardCtx, hard := context.WithCancel(context.Background())
	defer hard()

	hists := make([]*histogram, b.opts.conns)
	var wg sync.WaitGroup
	for i := range hists {
		h := newHistogram()
		hists[i] = h
		wg.Go(func() { work(stopCtx, hardCtx, h) })
	}
	b.win = b.measure(ctx, unit)
	b.stopWorkers(&wg, stop, hard)

	all := newHistogram()
	for _, h := range hists {
		all.merge(h)
	}
	return all
}
