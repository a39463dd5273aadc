//go:build linux

package sockio

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// Backend connections get the same keep-alive and TCP_NODELAY whether the
// options are set raw before connect(2) (the fast path) or by the net
// package after it (wsgate_portable).
func TestDialerKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	d := Dialer(5*time.Second, 30*time.Second)
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]int{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
		"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
	}
	if err := raw.Control(func(fd uintptr) {
		for name, o := range want {
			v, err := syscall.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil || v != o[2] {
				t.Errorf("%s = %d (%v), want %d", name, v, err, o[2])
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
}
