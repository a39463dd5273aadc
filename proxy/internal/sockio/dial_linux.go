//go:build linux && !wsgate_portable

package sockio

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Dialer returns the backend dialer: connections time out after timeout
// and get TCP keep-alive with keepAlive of silence before the first probe,
// then a probe every 15 s, 9 at most (the net package's defaults for the
// rest).
//
// Both happen here with raw system calls on the new socket, before
// connect(2) (see sysRead): the net package would set the four keep-alive
// options after connecting, each with a system call through the scheduler,
// which sysmon takes the P from when it outlasts its tick (it did, in the
// execution traces of the connrate scenario). On loopback connect(2) runs
// the whole three-way handshake before it returns (about 60 µs here), so
// it is started raw too (rawConnect); the net package's own connect then
// finds the socket connected (EISCONN, which it treats as success) or
// still connecting (EALREADY, and it waits for it as usual). Addresses it
// does not handle are left to the net package.
func Dialer(timeout, keepAlive time.Duration) net.Dialer {
	opts := [...][3]int{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAlive / time.Second)},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
	}
	return net.Dialer{
		Timeout:   timeout,
		KeepAlive: -1, // set here, below
		ControlContext: func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if network != "tcp4" && network != "tcp6" {
				return nil
			}
			var errno syscall.Errno
			if err := c.Control(func(fd uintptr) {
				for _, o := range opts {
					v := int32(o[2])
					if _, _, errno = syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, uintptr(o[0]), uintptr(o[1]), uintptr(unsafe.Pointer(&v)), 4, 0); errno != 0 {
						return
					}
				}
			}); err != nil {
				return err
			}
			if errno != 0 {
				return os.NewSyscallError("setsockopt", errno)
			}
			return rawConnect(ctx, network, address, c)
		},
	}
}

// The keep-alive probes of backend connections after the first (see
// Dialer): the net package's defaults.
const (
	keepAliveInterval = 15 // seconds
	keepAliveCount    = 9
)

func rawConnect(_ context.Context, network, address string, c syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return nil //nolint:nilerr // not for the raw connect: the net package's own connect goes on
	}
	var errno syscall.Errno
	if err := c.Control(func(fd uintptr) { errno = connectRaw(fd, network, ap) }); err != nil {
		return err
	}
	switch errno {
	case 0, syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
		return nil
	}
	return os.NewSyscallError("connect", errno)
}

// connectRaw is connect(2) to ap as a raw system call, for a socket of
// network's family.
func connectRaw(fd uintptr, network string, ap netip.AddrPort) syscall.Errno {
	var (
		ptr  unsafe.Pointer
		size uintptr
		sa4  syscall.RawSockaddrInet4
		sa6  syscall.RawSockaddrInet6
	)
	port := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	if network == "tcp4" {
		if !ap.Addr().Unmap().Is4() {
			return syscall.EAFNOSUPPORT
		}
		sa4.Family = syscall.AF_INET
		sa4.Addr = ap.Addr().Unmap().As4()
		ptr, size = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = syscall.AF_INET6
		sa6.Addr = ap.Addr().As16()
		port = (*[2]byte)(unsafe.Pointer(&sa6.Port))
		ptr, size = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port()) // network byte order
	for {
		_, _, errno := syscall.RawSyscall(syscall.SYS_CONNECT, fd, uintptr(ptr), size)
		if errno != syscall.EINTR {
			return errno
		}
	}
}

// HandshakeIO returns what to send c's upgrade request and read its answer
// through: raw system calls, as in the tunnel (a write runs the backend's
// receive path, long enough for sysmon to take the P), with the request
// written from inside the read that waits for the answer (see
// sendThenRead); or c itself.
func HandshakeIO(c net.Conn) Handshake {
	if s := newRawSock(c); s != nil {
		return &rawHandshake{s: s}
	}
	return &connHandshake{c: c}
}

// rawHandshake is Handshake over a rawSock: Send keeps the request for the
// first Read to write.
type rawHandshake struct {
	s   *rawSock
	req []byte
}

func (h *rawHandshake) Send(p []byte) error {
	h.req = p
	return nil
}

func (h *rawHandshake) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if req := h.req; len(req) > 0 {
		h.req = nil
		return h.s.exchange(req, p)
	}
	return h.s.Read(p)
}
