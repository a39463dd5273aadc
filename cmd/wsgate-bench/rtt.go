package main

import (
	"context"
	"time"

	"github.com/gorilla/websocket"
)

// runRTT runs -c closed loops: each sends one message and waits for its
// echo before sending the next, so the rate is bounded by the round trip.
func (b *bench) runRTT(ctx context.Context, res *Result) {
	all := b.runWorkers(ctx, "msg", func(stop, hard context.Context, h *histogram) {
		b.keepConnected(stop, hard, func(c *websocket.Conn) error { return b.rttSession(c, h) })
	})
	res.DurationS = round(b.win.seconds(), 3)
	res.Messages = b.count.Load()
	res.MsgsPerS = rate(res.Messages, b.win.seconds())
	res.Latency = all.latency()
	if p := b.procResult(b.win); p != nil {
		p.CPUUsPerMsg = perUnitUS(b.win.proxyCPU.total, res.Messages)
		res.Proc = p
	}
}

// rttSession is one connection's closed loop. It returns nil after a clean
// close handshake once the run is stopping.
func (b *bench) rttSession(c *websocket.Conn, h *histogram) error {
	size := b.opts.size
	buf := make([]byte, size+1)
	fillPayload(buf)
	for seq := uint64(0); !b.stopping.Load(); seq++ {
		start := time.Now()
		deadline := start.Add(ioTimeout)
		stampSeq(buf[:size], seq)
		if err := writeMessage(c, buf[:size], deadline); err != nil {
			return err
		}
		if err := readEcho(c, buf, size, seq, deadline); err != nil {
			return err
		}
		b.completed(h, time.Since(start))
	}
	return closeHandshake(c)
}

// keepConnected keeps one connection busy with session until stop ends:
// it dials, runs the session, and after a failure counts it, pauses and
// dials again. Cancelling hard closes the connection under the session.
// Failures after hard are the run's own doing and are not counted.
func (b *bench) keepConnected(stop, hard context.Context, session func(*websocket.Conn) error) {
	for !b.over(stop) {
		c, err := b.dialer.dial(stop)
		if err != nil {
			if !b.over(stop) {
				b.fail(tag(errDial, err))
				pause(stop, retryPause)
			}
			continue
		}
		release := context.AfterFunc(hard, func() { c.Close() })
		err = session(c)
		release()
		c.Close()
		if err != nil && hard.Err() == nil {
			b.fail(err)
			pause(stop, retryPause)
		}
	}
}

// over reports whether the run is stopping, for workers to leave their loops.
func (b *bench) over(stop context.Context) bool {
	return b.stopping.Load() || stop.Err() != nil
}
