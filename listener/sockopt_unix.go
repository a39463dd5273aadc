//go:build linux || darwin || freebsd

package listener

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReusePortSupported reports whether Spec.ReusePort can be honoured on this
// platform.
const ReusePortSupported = true

// sockopt is one integer socket option.
type sockopt struct{ level, opt, value int }

// listenConfig returns the configuration of a new listener: the
// platform's listening-socket options (listenerOptions), plus
// reusePortOption when reusePort is set, all set before bind(2).
func listenConfig(reusePort bool) *net.ListenConfig {
	opts := listenerOptions()
	if reusePort {
		opts = append(opts, sockopt{unix.SOL_SOCKET, reusePortOption, 1})
	}
	return &net.ListenConfig{
		KeepAlive: acceptKeepAlive,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				for _, o := range opts {
					if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); serr != nil {
						serr = os.NewSyscallError("setsockopt", serr)
						return
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// reusesPort reports whether the listening socket of tl has
// reusePortOption set.
func reusesPort(tl *net.TCPListener) (bool, error) {
	raw, err := tl.SyscallConn()
	if err != nil {
		return false, err
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, reusePortOption)
	}); err != nil {
		return false, err
	}
	if gerr != nil {
		return false, os.NewSyscallError("getsockopt", gerr)
	}
	return v != 0, nil
}
