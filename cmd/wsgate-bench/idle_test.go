package main

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestWaitWhileProgress(t *testing.T) {
	const stall = 2 * time.Second
	t.Run("slow but steady", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Five finish 3/4 of a stall apart: longer than a stall in
			// all, never a stall without one finishing.
			var wg sync.WaitGroup
			var done atomic.Int64
			for i := range 5 {
				wg.Go(func() {
					time.Sleep(time.Duration(i+1) * stall * 3 / 4)
					done.Add(1)
				})
			}
			start := time.Now()
			if !waitWhileProgress(&wg, &done, stall) {
				t.Errorf("waitWhileProgress = false after %v, want true", time.Since(start))
			}
		})
	})
	t.Run("stalled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// One finishes at once; the other waits for release.
			var wg sync.WaitGroup
			var done atomic.Int64
			release := make(chan struct{})
			wg.Go(func() { done.Add(1) })
			wg.Go(func() {
				<-release
				done.Add(1)
			})
			synctest.Wait()
			start := time.Now()
			if waitWhileProgress(&wg, &done, stall) {
				t.Errorf("waitWhileProgress = true, want false")
			}
			if took := time.Since(start); took != stall {
				t.Errorf("gave up after %v, want %v", took, stall)
			}
			close(release)
			wg.Wait()
		})
	})
}
