//go:build !linux && !darwin && !freebsd

package listener

import "net"

// ReusePortSupported reports whether Spec.ReusePort can be honoured on this
// platform.
const ReusePortSupported = false

// listenConfig returns the configuration of a new listener: keep-alive on
// each accepted connection. reusePort is never set here (Open refuses it).
func listenConfig(bool) *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: KeepAlive}
}

// reusesPort: no listener can have SO_REUSEPORT here.
func reusesPort(*net.TCPListener) (bool, error) {
	return false, ErrReusePortUnsupported
}
