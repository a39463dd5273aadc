//go:build !linux

package main

import "syscall"

// bindNoPort does nothing outside Linux, the only system with
// IP_BIND_ADDRESS_NO_PORT: there a port is taken when the socket is bound
// to its source address, whatever the destination.
func bindNoPort(network, address string, c syscall.RawConn) error {
	return nil
}
