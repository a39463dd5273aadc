package proxy

import (
	"net"
	"os"
	"syscall"
)

// listenConfig sets keep-alive on the listening socket, for its accepted
// connections to inherit, and none per connection (see Listen).
func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{
		KeepAlive: -1,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				s := int(fd)
				secs := int(KeepAlive.Seconds())
				for _, o := range [...]struct{ level, opt, v int }{
					{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveProbes},
				} {
					if serr = syscall.SetsockoptInt(s, o.level, o.opt, o.v); serr != nil {
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
