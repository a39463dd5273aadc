//go:build linux && !wsgate_portable

package sockio

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"
)

// DialControl is the backend dialer's ControlContext (nil where it has
// nothing to do). On loopback connect(2) runs the whole three-way
// handshake before it returns (about 60 µs here), long enough for sysmon
// to take the P from a goroutine in the net package's connect (see
// sysRead). So it starts the connect itself with a raw system call on the
// non-blocking socket; the net package's own connect then finds the
// socket connected (EISCONN, which it treats as success) or still
// connecting (EALREADY, and it waits for it as usual). Addresses it does
// not handle are left to the net package.
var DialControl = rawConnect

func rawConnect(_ context.Context, network, address string, c syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
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
