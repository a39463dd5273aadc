package listener

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// sockopts reads the keep-alive options of c's socket.
func sockopts(t *testing.T, c net.Conn) map[string]int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	var gerr error
	err = raw.Control(func(fd uintptr) {
		for name, o := range map[string][2]int{
			"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
			"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
			"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
			"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
			"TCP_NODELAY":   {syscall.IPPROTO_TCP, syscall.TCP_NODELAY},
		} {
			v, err := syscall.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				gerr = err
			}
			got[name] = v
		}
	})
	if err == nil {
		err = gerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// acceptOne dials ln and returns the accepted connection.
func acceptOne(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	// A byte, as a client speaks first: a deferred accept (DeferAccept)
	// returns at once.
	if _, err := cc.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// Accepted connections get their keep-alive from the listening socket,
// with no setsockopt of their own.
func TestListenKeepAliveIsInherited(t *testing.T) {
	for _, reusePort := range []bool{false, true} {
		ln := open(t, Spec{Name: TLS, Address: "127.0.0.1:0", ReusePort: reusePort}).Get(TLS)
		got := sockopts(t, acceptOne(t, ln))
		secs := int(KeepAlive.Seconds())
		want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": secs, "TCP_KEEPINTVL": secs, "TCP_KEEPCNT": keepAliveProbes, "TCP_NODELAY": 1}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("accepted connection (reuse_port %v): %s = %d, want %d", reusePort, k, got[k], v)
			}
		}
	}

	// The same listener without its Control: no keep-alive at all. This
	// is what the test above would see if the options were not inherited.
	plain, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := sockopts(t, acceptOne(t, plain)); got["SO_KEEPALIVE"] != 0 {
		t.Errorf("without keep-alive on the listener: SO_KEEPALIVE = %d, want 0", got["SO_KEEPALIVE"])
	}
}
