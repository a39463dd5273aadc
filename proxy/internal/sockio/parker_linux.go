//go:build linux && !wsgate_portable

package sockio

import (
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Parker holds parked sockets in an epoll set of its own, so that a tunnel
// idle for long needs no goroutine to wait for its next bytes. Each is
// registered under a token, never its file descriptor, so that a stale
// event for a closed and reused descriptor cannot wake the wrong Waker.
//
// The set is waited on through the runtime's poller (an epoll descriptor
// is itself pollable), never with a blocking epoll_wait: a goroutine
// blocked in a system call keeps its P until sysmon takes it back, which
// with GOMAXPROCS=1 would stall every other goroutine for 20 µs to
// milliseconds each time the parker went back to waiting.
type Parker struct {
	ep     *os.File        // the epoll set, non-blocking, in the runtime poller
	raw    syscall.RawConn // ep's
	wakefd int             // an eventfd that ends Wait

	mu     sync.Mutex
	slots  []parkSlot // guarded by mu; a token's slot is its low 32 bits - 1
	free   uint32     // the first free slot + 1, 0 when none; guarded by mu
	parked int        // slots in use; guarded by mu
	closed bool       // guarded by mu
}

// parkSlot is one parked Waker. A slot is reused once its Waker is
// forgotten, under a new generation, so that a stale token (an event for a
// registration already forgotten) finds nothing. A free slot's next links
// the free list. 24 bytes a parked socket, where two maps (token to Waker
// and back) took about 90.
type parkSlot struct {
	w    Waker // nil when free
	gen  uint32
	next uint32 // free list: the next free slot + 1, 0 at the end
}

const wakeToken = 0

// NewParker returns a Parker; on systems without one, an error.
func NewParker() (*Parker, error) {
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
	p := &Parker{ep: os.NewFile(uintptr(epfd), "wsgate-parker"), wakefd: int(r)}
	if p.raw, err = p.ep.SyscallConn(); err != nil {
		p.Close()
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := p.ctl(syscall.EPOLL_CTL_ADD, uintptr(p.wakefd), &ev); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// ctl is epoll_ctl on the set; it fails once the set is closed.
func (p *Parker) ctl(op int, fd uintptr, ev *syscall.EpollEvent) error {
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

// Park registers s, one-shot, to wake w when it becomes readable, and
// returns the registration's token (never 0), which Forget takes. It
// reports false, with nothing registered, when the Parker is stopping or s
// is gone. An event may fire (and w be woken) before Park returns: the
// caller marks itself parked first.
func (p *Parker) Park(s Pollable, w Waker) (uint64, bool) {
	rs, ok := s.(*rawSock)
	if !ok {
		return 0, false
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, false
	}
	tok := p.addLocked(w)
	p.mu.Unlock()

	var cerr error
	err := rs.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
		setToken(&ev, tok)
		cerr = p.ctl(syscall.EPOLL_CTL_ADD, fd, &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.mu.Lock()
		p.removeLocked(tok)
		p.mu.Unlock()
		return 0, false
	}
	return tok, true
}

// addLocked puts w in a free slot (or a new one) and returns its token:
// the slot's generation above, its index + 1 below.
func (p *Parker) addLocked(w Waker) uint64 {
	var i uint32
	if p.free != 0 {
		i = p.free - 1
		p.free = p.slots[i].next
	} else {
		p.slots = append(p.slots, parkSlot{})
		i = uint32(len(p.slots) - 1)
	}
	sl := &p.slots[i]
	sl.w, sl.next = w, 0
	p.parked++
	return uint64(sl.gen)<<32 | uint64(i+1)
}

// lookupLocked returns the Waker of tok, nil if tok was forgotten.
func (p *Parker) lookupLocked(tok uint64) Waker {
	i := uint32(tok) - 1
	if uint32(tok) == 0 || int(i) >= len(p.slots) {
		return nil
	}
	if sl := &p.slots[i]; sl.gen == uint32(tok>>32) {
		return sl.w
	}
	return nil
}

// removeLocked frees tok's slot, if tok is still registered.
func (p *Parker) removeLocked(tok uint64) bool {
	if p.lookupLocked(tok) == nil {
		return false
	}
	i := uint32(tok) - 1
	sl := &p.slots[i]
	sl.w = nil
	sl.gen++
	sl.next = p.free
	p.free = i + 1
	p.parked--
	return true
}

// Forget drops the registration tok of s, if it still has it: the caller
// resumed its Waker. The registration is one-shot and has fired, or the
// socket is about to be closed (which removes it from the set); a resume
// for any other reason deletes it here, so that a later event cannot find
// the Waker. A token of 0 (none yet) only takes s out of the set.
func (p *Parker) Forget(s Pollable, tok uint64) {
	p.mu.Lock()
	p.removeLocked(tok)
	p.mu.Unlock()
	if rs, isRaw := s.(*rawSock); isRaw {
		_ = rs.raw.Control(func(fd uintptr) {
			_ = p.ctl(syscall.EPOLL_CTL_DEL, fd, nil)
		})
	}
}

// Parked returns every parked Waker.
func (p *Parker) Parked() []Waker {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Waker, 0, p.parked)
	for i := range p.slots {
		if w := p.slots[i].w; w != nil {
			out = append(out, w)
		}
	}
	return out
}

// Wait wakes parked Wakers as their sockets become readable, until Stop.
func (p *Parker) Wait() {
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
					w := p.lookupLocked(tok)
					p.mu.Unlock()
					if w != nil {
						w.Wake()
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

// Stop makes Wait return and refuses further parking.
func (p *Parker) Stop() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	one := [8]byte{1}
	_, _ = syscall.Write(p.wakefd, one[:])
}

// Close releases the epoll set; call it after Wait has returned.
func (p *Parker) Close() {
	syscall.Close(p.wakefd)
	_ = p.ep.Close()
}
