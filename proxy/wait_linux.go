package proxy

import (
	"syscall"
	"unsafe"
)

// peekReadable is the RawConn.Read callback of waitReadable: it reports
// done when the socket has a byte, EOF or an error pending, and not done
// (so the poller waits) when a read would block. MSG_PEEK leaves the byte
// for the real read.
func (c *copier) peekReadable(fd uintptr) bool {
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(&c.peek[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}
