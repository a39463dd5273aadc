package main

import (
	"context"
	"crypto/tls"
	"time"
)

// runConnRate runs -c workers that each repeat the whole life of a
// connection: TCP connect, full TLS handshake, upgrade, one echo, close
// handshake, TCP close. The latency is that of the whole sequence.
func (b *bench) runConnRate(ctx context.Context, res *Result) {
	all := b.runWorkers(ctx, "handshake", b.handshakeLoop)
	res.DurationS = round(b.win.seconds(), 3)
	res.Handshakes = b.count.Load()
	res.HandshakesPerS = rate(res.Handshakes, b.win.seconds())
	res.Latency = all.latency()
	if p := b.procResult(b.win); p != nil {
		p.CPUUsPerHandshake = perUnitUS(b.win.proxyCPU.total, res.Handshakes)
		res.Proc = p
	}
	if b.opts.n > 0 && res.Handshakes < b.opts.n {
		b.note("-n %d not reached: -duration %s ended the run first", b.opts.n, b.opts.duration)
	}
}

// handshakeLoop is one connrate worker. A sequence still in flight when the
// run stops is finished (so that the server sees no aborted handshakes) but
// not counted; hard aborts it if it takes too long.
func (b *bench) handshakeLoop(stop, hard context.Context, h *histogram) {
	buf := make([]byte, b.opts.size+1)
	fillPayload(buf)
	for !b.over(stop) {
		start := time.Now()
		resumed, err := b.handshakeOnce(hard, buf)
		if err != nil {
			if !b.over(stop) {
				b.fail(err)
				pause(stop, retryPause)
			}
			continue
		}
		b.completedResumed(h, time.Since(start), resumed)
	}
}

// handshakeOnce runs one sequence and reports whether its TLS handshake
// resumed a session.
func (b *bench) handshakeOnce(hard context.Context, buf []byte) (bool, error) {
	c, err := b.dialer.dial(hard)
	if err != nil {
		return false, tag(errDial, err)
	}
	tc, ok := c.NetConn().(*tls.Conn)
	resumed := ok && tc.ConnectionState().DidResume
	release := context.AfterFunc(hard, func() { c.Close() })
	defer release()
	if err := echoOnce(c, buf, b.opts.size, 0); err != nil {
		c.Close()
		return resumed, err
	}
	err = closeHandshake(c)
	// The TCP close itself cannot usefully fail: by now the server may have
	// closed its side, and the TLS close_notify may meet a reset.
	c.Close()
	return resumed, err
}
