package listener

import "golang.org/x/sys/unix"

// reusePortOption shares a port between sockets and spreads new
// connections over them (FreeBSD's SO_REUSEPORT alone does not).
const reusePortOption = unix.SO_REUSEPORT_LB

// acceptKeepAlive: the net package sets keep-alive on each accepted
// connection.
const acceptKeepAlive = KeepAlive

// listenerOptions: none beyond SO_REUSEPORT_LB.
func listenerOptions() []sockopt { return nil }
