package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// runThroughput runs -c connections that each keep -window messages in
// flight: a writer goroutine sends whenever the window has room, a reader
// goroutine takes the echoes and makes room again.
func (b *bench) runThroughput(ctx context.Context, res *Result) {
	b.runWorkers(ctx, "msg", func(stop, hard context.Context, _ *histogram) {
		b.keepConnected(stop, hard, func(c *websocket.Conn) error { return b.throughputSession(stop, c) })
	})
	res.DurationS = round(b.win.seconds(), 3)
	res.Messages = b.count.Load()
	res.MsgsPerS = rate(res.Messages, b.win.seconds())
	res.MBPerS = round(float64(res.Messages)*float64(b.opts.size)/1e6/b.win.seconds(), 3)
	if b.win.seconds() <= 0 {
		res.MBPerS = 0
	}
	if p := b.procResult(b.win); p != nil {
		p.CPUUsPerMsg = perUnitUS(b.win.proxyCPU.total, res.Messages)
		res.Proc = p
	}
}

// throughputSession runs one connection's writer and reader. When stop
// ends, the writer sends a close frame instead of the next message; the
// reader takes the echoes still in flight until the peer's close arrives.
// The first failure of either side closes the connection, which ends the
// other, and is the one returned.
func (b *bench) throughputSession(stop context.Context, c *websocket.Conn) error {
	var (
		window    = make(chan struct{}, b.opts.window) // a token per message in flight
		readerOut = make(chan struct{})
		closeSent atomic.Bool
		first     atomic.Pointer[error]
	)
	failed := func(err error) {
		if first.CompareAndSwap(nil, &err) {
			c.Close()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.throughputWriter(stop, c, window, readerOut, &closeSent); err != nil {
			failed(err)
		}
	})
	if err := b.throughputReader(c, window, &closeSent); err != nil {
		failed(err)
	}
	close(readerOut)
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// throughputWriter is the only writer of data messages on c.
func (b *bench) throughputWriter(stop context.Context, c *websocket.Conn, window chan struct{}, readerOut <-chan struct{}, closeSent *atomic.Bool) error {
	size := b.opts.size
	buf := make([]byte, size)
	fillPayload(buf)
	for seq := uint64(0); ; seq++ {
		select {
		case window <- struct{}{}:
		case <-stop.Done():
		case <-readerOut:
			return nil
		}
		if b.over(stop) {
			closeSent.Store(true) // before sending: the answer may beat the Store
			return sendClose(c)
		}
		stampSeq(buf, seq)
		if err := writeMessage(c, buf, time.Now().Add(ioTimeout)); err != nil {
			return err
		}
	}
}

// throughputReader is the only reader of c. It returns nil when the peer
// answers the writer's close frame with a 1000 close.
func (b *bench) throughputReader(c *websocket.Conn, window chan struct{}, closeSent *atomic.Bool) error {
	size := b.opts.size
	buf := make([]byte, size+1)
	for seq := uint64(0); ; seq++ {
		deadline := time.Now().Add(ioTimeout)
		if closeSent.Load() {
			deadline = time.Now().Add(closeWait)
		}
		if err := readEcho(c, buf, size, seq, deadline); err != nil {
			if closeSent.Load() && isNormalClose(err) {
				return nil
			}
			return err
		}
		select {
		case <-window:
		default:
			return tag(errEcho, errors.New("an echo of a message never sent"))
		}
		b.completed(nil, 0)
	}
}
