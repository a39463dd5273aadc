package listener

import (
	"net"
	"syscall"
	"testing"
)

// A new listener defers accepting a connection until its first bytes are
// here: a client that connected first but says nothing is accepted after
// one that connected later and spoke.
func TestListenDefersAccept(t *testing.T) {
	ln := open(t, Spec{Name: TLS, Address: "127.0.0.1:0"}).Get(TLS)
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		v    int
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := int(DeferAccept.Seconds()); v != want {
		t.Errorf("TCP_DEFER_ACCEPT = %d, want %d", v, want)
	}

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	talker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer talker.Close()
	if _, err := talker.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := c.RemoteAddr().String(), talker.LocalAddr().String(); got != want {
		t.Errorf("accepted %s first, want the client that spoke (%s), not the silent one (%s)", got, want, silent.LocalAddr())
	}
}
