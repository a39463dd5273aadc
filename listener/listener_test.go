package listener

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// open opens specs with nothing inherited, failing the test on error, and
// closes the set when the test ends.
func open(t *testing.T, specs ...Spec) *Set {
	t.Helper()
	s, err := Open(context.Background(), specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// accepted dials addr n times and counts the connections each listener
// accepted within a second of the last dial.
func accepted(t *testing.T, addr string, n int, lns ...net.Listener) []int {
	t.Helper()
	counts := make([]int, len(lns))
	done := make(chan int, n)
	for i, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				done <- i
			}
		}()
	}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case i := <-done:
			counts[i]++
		case <-timeout:
			t.Fatalf("accepted %v of %d connections", counts, n)
		}
	}
	return counts
}

// Two listeners on one port with reuse_port both get connections.
func TestReusePortShares(t *testing.T) {
	if !ReusePortSupported {
		t.Skip("no SO_REUSEPORT here")
	}
	a := open(t, Spec{Name: TLS, Address: "127.0.0.1:0", ReusePort: true}).Get(TLS)
	addr := a.Addr().String()
	b := open(t, Spec{Name: TLS, Address: addr, ReusePort: true}).Get(TLS)
	if b.Addr().String() != addr {
		t.Fatalf("second listener on %s, want %s", b.Addr(), addr)
	}
	// The kernel spreads connections by a hash of their addresses: with 64
	// source ports, one listener getting none has odds of 2^-63.
	counts := accepted(t, addr, 64, a, b)
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("connections accepted per listener = %v; want both to accept", counts)
	}
}

// Without reuse_port the second bind fails, saying what to do.
func TestNoReusePortSecondBindFails(t *testing.T) {
	tests := []struct {
		desc         string
		first, again Spec
		want         []string
	}{
		{
			desc:  "neither",
			first: Spec{Name: TLS, Address: "127.0.0.1:0"},
			again: Spec{Name: TLS},
			want:  []string{"tls listener: listen tcp", "address already in use", "share a port only with reuse_port: true"},
		},
		{
			desc:  "only the second",
			first: Spec{Name: HTTP, Address: "127.0.0.1:0"},
			again: Spec{Name: HTTP, ReusePort: true},
			want:  []string{"http listener: listen tcp", "address already in use", "without SO_REUSEPORT; every process sharing the port must set it"},
		},
		{
			desc:  "admin",
			first: Spec{Name: Admin, Address: "127.0.0.1:0"},
			again: Spec{Name: Admin},
			want:  []string{"admin listener: listen tcp", "address already in use", "wsgate run -admin ADDR"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.again.ReusePort && !ReusePortSupported {
				t.Skip("no SO_REUSEPORT here")
			}
			tc.again.Address = open(t, tc.first).Get(tc.first.Name).Addr().String()
			s, err := Open(context.Background(), []Spec{tc.again}, nil)
			if err == nil {
				s.Close()
				t.Fatalf("second Open(%+v) succeeded; want an error", tc.again)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %v does not wrap EADDRINUSE", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestOpenReusePortUnsupported(t *testing.T) {
	if ReusePortSupported {
		t.Skip("SO_REUSEPORT is supported here")
	}
	_, err := Open(context.Background(), []Spec{{Name: TLS, Address: "127.0.0.1:0", ReusePort: true}}, nil)
	if !errors.Is(err, ErrReusePortUnsupported) {
		t.Errorf("Open with ReusePort = %v, want ErrReusePortUnsupported", err)
	}
}

// handedOver returns inherited sockets as a parent's hand-over would give
// them, from new listeners for specs, which are closed: the sockets live
// on only in the returned files.
func handedOver(t *testing.T, specs ...Spec) (*Inherited, []string) {
	t.Helper()
	s := open(t, specs...)
	files, _, err := s.Handover()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	in := &Inherited{from: FromHandover, files: make(map[string]*os.File)}
	var addrs []string
	for i, l := range s.All() {
		in.files[l.Name] = files[i]
		addrs = append(addrs, l.Addr().String())
	}
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	return in, addrs
}

func TestOpenAdoptsInherited(t *testing.T) {
	in, addrs := handedOver(t, Spec{Name: TLS, Address: "127.0.0.1:0"}, Spec{Name: Admin, Address: "127.0.0.1:0"})
	s, err := Open(context.Background(), []Spec{
		{Name: Admin, Address: "127.0.0.1:0"}, // port 0: any port
		{Name: TLS, Address: addrs[0]},
		{Name: HTTP, Address: "127.0.0.1:0"}, // not inherited: opened
	}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct{ name, addr, from string }{
		{TLS, addrs[0], FromHandover},
		{Admin, addrs[1], FromHandover},
		{HTTP, "", ""},
	} {
		var l Listener
		for _, x := range s.All() {
			if x.Name == tc.name {
				l = x
			}
		}
		if l.Listener == nil {
			t.Fatalf("no %s listener", tc.name)
		}
		if l.From != tc.from {
			t.Errorf("%s listener From = %q, want %q", tc.name, l.From, tc.from)
		}
		if tc.addr != "" && l.Addr().String() != tc.addr {
			t.Errorf("%s listener on %s, want %s", tc.name, l.Addr(), tc.addr)
		}
		if got := accepted(t, l.Addr().String(), 1, l); got[0] != 1 {
			t.Errorf("%s listener accepted %d connections, want 1", tc.name, got[0])
		}
	}
}

// An inherited socket on another address than the configured one is an
// error that names both, and nothing stays open.
func TestOpenInheritedAddressMismatch(t *testing.T) {
	in, addrs := handedOver(t, Spec{Name: TLS, Address: "127.0.0.1:0"})
	other := open(t, Spec{Name: TLS, Address: "127.0.0.1:0"}).Get(TLS).Addr().String()
	_, err := Open(context.Background(), []Spec{{Name: TLS, Address: other}}, in)
	if err == nil {
		t.Fatal("Open succeeded; want an address mismatch error")
	}
	for _, w := range []string{"tls listener inherited from the parent wsgate process", "bound to " + addrs[0], "configured address is " + other} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	// The socket was closed: nothing accepts on its address any more.
	if c, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after the failed Open", addrs[0])
	}
}

func TestOpenInheritedUnconfigured(t *testing.T) {
	in, addrs := handedOver(t, Spec{Name: HTTP, Address: "127.0.0.1:0"})
	_, err := Open(context.Background(), []Spec{{Name: TLS, Address: "127.0.0.1:0"}}, in)
	want := "inherited http from the parent wsgate process, which the configuration does not have (it has tls)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open = %v; want an error saying %q", err, want)
	}
	if c, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after the failed Open", addrs[0])
	}
}

func TestOpenInheritedWithoutReusePort(t *testing.T) {
	if !ReusePortSupported {
		t.Skip("no SO_REUSEPORT here")
	}
	in, addrs := handedOver(t, Spec{Name: TLS, Address: "127.0.0.1:0"})
	_, err := Open(context.Background(), []Spec{{Name: TLS, Address: addrs[0], ReusePort: true}}, in)
	if err == nil || !strings.Contains(err.Error(), "opened without SO_REUSEPORT") {
		t.Fatalf("Open = %v; want an error saying the socket lacks SO_REUSEPORT", err)
	}

	in, addrs = handedOver(t, Spec{Name: TLS, Address: "127.0.0.1:0", ReusePort: true})
	s, err := Open(context.Background(), []Spec{{Name: TLS, Address: addrs[0], ReusePort: true}}, in)
	if err != nil {
		t.Fatalf("adopting a socket with SO_REUSEPORT: %v", err)
	}
	s.Close()
}

func TestCheckAddr(t *testing.T) {
	tcp := func(s string) *net.TCPAddr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		want, got string
		ok        bool
	}{
		{"127.0.0.1:8443", "127.0.0.1:8443", true},
		{"127.0.0.1:0", "127.0.0.1:40000", true},
		{":8443", "[::]:8443", true},
		{":8443", "0.0.0.0:8443", true},
		{"0.0.0.0:8443", "[::]:8443", true},
		{"[::]:8443", "0.0.0.0:8443", true},
		{"localhost:8443", "127.0.0.1:8443", true},
		{"[::ffff:127.0.0.1]:8443", "127.0.0.1:8443", true},
		{"127.0.0.1:8443", "127.0.0.1:8444", false},
		{"127.0.0.1:8443", "127.0.0.2:8443", false},
		{":8443", "127.0.0.1:8443", false},
		{"127.0.0.1:8443", "0.0.0.0:8443", false},
		{"localhost:8443", "192.0.2.1:8443", false},
		{"127.0.0.1", "127.0.0.1:8443", false},
	}
	for _, tc := range tests {
		err := checkAddr(context.Background(), tc.want, tcp(tc.got))
		if (err == nil) != tc.ok {
			t.Errorf("checkAddr(%q, %s) = %v, want ok %v", tc.want, tc.got, err, tc.ok)
		}
	}
}

func TestParseEnv(t *testing.T) {
	const pid = 4242
	tests := []struct {
		desc     string
		env      map[string]string
		want     map[string]int
		wantFrom string
		wantErr  string
	}{
		{desc: "nothing"},
		{
			desc:     "hand-over",
			env:      map[string]string{EnvHandover: "tls=3,admin=4,http=5"},
			want:     map[string]int{TLS: 3, Admin: 4, HTTP: 5},
			wantFrom: FromHandover,
		},
		{
			desc:     "systemd",
			env:      map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "admin:tls"},
			want:     map[string]int{Admin: 3, TLS: 4},
			wantFrom: FromSystemd,
		},
		{
			desc: "systemd for another process",
			env:  map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "admin:tls"},
		},
		{
			desc:     "systemd with no sockets",
			env:      map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "0"},
			wantFrom: FromSystemd,
		},
		{
			desc:    "systemd without names",
			env:     map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "1"},
			wantErr: "without names (LISTEN_FDNAMES); name each after its listener with FileDescriptorName=tls, admin or http",
		},
		{
			desc:    "systemd names and count disagree",
			env:     map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "tls"},
			wantErr: `LISTEN_FDS=2 but LISTEN_FDNAMES="tls" has 1 names`,
		},
		{
			desc:    "systemd name twice",
			env:     map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "tls:tls"},
			wantErr: "names tls twice",
		},
		{
			desc:    "systemd bad count",
			env:     map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "x"},
			wantErr: `LISTEN_FDS="x" is not a number`,
		},
		{
			desc:    "both",
			env:     map[string]string{EnvHandover: "tls=3", "LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "tls"},
			wantErr: "both WSGATE_LISTENERS and systemd's LISTEN_FDS are set",
		},
		{desc: "hand-over stdin", env: map[string]string{EnvHandover: "tls=0"}, wantErr: `"tls=0" is not NAME=FD with FD 3 or more`},
		{desc: "hand-over no fd", env: map[string]string{EnvHandover: "tls"}, wantErr: `"tls" is not NAME=FD`},
		{desc: "hand-over no name", env: map[string]string{EnvHandover: "=3"}, wantErr: `"=3" is not NAME=FD`},
		{desc: "hand-over name twice", env: map[string]string{EnvHandover: "tls=3,tls=4"}, wantErr: "names tls twice"},
		{desc: "hand-over fd twice", env: map[string]string{EnvHandover: "tls=3,admin=3"}, wantErr: "gives fd 3 two names"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, from, err := parseEnv(func(k string) string { return tc.env[k] }, pid)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseEnv = %v, %q, %v; want an error saying %q", got, from, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) || from != tc.wantFrom {
				t.Fatalf("parseEnv = %v, %q; want %v, %q", got, from, tc.want, tc.wantFrom)
			}
			for name, fd := range tc.want {
				if got[name] != fd {
					t.Errorf("parseEnv: %s = fd %d, want %d", name, got[name], fd)
				}
			}
		})
	}
}

// TestMain runs the test binary as a child process when asked to (see
// runChild): the listeners it adopts are inherited the real way, across
// exec.
func TestMain(m *testing.M) {
	if specs := os.Getenv(envChild); specs != "" {
		os.Exit(runChild(specs))
	}
	os.Exit(m.Run())
}

// envChild, in a child's environment, lists the specs it opens: NAME=ADDR
// pairs separated by commas.
const envChild = "LISTENER_TEST_CHILD"

// runChild is the child process: it inherits its sockets, opens the specs
// in spec, prints "ready", then answers one connection on each listener
// with "NAME PID FROM" and exits.
func runChild(spec string) int {
	in, err := Inherit()
	if err != nil {
		return childFail(err)
	}
	for _, k := range []string{EnvHandover, envListenPID, envListenFDs, envListenFDNames} {
		if v, ok := os.LookupEnv(k); ok {
			return childFail(errors.New("Inherit left " + k + "=" + v + " in the environment"))
		}
	}
	var specs []Spec
	for pair := range strings.SplitSeq(spec, ",") {
		name, addr, _ := strings.Cut(pair, "=")
		specs = append(specs, Spec{Name: name, Address: addr})
	}
	s, err := Open(context.Background(), specs, in)
	if err != nil {
		return childFail(err)
	}
	defer s.Close()
	os.Stdout.WriteString("ready\n")
	for _, l := range s.All() {
		_ = l.Listener.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
		c, err := l.Accept()
		if err != nil {
			return childFail(err)
		}
		_, _ = c.Write([]byte(l.Name + " " + strconv.Itoa(os.Getpid()) + " " + l.From + "\n"))
		c.Close()
	}
	return 0
}

func childFail(err error) int {
	os.Stderr.WriteString("child: " + err.Error() + "\n")
	return 1
}
