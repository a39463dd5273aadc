package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/wsgate/wsgate/proxy/internal/proxyproto"
)

// The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that
// passes connections on at the TCP level puts a header before each
// connection's own bytes that says whose connection it is, so that wsgate
// sees the client's address rather than the load balancer's.

// The refusal reasons of ProxyProtocol (the `reason` label of
// wsgate_limited_total).
const (
	// RefusedProxyHeader: a connection from a trusted address
	// (proxy_protocol.trusted_cidrs) did not begin with a valid PROXY
	// protocol header: none, or a malformed one. Closed before TLS. A
	// connection that closed or timed out before its header was complete
	// counts as a failed handshake instead (HandshakeClosed,
	// HandshakeTimeout), as it would without PROXY protocol.
	RefusedProxyHeader RefusalReason = "proxy_protocol"
	// RefusedProxyUntrusted: a connection from any other address began
	// with a PROXY protocol header, which only trusted load balancers may
	// send. Closed before TLS.
	RefusedProxyUntrusted RefusalReason = "proxy_protocol_untrusted"
)

// errUntrustedHeader is the error of a RefusedProxyUntrusted refusal.
var errUntrustedHeader = errors.New("proxy: a PROXY protocol header from an untrusted address")

// ProxyProtocol returns the accept layer for load balancers at the
// addresses in trusted: a connection from one of them must begin with a
// PROXY protocol header, version 1 or 2, whose source address becomes the
// client's address (SetRemoteAddr: what X-Forwarded-For, limits and logs
// use); a LOCAL (v2) or UNKNOWN (v1) header, or one for another kind of
// connection than TCP, keeps the load balancer's own address. A
// connection from a trusted address without a valid header is refused
// (RefusedProxyHeader), and so is a connection from any other address
// that begins with a PROXY header (RefusedProxyUntrusted): nobody else may
// say who they are. Other connections pass untouched.
//
// The header is read within the handshake deadline, however it is cut
// into packets; one that is not complete by then is a handshake timeout.
// The layer must run before any layer that uses the client's address.
func ProxyProtocol(trusted []netip.Prefix) AcceptLayer {
	trusted = slices.Clone(trusted)
	return func(c ClientConn) error {
		peer := peerAddr(c)
		if slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(peer) }) {
			return readProxyHeader(c)
		}
		return refuseProxyHeader(c)
	}
}

// peerAddr is the address c comes from, an IPv4 one as IPv4 also when the
// listener is IPv6 (an IPv4-mapped address), or the zero Addr.
func peerAddr(c ClientConn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// readProxyHeader reads the header a trusted connection begins with, as
// much of it as has come at a time, and takes the client's address from
// it.
func readProxyHeader(c ClientConn) error {
	for need := 1; ; {
		b, err := c.Peek(need)
		h, n, perr := proxyproto.Parse(b)
		switch {
		case perr == nil:
			c.Discard(n)
			if ap, ok := h.ClientAddr(); ok {
				c.SetRemoteAddr(net.TCPAddrFromAddrPort(ap))
			}
			return nil
		case !errors.Is(perr, proxyproto.ErrIncomplete):
			return &Refusal{Reason: RefusedProxyHeader, Err: perr}
		case err != nil:
			return fmt.Errorf("reading a PROXY protocol header: %w", err)
		}
		need = n
	}
}

// refuseProxyHeader refuses a connection from an untrusted address that
// begins with a PROXY protocol signature. It reads no more than it takes
// to tell: one byte of a TLS handshake.
func refuseProxyHeader(c ClientConn) error {
	for need := 1; ; need++ {
		b, err := c.Peek(need)
		found, more := proxyproto.Signature(b)
		switch {
		case found:
			return &Refusal{Reason: RefusedProxyUntrusted, Err: errUntrustedHeader}
		case !more:
			return nil
		case err != nil:
			return fmt.Errorf("reading the first bytes: %w", err)
		}
	}
}
