package listener

import "golang.org/x/sys/unix"

// reusePortOption shares a port between sockets. macOS does not spread
// new connections over them; each goes to one of the sockets.
const reusePortOption = unix.SO_REUSEPORT

// acceptKeepAlive: the net package sets keep-alive on each accepted
// connection.
const acceptKeepAlive = KeepAlive

// listenerOptions: none beyond SO_REUSEPORT.
func listenerOptions() []sockopt { return nil }
