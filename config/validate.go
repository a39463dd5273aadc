package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	wstls "github.com/wsgate/wsgate/tls"
)

// Checks of single values. Each returns what is wrong with its argument,
// or "" when it is valid; the caller adds the position and what is valid.

// checkListenAddr checks a listener address: host:port with an optional
// host and a numeric port from 0 (any free port) to 65535.
func checkListenAddr(s string) string {
	return checkHostPort(s, true, 0)
}

// checkBackendAddr checks a backend address: host:port with a port from 1
// to 65535, or unix: followed by an absolute socket path.
func checkBackendAddr(s string) string {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		switch {
		case p == "":
			return "the socket path is missing"
		case strings.HasPrefix(p, "//"):
			return "write a single slash after unix:, as in unix:/run/app.sock"
		case !strings.HasPrefix(p, "/"):
			return "the socket path must be absolute"
		}
		return ""
	}
	return checkHostPort(s, false, 1)
}

func checkHostPort(s string, emptyHost bool, minPort int) string {
	if strings.Contains(s, "://") {
		return "it has a scheme; write only host:port"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return strings.TrimSuffix(ae.Err, " in address")
		}
		return err.Error()
	}
	if host == "" && !emptyHost {
		return "the host is missing"
	}
	if strings.HasPrefix(s, "[") && !strings.Contains(host, ":") {
		// net.SplitHostPort takes "[localhost]:80" too.
		return "brackets are for IPv6 addresses only"
	}
	if host != "" {
		if problem := checkHost(host); problem != "" {
			return problem
		}
	}
	n, err := strconv.Atoi(port)
	switch {
	case port == "":
		return "the port is missing"
	case err != nil || strings.IndexFunc(port, func(r rune) bool { return r < '0' || r > '9' }) >= 0:
		return fmt.Sprintf("the port %q is not a number", port)
	case n < minPort || n > 65535:
		return fmt.Sprintf("the port %d is out of range", n)
	}
	return ""
}

// checkHost checks an IP address (with a zone only if IPv6) or a DNS
// host name.
func checkHost(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, "*") {
		return "wildcards are not supported"
	}
	name := strings.TrimSuffix(h, ".") // a fully qualified name may end in a dot
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "the host name has an empty label"
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
				return fmt.Sprintf("the host name contains %q", r)
			}
		}
	}
	return ""
}

// checkDNSName checks a name to resolve: a DNS name (underscores allowed,
// as in SRV names), not an IP address, within DNS's length limits.
func checkDNSName(s string) string {
	name := strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return "the name is empty"
	case net.ParseIP(s) != nil:
		return "it is an IP address, which needs no lookup (list it under backends)"
	case strings.Contains(s, ":"):
		return "it has a port (set port for A and AAAA; SRV records carry their own)"
	case len(name) > 253:
		return "it is longer than 253 characters"
	}
	if problem := checkHost(s); problem != "" {
		return problem
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) > 63 {
			return fmt.Sprintf("the label %q is longer than 63 characters", label)
		}
	}
	return ""
}

// checkResolverAddr checks a DNS server's address: host:port, port 1-65535.
func checkResolverAddr(s string) string {
	return checkHostPort(s, false, 1)
}

// checkRouteHost checks a route's host: empty (any host), or a bare host
// name or IP address without scheme, port or path.
func checkRouteHost(s string) string {
	switch {
	case s == "":
		return ""
	case strings.Contains(s, "://"):
		return `it has a scheme; write the bare host name, such as ws.example.com`
	case strings.Contains(s, "/"):
		return `it contains a slash; write the bare host name, such as ws.example.com, and put paths in path_prefix`
	case net.ParseIP(s) != nil:
		return ""
	case strings.Contains(s, ":"):
		return `it has a port; routes match the Host header with any :port removed, so write the bare host name, such as ws.example.com`
	}
	if problem := checkHost(s); problem != "" {
		return problem + `; write a host name such as ws.example.com, or "" for any host`
	}
	return ""
}

// checkPathPrefix checks a route's path prefix.
func checkPathPrefix(s string) string {
	switch {
	case !strings.HasPrefix(s, "/"):
		return "it must start with '/'"
	case strings.ContainsAny(s, "?#"):
		return "it contains '?' or '#', which are never part of a request path"
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "it contains a space or control character"
	}
	return ""
}

// checkOrigin checks a value of allowed_origins, which is compared with
// the Origin header browsers send: scheme://host[:port], nothing more.
func checkOrigin(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "":
		return "it is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "the scheme must be http or https"
	case u.Host == "" || u.Hostname() == "":
		return "the host is missing"
	case u.User != nil:
		return "it has user information"
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.HasSuffix(s, "#"):
		return "an origin has no path, query or trailing slash"
	case strings.HasSuffix(u.Host, ":"):
		return "the port is empty"
	case strings.Contains(u.Host, "%"):
		return "it has an IPv6 zone, which browsers never send"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("the port %q is invalid", p)
		}
	}
	return checkHost(u.Hostname())
}

// checkCIDR checks an address block of proxy_protocol.trusted_cidrs:
// ADDRESS/BITS, IPv4 or IPv6, with no bits set past the prefix length.
func checkCIDR(s string) string {
	addr, bits, ok := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	switch {
	case s == "":
		return "it is empty"
	case err != nil:
		return fmt.Sprintf("%q is not an IP address", addr)
	case a.Zone() != "":
		return "an address block has no zone"
	case !ok:
		return fmt.Sprintf("the prefix length is missing (%s is this address alone)", netip.PrefixFrom(a, a.BitLen()))
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return fmt.Sprintf("the prefix length %q is not a number from 0 to %d", bits, a.BitLen())
	case a.Is4In6():
		return "it is an IPv4-mapped IPv6 block (IPv4 clients are compared as IPv4)"
	case p != p.Masked():
		return fmt.Sprintf("address bits are set past the prefix length (the block is %s)", p.Masked())
	}
	return ""
}

// checkACMEDomain checks a value of tls.acme.domains: the tls package's
// rule, and a well-formed host name.
func checkACMEDomain(s string) string {
	if err := wstls.CheckACMEDomain(s); err != nil {
		return err.Error()
	}
	if problem := checkHost(s); problem != "" {
		return problem + "; write a bare DNS name such as ws.example.com"
	}
	return ""
}

// checkEmail checks an ACME contact address.
func checkEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case strings.HasPrefix(strings.ToLower(s), "mailto:"):
		return "leave out mailto:"
	case !ok || local == "" || domain == "" || strings.Contains(domain, "@"):
		return "it is not of the form name@domain"
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ',' }):
		return "it contains a space, comma or control character"
	}
	return ""
}

// checkDirectoryURL checks an ACME directory URL: https, with a host.
func checkDirectoryURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "":
		return "it is not a URL"
	case u.Scheme != "https":
		return "the scheme must be https (ACME requires it)"
	case u.Host == "" || u.Hostname() == "":
		return "the host is missing"
	case u.User != nil:
		return "it has user information"
	case u.Fragment != "":
		return "it has a fragment"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("the port %q is invalid", p)
		}
	}
	return checkHost(u.Hostname())
}

// checkCAFile checks a CA bundle as the tls package loads it.
func (d *decoder) checkCAFile(name string, n *yaml.Node, path string) {
	_, err := wstls.LoadCAFile(name)
	switch {
	case errors.Is(err, wstls.ErrNoCACertificate):
		d.errorf(n, path, "CA file %q holds no PEM certificate; set it to a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)", name)
	case err != nil:
		d.errorf(n, path, "cannot read CA file %q: %v; set it to a readable PEM file of CA certificates", name, unwrapPath(err))
	}
}

// abs resolves a file path of the configuration against its directory.
func (d *decoder) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

// checkKeyPair checks that c's files can be read and hold a certificate
// and its private key that the tls package can serve now, reporting at the
// node of the file concerned.
func (d *decoder) checkKeyPair(c wstls.CertFile, certNode, keyNode *yaml.Node, path string) {
	certPEM, err := wstls.ReadPEM(c.CertFile)
	if err != nil {
		d.errorf(certNode, join(path, "cert_file"), "cannot read certificate file %q: %v; set cert_file to a readable PEM file", c.CertFile, unwrapPath(err))
	}
	keyPEM, kerr := wstls.ReadPEM(c.KeyFile)
	if kerr != nil {
		d.errorf(keyNode, join(path, "key_file"), "cannot read private key file %q: %v; set key_file to a readable PEM file", c.KeyFile, unwrapPath(kerr))
	}
	if err != nil || kerr != nil {
		return
	}
	err = wstls.CheckKeyPair(certPEM, keyPEM, time.Now())
	switch {
	case errors.Is(err, wstls.ErrExpired), errors.Is(err, wstls.ErrNotYetValid):
		d.errorf(certNode, join(path, "cert_file"), "certificate %q cannot be served now: %s; renew it, or check the system clock",
			c.CertFile, strings.TrimPrefix(err.Error(), "tls: "))
	case err != nil:
		d.errorf(certNode, join(path, "cert_file"), "certificate %q and key %q do not form a pair: %s; use the PEM certificate and the private key it was issued for",
			c.CertFile, c.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// unwrapPath drops the operation and path from an *os.PathError, which the
// message already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
