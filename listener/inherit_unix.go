//go:build unix

package listener

import (
	"os"
	"strconv"
	"syscall"
)

// inheritFD returns the inherited descriptor fd as a file named after
// it, marked close-on-exec so that only a deliberate hand-over passes it
// on.
func inheritFD(fd int) (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "fd "+strconv.Itoa(fd)), nil
}
