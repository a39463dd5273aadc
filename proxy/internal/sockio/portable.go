package sockio

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// portable is Conn over net.Conn's own Read and Write: a copier that waits
// in Read holding its buffer, as io.Copy would. Write timeouts are write
// deadlines set per write.
type portable struct {
	c        net.Conn
	wtimeout time.Duration
	left     leftover

	mu      sync.Mutex // orders deadline changes; guards the fields below
	limit   time.Time  // LimitWrites' deadline; zero: none
	aborted bool       // LimitWrites with a past time was called
}

func newPortable(c net.Conn, writeTimeout time.Duration) *portable {
	return &portable{c: c, wtimeout: writeTimeout}
}

func (p *portable) Relay(fn func([]byte) (int, error)) error {
	if stop, err := p.left.deliver(fn); stop {
		return err
	}
	for {
		bp := getBuf()
		n, err := p.c.Read(*bp)
		if n > 0 {
			if stop, ferr := handOver(&p.left, fn, bp, 0, n); stop {
				return ferr
			}
		} else {
			putBuf(bp)
		}
		if err != nil {
			return err
		}
	}
}

// MoreFollows: a portable Relay does not know.
func (p *portable) MoreFollows() bool { return false }

func (p *portable) WriteMore(b []byte) (int, error) { return p.Write(b) }

func (p *portable) Flush() error { return nil }

func (p *portable) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.aborted {
		p.mu.Unlock()
		return 0, ErrWouldBlock
	}
	if p.wtimeout > 0 {
		d := time.Now().Add(p.wtimeout)
		if !p.limit.IsZero() && p.limit.Before(d) {
			d = p.limit
		}
		_ = p.c.SetWriteDeadline(d)
	}
	p.mu.Unlock()
	return p.c.Write(b)
}

// CloseWrite sends close_notify (TLS) and the FIN. After an abort it sends
// only the FIN: crypto/tls offers no way to try close_notify without
// waiting.
func (p *portable) CloseWrite() error {
	p.mu.Lock()
	aborted := p.aborted
	p.mu.Unlock()
	c := p.c
	if tc, ok := c.(*tls.Conn); ok {
		if !aborted {
			if err := tc.CloseWrite(); err != nil {
				return err
			}
		}
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (p *portable) LimitWrites(deadline time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aborted {
		return
	}
	p.limit = deadline
	if deadline.Before(time.Now()) {
		p.aborted = true
		deadline = aLongTimeAgo
	}
	_ = p.c.SetWriteDeadline(deadline)
}

func (p *portable) SetReadDeadline(t time.Time) error { return p.c.SetReadDeadline(t) }

func (p *portable) Close() error { return p.c.Close() }

func (p *portable) Parkable() (Pollable, bool) { return nil, false }
