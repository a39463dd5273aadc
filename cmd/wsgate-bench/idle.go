package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// idleDialers is how many connections idle opens at a time.
	idleDialers = 64
	// idleGiveUp is how many failures in a row make idle stop opening: past
	// a proxy's file-descriptor limit every attempt fails (usually by a
	// handshake timeout, as the connection waits in the accept queue).
	idleGiveUp = 16
	// idleSettle is how long idle waits after the last connection opened
	// before it reads the proxy's RSS (capped by -duration).
	idleSettle = time.Second
)

// runIdle opens -c connections, idleDialers at a time, proves each with
// one echo, holds them all for -duration and closes them with a close
// handshake. With -pid it reads the proxy's RSS before the first
// connection and once all are open and settled.
func (b *bench) runIdle(ctx context.Context, res *Result) {
	id := &Idle{Target: b.opts.conns}
	res.Idle = id
	var rssBefore int64
	rssOK := len(b.opts.pids) > 0
	if rssOK {
		var err error
		if rssBefore, err = b.opts.pids.rssKB(); err != nil {
			b.note("-pid: %v", err)
			rssOK = false
		}
	}

	var (
		opened, failed atomic.Int64
		holding        atomic.Bool
		holdStart      atomic.Int64
		closing        atomic.Bool // the close phase has begun
		forced         atomic.Bool // the close phase gave up waiting for answers
	)
	stopProgress := b.startProgress(func(elapsed time.Duration) string {
		if closing.Load() {
			return fmt.Sprintf("%4.0fs closing, %d errors", elapsed.Seconds(), b.errorCount())
		}
		if holding.Load() {
			held := time.Since(time.Unix(0, holdStart.Load()))
			return fmt.Sprintf("%4.0fs holding %d connections, %.0fs of %s, %d errors",
				elapsed.Seconds(), opened.Load(), held.Seconds(), b.opts.duration, b.errorCount())
		}
		return fmt.Sprintf("%4.0fs opening: %d open, %d failed", elapsed.Seconds(), opened.Load(), failed.Load())
	})
	defer stopProgress()

	var (
		mu      sync.Mutex
		conns   = make([]*websocket.Conn, 0, b.opts.conns)
		readers sync.WaitGroup
		ended   atomic.Int64 // readers that returned
	)
	openStart := time.Now()
	b.openIdle(ctx, &opened, &failed, func(c *websocket.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		readers.Go(func() {
			defer ended.Add(1)
			b.idleReader(c, &closing, &forced)
		})
	})
	id.Opened, id.Failed = int(opened.Load()), int(failed.Load())
	b.note("opening took %.2fs", time.Since(openStart).Seconds())

	// Hold. The CPU window is the hold itself: what idle connections cost.
	var w window
	cpu0, procErr := b.opts.pids.cpu()
	self0 := selfCPU()
	w.start = time.Now()
	holdStart.Store(w.start.UnixNano())
	holding.Store(true)
	pause(ctx, min(idleSettle, b.opts.duration))
	if rssOK {
		rssAfter, err := b.opts.pids.rssKB()
		if err != nil {
			b.note("-pid: %v", err)
		} else {
			id.RSSBeforeKB, id.RSSAfterKB = new(rssBefore), new(rssAfter)
			if id.Opened > 0 {
				id.RSSPerConnBytes = new((rssAfter - rssBefore) * 1024 / int64(id.Opened))
			}
		}
	}
	pause(ctx, b.opts.duration-time.Since(w.start))
	w.end = time.Now()
	w.selfCPU = selfCPU() - self0
	if ctx.Err() != nil {
		b.note("interrupted after holding %.2fs", w.seconds())
	}
	if len(b.opts.pids) > 0 && procErr == nil {
		var cpu1 cpuTimes
		if cpu1, procErr = b.opts.pids.cpu(); procErr == nil {
			w.proxyCPU = cpu1.sub(cpu0)
			w.proxyRSS, procErr = b.opts.pids.rssKB()
		}
	}
	w.procErr = procErr
	if procErr != nil && len(b.opts.pids) > 0 {
		b.note("-pid: %v", procErr)
	}
	b.win = w
	res.DurationS = round(w.seconds(), 3)
	res.Proc = b.procResult(w)

	closeStart := time.Now()
	b.closeIdle(conns, &readers, &ended, &closing, &forced)
	b.note("closing took %.2fs", time.Since(closeStart).Seconds())
}

// openIdle opens connections until -c are open, ctx ends, or opening fails
// in a way that more attempts would not fix. add receives every connection
// that completed its echo.
func (b *bench) openIdle(ctx context.Context, opened, failed *atomic.Int64, add func(*websocket.Conn)) {
	var (
		next     atomic.Int64
		inARow   atomic.Int64
		giveUp   atomic.Bool
		wg       sync.WaitGroup
		target   = int64(b.opts.conns)
		size     = b.opts.size
		stopOnce sync.Once
	)
	for range min(idleDialers, b.opts.conns) {
		wg.Go(func() {
			buf := make([]byte, size+1)
			fillPayload(buf)
			for !giveUp.Load() && ctx.Err() == nil && next.Add(1) <= target {
				c, err := b.dialer.dial(ctx)
				if err != nil {
					err = tag(errDial, err)
				} else if err = echoOnce(c, buf, size, 0); err != nil {
					c.Close()
				} else {
					// Held idle from now on, possibly for longer than the
					// echo's read deadline: the reader waits without one.
					err = c.SetReadDeadline(time.Time{})
					answerPings(c)
				}
				if err == nil {
					inARow.Store(0)
					opened.Add(1)
					add(c)
					continue
				}
				if ctx.Err() != nil {
					return // interrupted, not failed
				}
				failed.Add(1)
				b.fail(err)
				if isResourceLimit(err) || inARow.Add(1) >= idleGiveUp {
					giveUp.Store(true)
					stopOnce.Do(func() {
						b.note("stopped opening with %d open: %v", opened.Load(), err)
					})
				}
			}
		})
	}
	wg.Wait()
}

// isResourceLimit reports whether err means this machine ran out of
// something (file descriptors, ports, buffers) rather than one attempt
// failing.
func isResourceLimit(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return strings.Contains(err.Error(), "too many open files")
}

// answerPings replaces gorilla's ping handler, whose pong must be written
// within a second, with one that allows ioTimeout, as every other write
// here: with thousands of connections on a busy machine, a generator can
// be kept off the CPU for more than a second, which is not the proxy's
// failure.
func answerPings(c *websocket.Conn) {
	c.SetPingHandler(func(data string) error {
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(ioTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
}

// idleReader is the only reader of a held connection. Reading answers the
// server's pings (gorilla's default handler) and notices a drop at once.
func (b *bench) idleReader(c *websocket.Conn, closing, forced *atomic.Bool) {
	for {
		_, _, err := c.NextReader()
		switch {
		case err == nil:
			b.fail(tag(errEcho, errors.New("a message on an idle connection")))
		case closing.Load() && isNormalClose(err):
			return
		case forced.Load():
			b.fail(tag(errClose, errors.New("no answer to the close frame")))
			return
		case closing.Load():
			b.fail(tag(errClose, err))
			return
		default:
			b.fail(tag(errClose, fmt.Errorf("dropped while idle: %w", err)))
			return
		}
	}
}

// closeIdle sends every held connection a close frame, waits for the
// answers as long as they keep coming (until none has come for
// 2*closeWait), then closes all of them. ended counts the readers that
// returned. Ten thousand close handshakes through a proxy on a busy
// machine can take longer than any fixed budget, while a stalled peer
// shows as no progress.
func (b *bench) closeIdle(conns []*websocket.Conn, readers *sync.WaitGroup, ended *atomic.Int64, closing, forced *atomic.Bool) {
	closing.Store(true)
	var next atomic.Int64
	var senders sync.WaitGroup
	for range min(idleDialers, len(conns)) {
		senders.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(conns)); i = next.Add(1) - 1 {
				// A failure here shows again in the reader, which counts
				// it. ioTimeout, not closeWait: a generator holding
				// thousands of connections on a busy machine can be kept
				// off the CPU for more than a second.
				sendCloseWithin(conns[i], ioTimeout) //nolint:errcheck
			}
		})
	}
	senders.Wait()

	if !waitWhileProgress(readers, ended, 2*closeWait) {
		forced.Store(true)
	}
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
}

// waitWhileProgress waits for wg as long as done keeps growing, and
// reports whether wg finished: it gives up once done has not moved for
// stall. Every wait past the first stall needs done to have grown, so it
// ends. When it gives up, a goroutine still waits for wg; the caller must
// make it finish.
func waitWhileProgress(wg *sync.WaitGroup, done *atomic.Int64, stall time.Duration) bool {
	finished := doneChan(wg)
	t := time.NewTimer(stall)
	defer t.Stop()
	last := done.Load()
	for {
		select {
		case <-finished:
			return true
		case <-t.C:
			n := done.Load()
			if n == last {
				return false
			}
			last = n
			t.Reset(stall)
		}
	}
}
