package proxy

import (
	"context"
	"net"
	"time"
)

// KeepAlive is the TCP keep-alive of client connections accepted by a
// listener from Listen: the first probe after KeepAlive of silence, then
// one every KeepAlive, and the connection is dropped after 9 unanswered
// probes. These are the net package's defaults for accepted connections.
const KeepAlive = 15 * time.Second

// keepAliveProbes is TCP_KEEPCNT; see KeepAlive.
const keepAliveProbes = 9

// Listen announces on the local TCP address for the proxy's clients, like
// net.Listen, with one difference in cost: TCP keep-alive is configured
// once, on the listening socket, instead of on every accepted connection.
// Linux copies a listening socket's options to the connections it accepts,
// so each accepted connection saves the four setsockopt(2) calls
// (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) the net package
// would make, a tenth of the system calls of a short-lived connection.
// Elsewhere Listen is net.Listen with KeepAlive.
func Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return listenConfig().Listen(ctx, network, address)
}
