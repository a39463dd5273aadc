package proxy

import (
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// parker holds parked copiers in an epoll set of its own. Each is
// registered under a token, never its file descriptor, so that a stale
// event for a closed and reused descriptor cannot wake the wrong copier.
//
// The set is waited on through the runtime's poller (an epoll descriptor
// is itself pollable), never with a blocking epoll_wait: a goroutine
// blocked in a system call keeps its P until sysmon takes it back, which
// with GOMAXPROCS=1 would stall every other goroutine for 20 µs to
// milliseconds each time the parker went back to waiting.
type parker struct {
	ep     *os.File        // the epoll set, non-blocking, in the runtime poller
	raw    syscall.RawConn // ep's
	wakefd int             // an eventfd that ends wait

	mu     sync.Mutex
	tokens map[uint64]*copier // guarded by mu
	next   uint64             // guarded by mu
	closed bool               // guarded by mu
}

const wakeToken = 0

func newParker() (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	r, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, errno
	}
	p := &parker{ep: os.NewFile(uintptr(epfd), "wsgate-parker"), wakefd: int(r), tokens: make(map[uint64]*copier), next: wakeToken + 1}
	if p.raw, err = p.ep.SyscallConn(); err != nil {
		p.close()
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := p.ctl(syscall.EPOLL_CTL_ADD, uintptr(p.wakefd), &ev); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// ctl is epoll_ctl on the set; it fails once the set is closed.
func (p *parker) ctl(op int, fd uintptr, ev *syscall.EpollEvent) error {
	var cerr error
	err := p.raw.Control(func(epfd uintptr) {
		cerr = syscall.EpollCtl(int(epfd), op, int(fd), ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

func setToken(ev *syscall.EpollEvent, tok uint64) {
	ev.Fd = int32(tok)
	ev.Pad = int32(tok >> 32)
}

func token(ev *syscall.EpollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// park registers c's socket, one-shot, and marks c parked. It reports
// false if the socket is gone or the parker is stopping.
func (p *parker) park(c *copier, raw syscall.RawConn) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	tok := p.next
	p.next++
	p.tokens[tok] = c
	c.parkToken = tok
	// Parked before the descriptor is armed: an event may fire at once.
	c.state.Store(stateParked)
	p.mu.Unlock()

	var cerr error
	err := raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
		setToken(&ev, tok)
		cerr = p.ctl(syscall.EPOLL_CTL_ADD, fd, &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		// Not parked after all, unless someone resumed it meanwhile (then
		// a new goroutine runs it and this one must end).
		if c.state.CompareAndSwap(stateParked, stateRunning) {
			p.forget(c)
			return false
		}
		return true
	}
	if c.state.Load() != stateParked {
		// Resumed between marking and arming: its forget found nothing to
		// delete, so delete the registration now.
		_ = raw.Control(func(fd uintptr) {
			_ = p.ctl(syscall.EPOLL_CTL_DEL, fd, nil)
		})
	}
	return true
}

// forget drops c's token; called by whoever resumed c.
func (p *parker) forget(c *copier) {
	p.mu.Lock()
	delete(p.tokens, c.parkToken)
	p.mu.Unlock()
	// The registration is one-shot and has fired, or the socket is about
	// to be closed (which removes it from the set); a resume for any other
	// reason deletes it here, so a later event cannot find the copier.
	if raw := c.parkConn(); raw != nil {
		_ = raw.Control(func(fd uintptr) {
			_ = p.ctl(syscall.EPOLL_CTL_DEL, fd, nil)
		})
	}
}

// all returns every parked copier.
func (p *parker) all() []*copier {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*copier, 0, len(p.tokens))
	for _, c := range p.tokens {
		out = append(out, c)
	}
	return out
}

// wait delivers readiness events to ready until stop.
func (p *parker) wait(ready func(*copier)) {
	events := make([]syscall.EpollEvent, 128)
	stopped := false
	for !stopped {
		// The callback takes what is ready without waiting; when nothing
		// is, it returns false and the runtime poller waits for the set
		// to become readable.
		err := p.raw.Read(func(epfd uintptr) bool {
			for {
				n, errno := epollNoWait(epfd, events)
				switch {
				case errno == syscall.EINTR:
					continue
				case errno != 0:
					stopped = true // the set is unusable: nothing more will come
					return true
				case n == 0:
					return false
				}
				for i := range events[:n] {
					tok := token(&events[i])
					if tok == wakeToken {
						stopped = true
						return true
					}
					p.mu.Lock()
					c := p.tokens[tok]
					p.mu.Unlock()
					if c != nil {
						ready(c)
					}
				}
				if n < len(events) {
					return false
				}
			}
		})
		if err != nil {
			return
		}
	}
}

// epollNoWait is epoll_wait with a zero timeout, as a raw system call.
func epollNoWait(epfd uintptr, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(n), errno
}

// stop makes wait return and refuses further parking.
func (p *parker) stop() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	one := [8]byte{1}
	_, _ = syscall.Write(p.wakefd, one[:])
}

func (p *parker) close() {
	syscall.Close(p.wakefd)
	_ = p.ep.Close()
}
