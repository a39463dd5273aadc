package main

import (
	"strings"
	"syscall"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (missing from package
// syscall on most architectures).
const ipBindAddressNoPort = 0x18

// bindNoPort asks Linux to choose the local port at connect time rather
// than at bind time, so that a port is only taken per (source, destination)
// pair rather than per source address. It is the dialer's Control function
// when connections are spread over source addresses.
func bindNoPort(network, address string, c syscall.RawConn) error {
	if !strings.HasPrefix(network, "tcp4") {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
