package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The names of wsgate's listeners: in a Spec, in LISTEN_FDNAMES
// (FileDescriptorName= in a systemd socket unit) and in WSGATE_LISTENERS.
const (
	TLS   = "tls"   // the proxy's TLS listener (listen)
	Admin = "admin" // the admin listener (admin.listen)
	HTTP  = "http"  // the plain-HTTP listener (tls.http_listen)
)

// KeepAlive is the TCP keep-alive of connections accepted by a listener of
// this package: the first probe after KeepAlive of silence, then one every
// KeepAlive, and the connection is dropped after 9 unanswered probes. These
// are the net package's defaults for accepted connections.
//
// On Linux a new listener sets them once on the listening socket: Linux
// copies a listening socket's options to the connections it accepts, so
// each accepted connection saves the four setsockopt(2) calls
// (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) the net package
// would make, a tenth of the system calls of a short-lived connection.
// Elsewhere, and on inherited listeners, the net package sets them on each
// accepted connection.
const KeepAlive = 15 * time.Second

// keepAliveProbes is TCP_KEEPCNT; see KeepAlive.
const keepAliveProbes = 9

// DeferAccept is TCP_DEFER_ACCEPT on the listening sockets Open opens on
// Linux: the kernel completes a client's TCP handshake as usual, but
// accept(2) returns the connection only once its first bytes have arrived
// (every protocol wsgate serves, TLS, HTTP and the PROXY protocol, has the
// client speak first). So the first read of a new connection finds its
// ClientHello instead of failing with EAGAIN, and the process wakes once
// per new connection instead of twice. A client that connects and sends
// nothing is accepted all the same after DeferAccept (when the kernel
// resends its SYN-ACK and the client acknowledges it again), and the
// listener's own timeouts (limits.tls_handshake_timeout) apply from then
// on. Inherited sockets are left as they are (systemd: DeferAcceptSec=).
const DeferAccept = time.Second

// ErrReusePortUnsupported is returned by Open for a Spec with ReusePort on
// a platform without SO_REUSEPORT (ReusePortSupported is false).
var ErrReusePortUnsupported = errors.New("listener: SO_REUSEPORT is not supported on " + runtime.GOOS)

// Spec is one listener to open.
type Spec struct {
	// Name is TLS, Admin or HTTP: the name an inherited socket must carry
	// to be adopted for this listener.
	Name string
	// Address is the configured host:port. An empty host means every
	// address; port 0 means any free port.
	Address string
	// ReusePort opens the socket with SO_REUSEPORT, so that several
	// processes can listen on the same address and the kernel spreads new
	// connections over them. Every process on the address must set it.
	ReusePort bool
}

// Listener is one listener of a Set.
type Listener struct {
	net.Listener
	Name string
	// From says where the socket came from: "" when Open opened it, else
	// FromSystemd or FromHandover.
	From string
}

// Set is the listeners of a process, in the order of their Specs. The Set
// owns them: Close closes every one that is still open.
type Set struct {
	lns []Listener
}

// Get returns the listener named name, or nil when the Set has none.
func (s *Set) Get(name string) net.Listener {
	for _, l := range s.lns {
		if l.Name == name {
			return l.Listener
		}
	}
	return nil
}

// All returns the listeners in the order of their Specs.
func (s *Set) All() []Listener {
	return slices.Clone(s.lns)
}

// Close closes every listener of s; closing one that was already closed
// (by http.Server.Shutdown, say) is not an error.
func (s *Set) Close() error {
	var errs []error
	for _, l := range s.lns {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Open returns a listener for every spec: the socket of the same name in
// inherited when there is one (nil means none), else a new one. An
// inherited socket must be a TCP listener on the spec's address (see
// Spec.Address; a host name there matches any address it resolves to), and
// with ReusePort it must have SO_REUSEPORT set. Every inherited socket must
// be adopted: one that matches no spec is an error, because its name or the
// configuration is wrong. On error nothing stays open, inherited sockets
// included.
func Open(ctx context.Context, specs []Spec, inherited *Inherited) (*Set, error) {
	files, from := inherited.take()
	s := &Set{}
	fail := func(err error) (*Set, error) {
		s.Close()
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	for i, sp := range specs {
		if slices.ContainsFunc(specs[:i], func(o Spec) bool { return o.Name == sp.Name }) {
			return fail(fmt.Errorf("listener: two specs named %q", sp.Name))
		}
		var (
			l   Listener
			err error
		)
		if f, ok := files[sp.Name]; ok {
			delete(files, sp.Name)
			l, err = adopt(ctx, sp, f, from)
		} else {
			l, err = listen(ctx, sp)
		}
		if err != nil {
			return fail(err)
		}
		s.lns = append(s.lns, l)
	}
	if len(files) > 0 {
		names := make([]string, 0, len(files))
		for name := range files {
			names = append(names, name)
		}
		slices.Sort(names)
		want := make([]string, len(specs))
		for i, sp := range specs {
			want[i] = sp.Name
		}
		return fail(fmt.Errorf("listener: inherited %s from %s, which the configuration does not have (it has %s); name each socket after its listener, or configure the listener",
			strings.Join(names, ", "), from, strings.Join(want, ", ")))
	}
	return s, nil
}

// listen opens a new listener for sp.
func listen(ctx context.Context, sp Spec) (Listener, error) {
	if sp.ReusePort && !ReusePortSupported {
		return Listener{}, fmt.Errorf("%s listener on %s: %w", sp.Name, sp.Address, ErrReusePortUnsupported)
	}
	ln, err := listenConfig(sp.ReusePort).Listen(ctx, "tcp", sp.Address)
	if err != nil {
		err = fmt.Errorf("%s listener: %w", sp.Name, err)
		if errors.Is(err, syscall.EADDRINUSE) {
			err = addrInUse(sp, err)
		}
		return Listener{}, err
	}
	return Listener{Listener: ln, Name: sp.Name}, nil
}

// addrInUse says what to do about a bind that failed because the address
// is taken.
func addrInUse(sp Spec, err error) error {
	switch {
	case sp.Name == Admin:
		return fmt.Errorf("%w (another process holds it; give each wsgate process its own admin address, as with wsgate run -admin ADDR)", err)
	case sp.ReusePort:
		return fmt.Errorf("%w (another process holds it without SO_REUSEPORT; every process sharing the port must set it)", err)
	default:
		return fmt.Errorf("%w (another process holds it; wsgate processes share a port only with reuse_port: true in each)", err)
	}
}

// adopt turns the inherited socket f into sp's listener, checking it, and
// closes f (the listener holds a duplicate).
func adopt(ctx context.Context, sp Spec, f *os.File, from string) (Listener, error) {
	defer f.Close()
	fail := func(format string, args ...any) (Listener, error) {
		return Listener{}, fmt.Errorf("%s listener inherited from %s (%s): %s", sp.Name, from, f.Name(), fmt.Sprintf(format, args...))
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return fail("%v", unwrapOp(err))
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return fail("a %s socket, not a TCP listener", ln.Addr().Network())
	}
	if err := checkAddr(ctx, sp.Address, tl.Addr().(*net.TCPAddr)); err != nil {
		tl.Close()
		return fail("%v; make the socket and the configuration agree", err)
	}
	if sp.ReusePort {
		on, err := reusesPort(tl)
		if err == nil && !on {
			err = errors.New("it was opened without SO_REUSEPORT, which reuse_port: true asks for (ReusePort=yes in a systemd socket unit)")
		}
		if err != nil {
			tl.Close()
			return fail("%v", err)
		}
	}
	return Listener{Listener: tl, Name: sp.Name, From: from}, nil
}

// checkAddr reports whether a socket bound to got may serve the configured
// address want. An empty or unspecified host in want matches any
// unspecified address (0.0.0.0 and [::] alike), a host name matches every
// address it resolves to, and port 0 matches any port.
func checkAddr(ctx context.Context, want string, got *net.TCPAddr) error {
	host, portStr, err := net.SplitHostPort(want)
	if err != nil {
		return fmt.Errorf("configured address %q: %w", want, err)
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil {
		return fmt.Errorf("configured address %q: %w", want, err)
	}
	mismatch := fmt.Errorf("it is bound to %s, but the configured address is %s", got, want)
	if port != 0 && port != got.Port {
		return mismatch
	}
	gotIP := got.AddrPort().Addr().Unmap()
	if ip, err := netip.ParseAddr(host); host == "" || err == nil {
		if gotIP.IsUnspecified() && (host == "" || ip.IsUnspecified()) || ip.Unmap() == gotIP {
			return nil
		}
		return mismatch
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("configured address %q: %w", want, err)
	}
	for _, ip := range ips {
		if ip.Unmap() == gotIP {
			return nil
		}
	}
	return mismatch
}

// unwrapOp drops the "file+net" operation wrapper of net.FileListener's
// errors, which says nothing to a reader.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}
