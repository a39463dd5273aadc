package listener

import "golang.org/x/sys/unix"

// reusePortOption shares a port between sockets; Linux spreads new
// connections over them by a hash of the connection's addresses.
const reusePortOption = unix.SO_REUSEPORT

// acceptKeepAlive -1: the net package sets no keep-alive on accepted
// connections, which inherit it from the listening socket (see KeepAlive).
const acceptKeepAlive = -1

// listenerOptions are set on every new listening socket: keep-alive, for
// accepted connections to inherit, and TCP_DEFER_ACCEPT (see DeferAccept).
func listenerOptions() []sockopt {
	return []sockopt{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(KeepAlive.Seconds())},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(KeepAlive.Seconds())},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveProbes},
		{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, int(DeferAccept.Seconds())},
	}
}
